"""What the stress, fuzz and security tests run beyond tests/processes.py.

The named fake upstream (`tests.fakes.fake_vllm`) as a process; the gateway settings these
tests start the gateway with; a small HTTP/1.1 client cheap enough to offer several times
the gateway's capacity from the same two cores; fakes of the AWS endpoints the gateway
calls (named as fakes), served from the test process so that the test can count what
arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests import processes
from tests.fakes import fake_imds
from tests.processes import LOOPBACK, ManagedProcess, clean_env, free_port, http_get, wait_until


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------------------- processes


class FakeUpstream(ManagedProcess):
    """`tests.fakes.fake_vllm` as a process: fixed slots, a fixed time per token."""

    def __init__(
        self,
        log_path: Path,
        *,
        port: int | None = None,
        tokens: int = 16,
        token_delay_ms: float = 0.0,
        slots: int = 256,
        model: str = "fake-model",
    ) -> None:
        self.port = port or free_port()
        self.model = model
        argv = [
            sys.executable,
            "-m",
            "tests.fakes.fake_vllm",
            "--port",
            str(self.port),
            "--tokens",
            str(tokens),
            "--token-delay-ms",
            str(token_delay_ms),
            "--slots",
            str(slots),
            "--model",
            model,
        ]
        super().__init__("fake upstream", argv, clean_env({}), log_path)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def wait_up(self, timeout_s: float = 30.0) -> None:
        if wait_until(lambda: http_get(self.url + "/health")[0] == 200, timeout_s) is None:
            raise RuntimeError(f"fake upstream did not start:\n{self.log()}")

    def set_mode(self, mode: str) -> None:
        request = urllib.request.Request(
            self.url + "/fake/mode",
            data=json.dumps({"mode": mode}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def stats(self) -> dict[str, int]:
        status, body = http_get(self.url + "/fake/stats", timeout_s=5)
        assert status == 200, status
        result: dict[str, int] = json.loads(body)
        return result


def gateway_env(
    upstream_url: str, tenants_file: Path, **settings: str | float | int | bool
) -> dict[str, str]:
    """GATEWAY_* variables for a stress-test gateway: probes and scrapes often, no AWS."""
    defaults: dict[str, str | float | int | bool] = {
        "probe_interval_s": 0.5,
        "upstream_metrics_interval_s": 1.0,
    }
    return processes.gateway_env(upstream_url, tenants_file, **(defaults | settings))


# ---------------------------------------------------------------------------- client


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_s: float
    error: str | None = None  # a transport failure: no complete HTTP answer


async def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> Reply:
    """One HTTP/1.1 exchange on a fresh loopback connection, read to its end.

    Cheaper per request than a pooled client, so that one test process can offer several
    times the gateway's capacity without the client being the bottleneck.
    """
    started = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            conn = h11.Connection(h11.CLIENT)
            all_headers = {"Host": f"{LOOPBACK}:{port}", "Connection": "close"}
            all_headers.update(headers or {})
            if body or method == "POST":
                all_headers["Content-Length"] = str(len(body))
            head = h11.Request(method=method, target=path, headers=list(all_headers.items()))
            writer.write(conn.send(head) or b"")
            if body:
                writer.write(conn.send(h11.Data(data=body)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            status = 0
            reply_headers: dict[str, str] = {}
            parts: list[bytes] = []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    reply_headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    parts.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionError("closed before the end of the answer")
            return Reply(status, reply_headers, b"".join(parts), time.perf_counter() - started)
    except (OSError, TimeoutError, h11.RemoteProtocolError, ConnectionError) as error:
        return Reply(0, {}, b"", time.perf_counter() - started, f"{type(error).__name__}: {error}")
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def completion_body(model: str, *, max_tokens: int | None = None, stream: bool = False) -> bytes:
    body: dict[str, Any] = {"model": model, "prompt": "How did the market open?"}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def sse_events(body: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [
        line[len("data: ") :]
        for line in body.decode(errors="replace").split("\n")
        if line.startswith("data: ")
    ]


def percentile(values: list[float], q: float) -> float:
    """The q-quantile by the nearest-rank method (no interpolation beyond the data)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, int(-(-q * len(ordered) // 1)))
    return ordered[min(rank, len(ordered)) - 1]


# ---------------------------------------------------------------------------- AWS fakes


@dataclass
class RecordedCall:
    at: float
    path: str
    params: dict[str, str]


class LoopbackServed:
    """Serves `self.app` (ASGI) with uvicorn from a thread of the test process, on 127.0.0.1.

    The fakes stay in the test process, so that the test can read what arrived, while the
    gateway under test reaches them over loopback from its own process.
    """

    app: Starlette
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://{LOOPBACK}:{self._server.config.port}"

    def start(self) -> None:
        config = uvicorn.Config(
            self.app, host=LOOPBACK, port=free_port(), log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        server = self._server
        if wait_until(lambda: server.started, 10) is None:
            raise RuntimeError(f"{type(self).__name__} did not start")

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)


class FakeImds(LoopbackServed, fake_imds.FakeImds):
    """The fake IMDSv2 of tests/fakes, served on 127.0.0.1 for a gateway in its own process."""


class FakeAwsEndpoint(LoopbackServed):
    """A fake of the AWS query API on 127.0.0.1 (Auto Scaling's CompleteLifecycleAction).

    moto does not implement CompleteLifecycleAction, and botocore's Stubber cannot reach
    into the gateway's process, so the gateway's boto3 client is pointed here with
    AWS_ENDPOINT_URL_AUTO_SCALING and every call is recorded for the test.
    """

    def __init__(self) -> None:
        self.calls: list[RecordedCall] = []
        self.app = Starlette(routes=[Route("/", self._call, methods=["POST"])])

    def actions(self, name: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.params.get("Action") == name]

    async def _call(self, request: Request) -> Response:
        params = dict(urllib.parse.parse_qsl((await request.body()).decode()))
        self.calls.append(RecordedCall(time.monotonic(), request.url.path, params))
        action = params.get("Action", "Unknown")
        return Response(
            f'<{action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
            f"<{action}Result/><ResponseMetadata><RequestId>fake-0001</RequestId>"
            f"</ResponseMetadata></{action}Response>",
            media_type="text/xml",
        )


@dataclass
class DroppingEndpoint:
    """A fake unreachable AWS endpoint: accepts each connection and closes it at once.

    The client sees a connection error, as with a CloudWatch outage or a blocked route,
    and the test sees when each attempt arrived.
    """

    attempts: list[float] = field(default_factory=list)
    _sock: socket.socket | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self._sock is not None
        return f"http://{LOOPBACK}:{self._sock.getsockname()[1]}"

    def start(self) -> None:
        self._sock = socket.socket()
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.attempts.append(time.monotonic())
            conn.close()

    def stop(self) -> None:
        self._stopped.set()
        if self._sock is not None:
            self._sock.close()


# ---------------------------------------------------------------------------- routes


def served_routes(tenants_file: Path) -> set[tuple[str, str]]:
    """Every (METHOD, path) the gateway app serves, read from the app it builds.

    FastAPI routes come from its OpenAPI document; the hot-path generation routes are
    plain Starlette routes, which OpenAPI leaves out, so they are read off the app.
    Building the app starts nothing (that happens in its lifespan).
    """
    from app.main import create_app
    from app.settings import GatewaySettings

    app = create_app(
        GatewaySettings(
            tenants_file=tenants_file, cloudwatch_enabled=False, lifecycle_watch_enabled=False
        )
    )
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    for route in app.routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if isinstance(path, str) and methods:
            routes.update((method, path) for method in methods if method != "HEAD")
    return routes
