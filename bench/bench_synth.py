"""Synthesis time of both stacks, as a user sees it: a fresh interpreter, jsii start included.

Each run also reports where its time went, measured inside the child process:
`runtime` (the jsii kernel and the cdktn/constructs assemblies), `provider` (loading the AWS
provider's jsii assembly, 46 MB packed: none of our code runs), `imports` (the rest of
`infra.main`'s imports: pydantic, the policy, our constructs), `constructs` (building both
stacks, our construct code and its calls into jsii) and `synth` (`app.synth()`, writing the
JSON and copying the Lambda zip). `python -m bench bench_synth` runs it alone.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time

GOAL_S = 5.0
RUNS = 3
PHASES = ("runtime", "provider", "imports", "constructs", "synth")
SYNTH = """
import json, sys, time
began = time.perf_counter()
import cdktn
runtime = time.perf_counter()
import cdktn_provider_aws
provider = time.perf_counter()
from infra.main import build_app
imports = time.perf_counter()
app = build_app(outdir=sys.argv[1])
constructs = time.perf_counter()
app.synth()
synth = time.perf_counter()
print(json.dumps({
    "runtime": runtime - began,
    "provider": provider - runtime,
    "imports": imports - provider,
    "constructs": constructs - imports,
    "synth": synth - constructs,
}))
"""


def run_once() -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as outdir:
        began = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", SYNTH, outdir], check=True, capture_output=True, text=True
        )
        total = time.perf_counter() - began
    phases: dict[str, float] = json.loads(child.stdout.strip().splitlines()[-1])
    return total, phases


def main() -> None:
    runs = [run_once() for _ in range(RUNS)]
    timings = [total for total, _ in runs]
    median = statistics.median(timings)
    verdict = "within" if median <= GOAL_S else "over"
    print(
        f"synth (dev + prod): median {median:.1f} s of {RUNS} "
        f"(min {min(timings):.1f}, max {max(timings):.1f}); goal <= {GOAL_S:.0f} s: {verdict}"
    )
    interpreter = median - statistics.median(sum(phases.values()) for _, phases in runs)
    breakdown = ", ".join(
        f"{phase} {statistics.median(phases[phase] for _, phases in runs):.2f}" for phase in PHASES
    )
    print(f"  median per phase, s: interpreter start and exit {interpreter:.2f}, {breakdown}")


if __name__ == "__main__":
    main()
