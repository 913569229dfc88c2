"""A local replica as separate processes: the real vLLM CPU server and the gateway under uvicorn.

Both run exactly as `make serve` runs them (local/vllm_server.sh, `uvicorn --factory
app.main:create_app`), on free ports of 127.0.0.1, each in a session of its own so that a
stop reaches vLLM's engine and worker processes too. Their output goes to log files that
the conftest shows when a test fails.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[3]
LOOPBACK = "127.0.0.1"
VLLM_VENV = REPO / ".venv-vllm"
TINY_MODEL_DIR = REPO / ".serve" / "model"
# Cold start on a busy 2-core machine: three Python processes importing torch and vLLM,
# plus a torch.compile of the model when its cache is cold. Measured 40-130 s here.
VLLM_START_TIMEOUT_S = 600.0

# Every process started here, so that a failing test can show their logs.
STARTED: list[ManagedProcess] = []
# What the tests measured (start-up times, memory, drain time), printed after the run.
FIGURES: dict[str, float] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


@functools.cache
def loopback_client() -> httpx.Client:
    """One client for every probe of the servers: `httpx.get` builds a TLS context per call,
    which takes a second or more on a loaded machine and would blur the timings measured."""
    return httpx.Client(verify=False, timeout=5.0)


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The status of a GET, or None when nothing answers."""
    try:
        return loopback_client().get(url, timeout=timeout_s).status_code
    except httpx.HTTPError:
        return None


def scrape(url: str) -> dict[str, float]:
    """A Prometheus /metrics page as {sample name: value}, label sets summed."""
    text = loopback_client().get(url).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


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
        assert self.proc is not None
        self.proc.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def wait_exit(self, timeout_s: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL to whatever of the session is left: never leaks a process."""
        if self.proc is None:
            return
        if self.alive():
            self.signal_group(signal.SIGTERM)
            self.wait_exit(grace_s)
        self.signal_group(signal.SIGKILL)
        self.wait_exit(10.0)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class VllmServer(ManagedProcess):
    """vLLM's OpenAI server on the CPU serving the tiny local model (local/vllm_server.sh)."""

    def __init__(self, model_dir: Path, model_name: str, log_path: Path) -> None:
        self.model_dir = model_dir
        self.model_name = model_name
        self.port = free_port()
        self.startup_s: float | None = None
        env = {**os.environ, "VLLM_VENV": str(VLLM_VENV)}
        argv = [str(REPO / "local" / "vllm_server.sh"), str(model_dir), model_name, str(self.port)]
        super().__init__("vLLM", argv, env, log_path)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def wait_healthy(self, timeout_s: float = VLLM_START_TIMEOUT_S) -> float:
        """Seconds until /health answered 200; fails with the log if vLLM dies or hangs."""
        started = time.monotonic()
        healthy = wait_until(
            lambda: not self.alive() or http_status(self.url + "/health") == 200,
            timeout_s,
            interval_s=0.5,
        )
        if not (healthy and self.alive()):
            raise RuntimeError(
                f"vLLM did not become healthy within {timeout_s:g} s "
                f"(alive: {self.alive()}); log {self.log_path}:\n{self.log_tail()}"
            )
        self.startup_s = time.monotonic() - started
        return self.startup_s

    def rss_mib(self) -> float:
        """Resident memory of the server and its engine and worker processes."""
        total_kib = 0
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                if os.getsid(int(pid_dir.name)) != self.pid:
                    continue
                for line in (pid_dir / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total_kib += int(line.split()[1])
            except (OSError, ValueError):
                continue
        return total_kib / 1024


@dataclass(frozen=True)
class DevTenant:
    id: str
    api_key: str


def write_tenants_file(path: Path, tenants: list[DevTenant], **limits: int) -> None:
    import hashlib

    document = {
        "tenants": [
            {"id": t.id, "api_key_sha256": hashlib.sha256(t.api_key.encode()).hexdigest(), **limits}
            for t in tenants
        ]
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


class GatewayServer(ManagedProcess):
    """The gateway as an instance runs it: uvicorn with the app factory, settings from env."""

    def __init__(
        self, upstream_url: str, tenants_file: Path, log_path: Path, **settings: str | float
    ) -> None:
        self.port = free_port()
        # Nothing of the caller's own GATEWAY_* settings leaks into the process under test.
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env |= {
            "GATEWAY_UPSTREAM_URL": upstream_url,
            "GATEWAY_TENANTS_FILE": str(tenants_file),
            # No AWS here: the publisher and the IMDS watcher are for an instance.
            "GATEWAY_CLOUDWATCH_ENABLED": "false",
            "GATEWAY_LIFECYCLE_WATCH_ENABLED": "false",
        }
        env |= {f"GATEWAY_{k.upper()}": str(v) for k, v in settings.items()}
        argv = [
            sys.executable,
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
        super().__init__("gateway", argv, env, log_path)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def ready_status(self) -> int | None:
        return http_status(self.url + "/health/ready")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        ready = wait_until(
            lambda: not self.alive() or self.ready_status() == 200, timeout_s, interval_s=0.2
        )
        if not (ready and self.alive()):
            raise RuntimeError(
                f"the gateway was not ready within {timeout_s:g} s (alive: {self.alive()}); "
                f"log {self.log_path}:\n{self.log_tail()}"
            )

    def metrics(self) -> dict[str, float]:
        return scrape(self.url + "/metrics")
