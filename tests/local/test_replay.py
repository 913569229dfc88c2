"""The simulator against reality: one trace replayed through the local fleet (emulated
engines) and simulated, compared on replica-seconds, requests shed and p99 TTFT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.local.conftest import POLICY
from tests.processes import REPO, clean_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

SPEED = 10.0
# 2026-12-01 10:00 New York: market hours, the schedule's minimum is 2.
START_EPOCH_S = 1796137200.0
# Wall-clock jitter of two busy cores (event loops serving ~20 streams, the engine's 20 ms
# tick, the load client sharing a process with the autoscaler) is multiplied by the speed:
# measured 40-60 ms of it at the p99 on an idle machine, 0.4-0.6 s of policy time, far more
# than 25 % of the simulator's 0.35 s, and 250 ms once when other work shared the cores. So
# p99 TTFT is not held to the 25 % here (the README reports the measured gap and
# its causes); the bound below allows 250 ms of wall jitter and still catches a stream path
# that holds the first token back (a 256-token answer takes ~15 s of policy time).
TTFT_ALLOWANCE_S = 0.25 * SPEED


def write_trace(path: Path) -> int:
    """A light start, an 80 s burst of ~11 sequences per instance on 2 (above the target of
    10, under the 12 each runs: a scale-out, no queue to speak of), then quiet."""
    rows = ["timestamp,tenant,prompt_tokens,output_tokens"]
    tenants = ("acme", "globex", "initech", "umbrella")
    t, index = START_EPOCH_S + 5, 0
    for until, step, prompt, output in ((25, 2.0, 400, 128), (105, 0.65, 600, 256)):
        while t < START_EPOCH_S + until:
            rows.append(f"{t:.2f},{tenants[index % 4]},{prompt},{output}")
            index, t = index + 1, t + step
    path.write_text("\n".join(rows) + "\n")
    return len(rows) - 1


def test_local_replay_agrees_with_the_simulator(tmp_path: Path, figures: dict[str, Any]) -> None:
    trace = tmp_path / "day.csv"
    requests = write_trace(trace)
    argv = [
        sys.executable,
        "-m",
        "infra.cli",
        "local",
        "replay",
        "--trace",
        str(trace),
        "--speed",
        f"{SPEED:g}",
        "--policy",
        str(POLICY),
        "--state-dir",
        str(tmp_path / "state"),
        "--json",
    ]
    done = subprocess.run(
        argv, cwd=REPO, env=clean_env({}), capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    comparison = json.loads(done.stdout)["comparison"]
    figures.update({"requests": requests, "speed": SPEED, **comparison})

    assert abs(comparison["replica_seconds_diff"]) <= 0.15, comparison
    assert comparison["shed_local"] == comparison["shed_sim"] == 0, comparison
    ttft_gap = abs(comparison["p99_ttft_local_s"] - comparison["p99_ttft_sim_s"])
    assert ttft_gap <= 0.25 * comparison["p99_ttft_sim_s"] + TTFT_ALLOWANCE_S, comparison
