"""What the stress, fuzz and security tests run on 127.0.0.1, each as its own process.

The real gateway (`uvicorn --factory app.main:create_app`, the command line of
gateway.service) in front of the named fake upstream (`tests.fakes.fake_vllm`) or the real
vLLM CPU server; a small HTTP/1.1 client cheap enough to offer several times the gateway's
capacity from the same two cores; fakes of the AWS endpoints the gateway calls (named as
fakes), served from the test process so that the test can count what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import h11

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.02
) -> float | None:
    """Seconds until `condition()` held, or None if it never did within the timeout."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            return None
        time.sleep(interval_s)


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """A GET that returns the status instead of raising on 4xx/5xx; (0, b"") if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())
    except (urllib.error.URLError, OSError):
        return 0, b""


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------------------- tenants


@dataclass(frozen=True)
class ClientTenant:
    id: str
    key: str
    max_concurrent_requests: int | None = None
    max_tokens: int | None = None

    @property
    def authorization(self) -> str:
        return f"Bearer {self.key}"


def make_tenant(tenant_id: str, **limits: int) -> ClientTenant:
    # A key shaped like a real one and unique per run, so a grep for it can only hit a leak.
    key = "sk-test-" + hashlib.sha256(f"{tenant_id}-{time.time_ns()}".encode()).hexdigest()[:40]
    return ClientTenant(tenant_id, key, **limits)


def write_tenants(path: Path, tenants: list[ClientTenant]) -> None:
    entries = []
    for tenant in tenants:
        entry: dict[str, Any] = {
            "id": tenant.id,
            "api_key_sha256": hashlib.sha256(tenant.key.encode()).hexdigest(),
        }
        if tenant.max_concurrent_requests is not None:
            entry["max_concurrent_requests"] = tenant.max_concurrent_requests
        if tenant.max_tokens is not None:
            entry["max_tokens"] = tenant.max_tokens
        entries.append(entry)
    # Write then rename: a reload never reads half a file.
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"tenants": entries}))
    partial.replace(path)


# ---------------------------------------------------------------------------- processes


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The parent's environment without gateway or AWS settings, plus test-only AWS ones.

    boto3 must never look for credentials or a region on the network (IMDS), and must
    never find a real profile: every AWS endpoint a test uses is a fake on 127.0.0.1.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEWAY_", "AWS_")) and k not in ("PYTHONPATH",)
    }
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            # One HTTP exchange per API call, so a fake endpoint counts calls, not retries.
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
            "NO_PROXY": "*",
        }
    )
    env.update(extra)
    return env


class _Process:
    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class FakeUpstream(_Process):
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
            PYTHON,
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
        super().__init__(argv, _clean_env({}), log_path)

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


VLLM_VENV = REPO / ".venv-vllm"
TINY_MODEL_DIR = REPO / ".serve" / "model"


class VllmServer(_Process):
    """The real vLLM OpenAI server on the CPU with the tiny local model (local/vllm_server.sh).

    It runs in its own session: vLLM's engine core and worker are child processes, and a
    crash of the model server means all of them going at once.
    """

    def __init__(self, log_path: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        meta = json.loads((TINY_MODEL_DIR / "finsight_model.json").read_text())
        self.model = str(meta["served_model_name"])
        argv = [
            str(REPO / "local" / "vllm_server.sh"),
            str(TINY_MODEL_DIR),
            self.model,
            str(self.port),
        ]
        super().__init__(argv, _clean_env({"VLLM_VENV": str(VLLM_VENV)}), log_path)

    @staticmethod
    def missing() -> str | None:
        """What is not built yet (make vllm-venv tiny-model builds both)."""
        if not (VLLM_VENV / ".installed").exists():
            return f"{VLLM_VENV} is not installed"
        if not (TINY_MODEL_DIR / "finsight_model.json").exists():
            return f"no tiny model in {TINY_MODEL_DIR}"
        return None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def wait_up(self, timeout_s: float = 300.0) -> None:
        up = wait_until(
            lambda: not self.alive() or http_get(self.url + "/health")[0] == 200,
            timeout_s,
            interval_s=0.5,
        )
        if up is None or not self.alive():
            raise RuntimeError(f"vLLM did not start:\n{self.log()[-4000:]}")

    def _group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def kill(self) -> None:
        if self.proc is None:
            return
        self._group(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def freeze(self) -> None:
        """Stop every process of the server (a wedged engine: connections open, no answer)."""
        self._group(signal.SIGSTOP)

    def thaw(self) -> None:
        self._group(signal.SIGCONT)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.alive():
            self._group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout_s)
        # Whatever of the engine is left in the session goes too.
        self._group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def gateway_env(
    upstream_url: str, tenants_file: Path, **settings: str | float | int | bool
) -> dict[str, str]:
    """GATEWAY_* variables for a local gateway: no AWS unless a test turns it on."""
    values: dict[str, str | float | int | bool] = {
        "upstream_url": upstream_url,
        "tenants_file": str(tenants_file),
        "cloudwatch_enabled": False,
        "lifecycle_watch_enabled": False,
        "probe_interval_s": 0.5,
        "upstream_metrics_interval_s": 1.0,
    }
    values.update(settings)
    return {
        f"GATEWAY_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in values.items()
    }


class GatewayProcess(_Process):
    """The gateway exactly as gateway.service starts it, but bound to loopback."""

    def __init__(self, log_path: Path, env: dict[str, str], *, port: int | None = None) -> None:
        self.port = port or free_port()
        argv = [
            PYTHON,
            "-m",
            "uvicorn",
            "--factory",
            "app.main:create_app",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--no-access-log",
        ]
        super().__init__(argv, _clean_env(env), log_path)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def ready(self) -> bool:
        return http_get(self.url + "/health/ready", timeout_s=2)[0] == 200

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        if wait_until(lambda: self.ready() or not self.alive(), timeout_s) is None or (
            not self.alive()
        ):
            raise RuntimeError(f"gateway did not become ready:\n{self.log()}")
        if not self.ready():
            raise RuntimeError(f"gateway did not become ready:\n{self.log()}")

    def metrics_text(self) -> str:
        status, body = http_get(self.url + "/metrics")
        assert status == 200, status
        return body.decode()


@contextlib.contextmanager
def running(*processes: _Process) -> Iterator[None]:
    """Stop (then kill) every process on the way out, whatever the test did."""
    try:
        yield
    finally:
        for process in reversed(processes):
            process.stop()


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


@dataclass
class FakeAwsEndpoint:
    """A fake of the AWS query API on 127.0.0.1 (Auto Scaling's CompleteLifecycleAction).

    moto does not implement CompleteLifecycleAction, and botocore's Stubber cannot reach
    into the gateway's process, so the gateway's boto3 client is pointed here with
    AWS_ENDPOINT_URL_AUTO_SCALING and every call is recorded for the test.
    """

    calls: list[RecordedCall] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{LOOPBACK}:{self.server.server_address[1]}"

    def actions(self, name: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.params.get("Action") == name]

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                params = dict(urllib.parse.parse_qsl(raw))
                fake.calls.append(RecordedCall(time.monotonic(), self.path, params))
                action = params.get("Action", "Unknown")
                body = (
                    f'<{action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
                    f"<{action}Result/><ResponseMetadata><RequestId>fake-0001</RequestId>"
                    f"</ResponseMetadata></{action}Response>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class FakeImds:
    """A fake of EC2 instance metadata (IMDSv2) on 127.0.0.1: a token, an id, a state."""

    instance_id: str = "i-0fa4e000000000001"
    lifecycle_state: str = "InService"
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{LOOPBACK}:{self.server.server_address[1]}"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, text: str) -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                if self.path == "/latest/api/token":
                    self._answer(200, "fake-imds-token")
                else:
                    self._answer(404, "")

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") != "fake-imds-token":
                    self._answer(401, "")
                elif self.path == "/latest/meta-data/instance-id":
                    self._answer(200, fake.instance_id)
                elif self.path == "/latest/meta-data/autoscaling/target-lifecycle-state":
                    self._answer(200, fake.lifecycle_state)
                else:
                    self._answer(404, "")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


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
