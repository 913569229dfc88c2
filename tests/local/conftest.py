"""A local fleet for the end-to-end tests: `fleet local up` as a process, on a fast clock.

Short delays (infra/local/short_delays.toml), the clock 10x faster than the wall clock and
starting inside market hours (the schedule's minimum is then 2), emulated engines.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.local.fleet import STATUS_FILE
from tests.processes import REPO, ClientTenant, clean_env, free_port, make_tenant, write_tenants
from tests.stress.figures import print_summary, record

SPEED = 10.0
# Tuesday 1 December 2026, 10:00 in New York: market hours, minimum 2.
START_AT = "2026-12-01T15:00:00+00:00"
POLICY = REPO / "infra" / "local" / "short_delays.toml"


@dataclass
class RunningFleet:
    process: subprocess.Popen[bytes]
    state_dir: Path
    port: int
    tenant: ClientTenant
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def read_status(self) -> dict[str, Any] | None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            status: dict[str, Any] = json.loads((self.state_dir / STATUS_FILE).read_text())
            return status
        return None

    def status(self) -> dict[str, Any]:
        status = self.read_status()
        if status is None:
            raise AssertionError(f"no status from the fleet; log:\n{self.log_tail()}")
        return status

    def wait_for(self, condition: Any, timeout_s: float, what: str) -> float:
        """Seconds until `condition(status)` held; fails with the fleet's log otherwise."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            assert self.process.poll() is None, f"the fleet exited:\n{self.log_tail()}"
            status = self.read_status()
            if status is not None and condition(status):
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(
            f"{what}: not within {timeout_s:g} s; status {json.dumps(self.read_status())}\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """What a test measured; printed at the end of the run and kept in build/evidence/."""
    found: dict[str, Any] = {}
    yield found
    if found:
        record(request.node.name, found)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_summary(terminalreporter)


@pytest.fixture(scope="module")
def local_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    root = tmp_path_factory.mktemp("fleet")
    tenant = make_tenant("desk", max_concurrent_requests=64)
    tenants_file = root / "tenants.json"
    write_tenants(tenants_file, [tenant])
    port = free_port()
    state_dir = root / "state"
    log_path = root / "fleet.log"
    argv = [
        sys.executable,
        "-m",
        "infra.cli",
        "local",
        "up",
        "--policy",
        str(POLICY),
        "--state-dir",
        str(state_dir),
        "--tenants-file",
        str(tenants_file),
        "--port",
        str(port),
        "--speed",
        f"{SPEED:g}",
        "--start",
        START_AT,
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=clean_env({}),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    fleet = RunningFleet(process, state_dir, port, tenant, log_path)
    try:
        fleet.wait_for(lambda s: s["in_service"] == 2, 60, "two replicas in service")
        yield fleet
    finally:
        # Ctrl-C's path: every replica drains, then HAProxy and moto stop.
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
