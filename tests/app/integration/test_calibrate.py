"""`fleet calibrate` against the real vLLM CPU server with the tiny model (no gateway): the
file it writes loads into ReplicaModel and drives `fleet simulate --replica`. It measures
the package's shared vLLM server: one start fewer in the suite."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.sim.replica_model import load_replica
from tests.processes import VllmServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CALIBRATION_S = 40


def fleet(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_calibrate_writes_a_replica_model_that_fleet_simulate_runs(
    vllm: VllmServer, tmp_path: Path
) -> None:
    out = tmp_path / "replica.toml"

    started = time.monotonic()
    result = fleet(
        "calibrate",
        "--url", vllm.url,
        "--key", "unused-by-vllm",
        "--duration", str(CALIBRATION_S),
        "--out", str(out),
        timeout_s=CALIBRATION_S + 30,
    )  # fmt: skip
    took_s = time.monotonic() - started

    assert result.returncode == 0, result.stderr + result.stdout
    print(result.stdout)
    assert took_s < 60
    # The tiny model's 256-token context cannot hold the reference lengths: said, and clipped.
    assert "max_model_len 256: prompts clipped" in result.stdout
    model = load_replica(out)
    assert "max_model_len 256" in out.read_text()
    assert model.max_num_seqs >= 1
    assert model.decode_tokens_per_s > 1

    simulated = fleet("simulate", "--replica", str(out), "--json", timeout_s=300)

    assert simulated.returncode == 0, simulated.stderr
    configs = {row["config"]: row for row in json.loads(simulated.stdout)["configs"]}
    assert configs["static-1"]["requests"] > 0
