"""The emulator cycle, started in the background as soon as the session knows it will run.

Most of its minutes are the AWS provider polling moto for a resource to settle (an S3
lifecycle rule, a Route 53 change, a queue), time the other tests can use; the emulator's
tests run last and wait for its report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from infra.policy import FLEET_POLICY
from infra.stack.settings import load_settings

from .conftest import DEPLOY_SETTINGS, REPO, TENANT_POLICY, synth_stacks
from .test_terraform import terraform_env

CYCLE = Path(__file__).with_name("emulator_cycle.py")
# The emulated dev stack is sized like prod (dev's own default is one instance): the
# re-apply test needs room between the close, the market-hours minimum and an override.
EMULATED_SIZES = {
    "min_replicas": FLEET_POLICY.default.min_replicas,
    "market_hours_min_replicas": FLEET_POLICY.market_hours.min_replicas,
    "max_replicas": FLEET_POLICY.max_replicas,
}
# The emulated dev stack has a name: the stack requests and validates its certificate.
EMULATED_DOMAIN = "api.finsight.test"


@dataclass(frozen=True)
class BackgroundCycle:
    dev_dir: Path
    report_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def wait(self, timeout_s: float) -> tuple[int, str]:
        """The cycle's exit status and its output; a hang is stopped and reported as such."""
        try:
            status = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            status = -1
        return status, self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        # The cycle runs moto_server and terraform as children: end the whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def start(workdir: Path) -> BackgroundCycle:
    """Synthesize the emulated dev stack and start its apply-observe-destroy cycle."""
    overrides = {
        **DEPLOY_SETTINGS["dev"],
        **EMULATED_SIZES,
        "certificate_arn": None,
        "api_domain": EMULATED_DOMAIN,
        # The cycle creates the zone and writes its real id into the records.
        "hosted_zone_id": "ZEMULATORPLACEHOLDER",
    }
    # With tenants in the SLO: their burn-rate alarms are applied too.
    synth_stacks(workdir / "synth", load_settings("dev", **overrides), policy=TENANT_POLICY)
    dev_dir = workdir / "synth" / "stacks" / "finsight-serving-dev"
    report_path = workdir / "report.json"
    log_path = workdir / "cycle.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["unshare", "-n", "--", sys.executable, str(CYCLE), str(dev_dir), str(report_path)],
            env={**terraform_env(), "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return BackgroundCycle(dev_dir, report_path, log_path, process)
