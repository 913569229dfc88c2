"""scripts/warm-pool-ready.sh: an instance entering the warm pool completes the group's launch
hook only once vLLM has loaded the model and the image's files were read; any other launch
completes it at once. Run for real against a stand-in IMDS and vLLM on 127.0.0.1 and a
stand-in AWS CLI that records its call."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.stack import fleet
from tests.ami.unitfile import AMI_DIR, UNITS_DIR, parse_unit, unit_environment

SCRIPT = AMI_DIR / "scripts" / "warm-pool-ready.sh"
INSTANCE_ID = "i-0123456789abcdef0"
TOKEN = "token-1"


@dataclass
class FakeInstance:
    """IMDS (token, instance id, target lifecycle state) and vLLM's /health in one server."""

    target_state: str
    healthy: threading.Event = field(default_factory=threading.Event)
    health_checks: list[int] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def instance() -> Iterator[FakeInstance]:
    fake = FakeInstance(target_state="Warmed:Stopped")

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: str = "") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            ok = self.path == "/latest/api/token" and ttl
            self._reply(200 if ok else 400, TOKEN if ok else "")

        def do_GET(self) -> None:
            if self.path == "/health":
                status = 200 if fake.healthy.is_set() else 503
                fake.health_checks.append(status)
                self._reply(status)
                return
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                self._reply(401)
                return
            answers = {
                "/latest/meta-data/instance-id": INSTANCE_ID,
                "/latest/meta-data/autoscaling/target-lifecycle-state": fake.target_state,
            }
            self._reply(200, answers[self.path]) if self.path in answers else self._reply(404)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def _run(
    tmp_path: Path, instance: FakeInstance, *, deadline_s: int = 20, hook: bool = True
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = tmp_path / "aws-calls"
    aws = tmp_path / "aws"
    aws.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >>"{calls}"\n')
    aws.chmod(0o755)
    software = tmp_path / "opt"
    software.mkdir()
    (software / "lib.so").write_bytes(b"\0" * 4096)
    # The stack's warm-pool.env, read through the unit as systemd would.
    settings = tmp_path / "warm-pool.env"
    settings.write_text(
        fleet.render_launch_env("finsight-prod", "finsight-prod-warm", "us-east-1") if hook else ""
    )
    unit = parse_unit(UNITS_DIR / "finsight-warm-pool-ready.service")
    env = {
        **unit_environment(unit, {"/etc/finsight/warm-pool.env": settings}),
        "PATH": os.environ["PATH"],
        "AWS_CLI": str(aws),
        "FINSIGHT_IMDS_URL": instance.url,
        "FINSIGHT_VLLM_URL": instance.url,
        "FINSIGHT_WARM_DEADLINE_S": str(deadline_s),
        "FINSIGHT_POLL_S": "0.1",
        "FINSIGHT_HYDRATE_DIRS": str(software),
    }
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return done, calls.read_text().splitlines() if calls.exists() else []


def _completion(result: str) -> str:
    return (
        "autoscaling complete-lifecycle-action --lifecycle-hook-name finsight-prod-warm "
        f"--auto-scaling-group-name finsight-prod --instance-id {INSTANCE_ID} "
        f"--lifecycle-action-result {result}"
    )


def test_entering_the_pool_waits_for_vllm_then_reads_the_files(
    tmp_path: Path, instance: FakeInstance
) -> None:
    # GIVEN an instance launched into the Stopped pool whose vLLM turns healthy later
    timer = threading.Timer(0.5, instance.healthy.set)
    timer.start()
    done, calls = _run(tmp_path, instance)
    timer.join()
    # THEN the hook completes once, with CONTINUE, after vLLM answered healthy
    assert done.returncode == 0, done.stderr
    assert calls == [_completion("CONTINUE")]
    assert 503 in instance.health_checks and instance.health_checks[-1] == 200
    assert f"read {tmp_path / 'opt'} in" in done.stderr


def test_a_launch_into_service_completes_at_once(tmp_path: Path, instance: FakeInstance) -> None:
    instance.target_state = "InService"
    done, calls = _run(tmp_path, instance)
    assert done.returncode == 0, done.stderr
    assert calls == [_completion("CONTINUE")]
    # Registration is not held for vLLM: it was never asked.
    assert instance.health_checks == []


def test_an_instance_whose_vllm_never_starts_is_abandoned(
    tmp_path: Path, instance: FakeInstance
) -> None:
    done, calls = _run(tmp_path, instance, deadline_s=1)
    assert done.returncode == 1
    assert calls == [_completion("ABANDON")]


def test_without_a_warm_pool_nothing_is_called(tmp_path: Path, instance: FakeInstance) -> None:
    done, calls = _run(tmp_path, instance, hook=False)
    assert done.returncode == 0 and calls == []


def test_the_scripts_deadline_is_within_the_hooks_timeout() -> None:
    text = SCRIPT.read_text()
    deadline = int(text.split("FINSIGHT_WARM_DEADLINE_S:-", 1)[1].split("}", 1)[0])
    # Room after the deadline for the reads and CompleteLifecycleAction.
    assert deadline + 30 <= fleet.WARM_POOL_HOOK_TIMEOUT_S
    # AWS bounds a lifecycle hook's heartbeat timeout to 30-7200 s.
    assert 30 <= fleet.WARM_POOL_HOOK_TIMEOUT_S <= 7200
