"""gateway.service's exact ExecStart runs the gateway to ready against a fake vLLM."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ami.unitfile import (
    UNITS_DIR,
    exec_start_argv,
    option,
    parse_unit,
    unit_environment,
    value,
)

REPO = Path(__file__).resolve().parents[2]
IMAGE_VENV_BIN = "/opt/finsight/gateway/bin/"
LOCAL_VENV_BIN = REPO / ".venv" / "bin"

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(url: str, deadline_s: float, process: subprocess.Popen[str]) -> httpx.Response:
    last: httpx.Response | None = None
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"process exited with {process.returncode}: {process.stdout}")
        with contextlib.suppress(httpx.TransportError):
            last = httpx.get(url, timeout=2)
            if last.status_code == 200:
                return last
        time.sleep(0.2)
    pytest.fail(f"{url} not ready after {deadline_s}s; last answer: {last and last.text}")


@contextlib.contextmanager
def _running(argv: list[str], **kwargs: object) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(argv, text=True, **kwargs)  # type: ignore[call-overload]
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def fake_vllm() -> Iterator[int]:
    port = _free_port()
    argv = [sys.executable, "-m", "tests.fakes.fake_vllm", "--port", str(port)]
    with _running(argv, cwd=REPO) as process:
        _wait_for(f"http://127.0.0.1:{port}/health", 30, process)
        yield port


def test_gateway_unit_command_answers_ready_and_stops_in_time(
    fake_vllm: int, tmp_path: Path
) -> None:
    tenants = tmp_path / "tenants.json"
    digest = hashlib.sha256(b"sk-test-key").hexdigest()
    tenants.write_text(json.dumps({"tenants": [{"id": "acme", "api_key_sha256": digest}]}))
    # The env file as the stack writes it, with the local stand-ins a test needs: the
    # tenants from a file, the fake upstream, and no AWS (no CloudWatch, no IMDS).
    env_file = tmp_path / "gateway.env"
    env_file.write_text(
        f"GATEWAY_TENANTS_FILE={tenants}\n"
        f"GATEWAY_UPSTREAM_URL=http://127.0.0.1:{fake_vllm}\n"
        "GATEWAY_CLOUDWATCH_ENABLED=false\n"
        "GATEWAY_LIFECYCLE_WATCH_ENABLED=false\n"
        "GATEWAY_PROBE_INTERVAL_S=0.5\n"
        "GATEWAY_DRAIN_DEADLINE_S=5\n"
    )
    unit = parse_unit(UNITS_DIR / "gateway.service")
    env = unit_environment(unit, {"/etc/finsight/gateway.env": env_file})
    argv = exec_start_argv(unit, env)

    # Two substitutions, nothing else: the image's venv is this repo's .venv, and the port
    # is a free one (8000 may be taken on a shared machine).
    assert argv[0].startswith(IMAGE_VENV_BIN)
    assert option(argv, "--port") == "8000"
    port = _free_port()
    argv[0] = str(LOCAL_VENV_BIN / argv[0].removeprefix(IMAGE_VENV_BIN))
    argv[argv.index("--port") + 1] = str(port)

    # systemd starts the unit with only its own environment, from / (no WorkingDirectory).
    process_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", **env}
    with _running(
        argv, env=process_env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as gateway:
        answer = _wait_for(f"http://127.0.0.1:{port}/health/ready", 60, gateway)
        assert answer.json()["status"] == "ready"

        # Stop as systemd does: KillSignal to the main process, then wait at most
        # TimeoutStopSec before it would SIGKILL.
        assert value(unit, "Service", "KillSignal") == "SIGTERM"
        timeout_stop_s = float(value(unit, "Service", "TimeoutStopSec"))
        started = time.monotonic()
        gateway.send_signal(signal.SIGTERM)
        returncode = gateway.wait(timeout=timeout_stop_s)
        assert time.monotonic() - started < timeout_stop_s
        output = gateway.stdout.read() if gateway.stdout else ""
        # uvicorn re-raises the signal it shut down on; systemd counts exit 0 and death by
        # SIGTERM alike as a clean stop (no failure, no restart under Restart=on-failure).
        assert returncode in (0, -signal.SIGTERM), output
