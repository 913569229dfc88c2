"""Synthesis time of both stacks, as a user sees it: a fresh interpreter, jsii start included."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

GOAL_S = 5.0
RUNS = 3
SYNTH = "import sys; from infra.main import build_app; build_app(outdir=sys.argv[1]).synth()"


def main() -> None:
    timings = []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as outdir:
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", SYNTH, outdir], check=True)
            timings.append(time.perf_counter() - began)
    median = statistics.median(timings)
    verdict = "within" if median <= GOAL_S else "over"
    print(
        f"synth (dev + prod): median {median:.1f} s of {RUNS} "
        f"(min {min(timings):.1f}, max {max(timings):.1f}); goal <= {GOAL_S:.0f} s: {verdict}"
    )
