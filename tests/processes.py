"""The local processes the slow tests run on 127.0.0.1, each exactly as an instance runs it.

The real vLLM CPU server (local/vllm_server.sh, the command line `make serve` uses) and
the gateway (`uvicorn --factory app.main:create_app`, the command line of gateway.service)
with its settings and a tenants file of test keys.
Each runs in a session of its own, so that a stop or a kill reaches vLLM's engine and
worker processes too; output goes to a log file that a failing test can show.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from infra.local.offline_env import offline_aws_env
from infra.local.procfs import session_rss_mib
from tests.ami.unitfile import UNITS_DIR, exec_start_argv, parse_unit, unit_assignments

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
VLLM_VENV = REPO / ".venv-vllm"
TINY_MODEL_DIR = REPO / ".serve" / "model"
# Cold start on a busy 2-core machine: three Python processes importing torch and vLLM,
# plus a torch.compile of the model when its cache is cold. Measured 40-130 s here.
VLLM_START_TIMEOUT_S = 600.0


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
    """A GET that returns the status instead of raising on 4xx/5xx; (0, b"") if unreachable.

    urllib rather than an httpx client: nothing to build per call (httpx makes a TLS
    context, a second or more on a loaded machine), so probes do not blur the timings.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())
    except (urllib.error.URLError, OSError):
        return 0, b""


class ScrapeError(RuntimeError):
    """A /metrics page did not come back (a busy server can be slow to answer)."""


def scrape(url: str) -> dict[str, float]:
    """A Prometheus /metrics page as {sample name: value}, label sets summed."""
    status, body = http_get(url, timeout_s=5.0)
    if status != 200:
        raise ScrapeError(f"{url} answered {status or 'nothing'}")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The offline AWS environment (`infra.local.offline_env`), with one HTTP exchange per
    API call so that a fake endpoint counts calls, not retries, plus `extra`."""
    return offline_aws_env({"AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard", **extra})


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


# Every process started, so that a failing test can show their logs.
STARTED: list[ManagedProcess] = []


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self not in STARTED:
            STARTED.append(self)

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        """Signal the process itself (not its group): what systemd's KillMode=mixed sends."""
        assert self.proc is not None, f"{self.name} was never started"
        self.proc.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def wait_exit(self, timeout_s: float) -> int | None:
        """The exit code, or None if the process is still running after the timeout."""
        assert self.proc is not None, f"{self.name} was never started"
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL to the whole session at once, as an OOM kill or a hardware fault does."""
        if self.proc is None:
            return
        self.signal_group(signal.SIGKILL)
        self.wait_exit(30.0)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL to whatever of the session is left: never leaks a process."""
        if self.proc is None:
            return
        if self.alive():
            self.signal_group(signal.SIGTERM)
            self.wait_exit(grace_s)
        self.signal_group(signal.SIGKILL)
        self.wait_exit(10.0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:]) or "(no log)"


@contextlib.contextmanager
def running(*processes: ManagedProcess) -> Iterator[None]:
    """Stop (then kill) every process on the way out, whatever the test did."""
    try:
        yield
    finally:
        for process in reversed(processes):
            process.stop()


class VllmServer(ManagedProcess):
    """vLLM's OpenAI server on the CPU serving the tiny local model (local/vllm_server.sh)."""

    def __init__(
        self, log_path: Path, *, model_dir: Path = TINY_MODEL_DIR, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        meta = json.loads((model_dir / "finsight_model.json").read_text())
        self.model = str(meta["served_model_name"])
        argv = [str(REPO / "local" / "vllm_server.sh"), str(model_dir), self.model, str(self.port)]
        super().__init__("vLLM", argv, {**os.environ, "VLLM_VENV": str(VLLM_VENV)}, log_path)

    @staticmethod
    def missing(model_dir: Path = TINY_MODEL_DIR) -> str | None:
        """What is not built yet (`make vllm-venv tiny-model` builds both)."""
        if not (VLLM_VENV / ".installed").exists():
            return f"{VLLM_VENV} is not installed"
        if not (model_dir / "finsight_model.json").exists():
            return f"no tiny model in {model_dir}"
        return None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def wait_up(self, timeout_s: float = VLLM_START_TIMEOUT_S) -> float:
        """Seconds until /health answered 200; fails with the log if vLLM dies or hangs."""
        up = wait_until(
            lambda: not self.alive() or http_get(self.url + "/health")[0] == 200,
            timeout_s,
            interval_s=0.5,
        )
        if up is None or not self.alive():
            raise RuntimeError(
                f"vLLM did not start within {timeout_s:g} s (alive: {self.alive()}); "
                f"log {self.log_path}:\n{self.log_tail()}"
            )
        return up

    def freeze(self) -> None:
        """Stop every process of the server (a wedged engine: connections open, no answer)."""
        self.signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal_group(signal.SIGCONT)

    def stop(self, grace_s: float = 30.0) -> None:
        self.thaw()  # a frozen server cannot act on SIGTERM
        super().stop(grace_s)

    def rss_mib(self) -> float:
        """Resident memory of the server and its engine and worker processes."""
        return session_rss_mib(self.pid)


def gateway_env(
    upstream_url: str, tenants_file: Path, **settings: str | float | int | bool
) -> dict[str, str]:
    """GATEWAY_* variables for a local gateway: no AWS unless a test turns it on."""
    values: dict[str, str | float | int | bool] = {
        "upstream_url": upstream_url,
        "tenants_file": str(tenants_file),
        # The publisher and the IMDS watcher are for an instance.
        "cloudwatch_enabled": False,
        "lifecycle_watch_enabled": False,
    }
    values.update(settings)
    return {
        f"GATEWAY_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in values.items()
    }


def gateway_argv(port: int) -> list[str]:
    """gateway.service's ExecStart (its own Environment= expanded), run by this interpreter's
    uvicorn and bound to loopback on `port`: every other flag as on an instance."""
    unit = parse_unit(UNITS_DIR / "gateway.service")
    argv = exec_start_argv(unit, unit_assignments(unit))
    if Path(argv[0]).name != "uvicorn":
        raise RuntimeError(f"gateway.service no longer starts uvicorn: {argv[0]}")
    argv = [sys.executable, "-m", "uvicorn", *argv[1:]]
    argv[argv.index("--host") + 1] = LOOPBACK
    argv[argv.index("--port") + 1] = str(port)
    return argv


@contextlib.contextmanager
def started_vllm(log_path: Path) -> Iterator[VllmServer]:
    """A healthy vLLM server for the block, stopped on the way out (the slow suites' fixture)."""
    missing = VllmServer.missing()
    assert missing is None, f"{missing}: run `make vllm-venv tiny-model` first"
    server = VllmServer(log_path)
    with running(server):
        server.start()
        server.wait_up()
        yield server


class GatewayServer(ManagedProcess):
    """The gateway exactly as gateway.service starts it, but bound to loopback."""

    def __init__(self, log_path: Path, env: dict[str, str], *, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__("gateway", gateway_argv(self.port), clean_env(env), log_path)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def ready_status(self) -> int:
        """The status of /health/ready, 0 when nothing answers."""
        return http_get(self.url + "/health/ready")[0]

    def ready(self) -> bool:
        return self.ready_status() == 200

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        waited = wait_until(lambda: not self.alive() or self.ready(), timeout_s, interval_s=0.1)
        if waited is None or not self.alive() or not self.ready():
            raise RuntimeError(
                f"the gateway was not ready within {timeout_s:g} s (alive: {self.alive()}); "
                f"log {self.log_path}:\n{self.log_tail()}"
            )

    def metrics_text(self) -> str:
        status, body = http_get(self.url + "/metrics", timeout_s=5.0)
        assert status == 200, f"{self.url}/metrics answered {status}"
        return body.decode()

    def metrics(self) -> dict[str, float]:
        return scrape(self.url + "/metrics")
