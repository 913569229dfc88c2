"""The clairvoyant lower bound: the fewest instances per window that meet the SLO, known
in advance, each launched a worst-case boot ahead so it serves from the window's start.

Per 5-minute window, the plan takes the smallest static fleet whose requests arriving in
that window met the SLO's objective (each against its tenant's targets) in the static runs
(floored at the policy's off-hours minimum: the API is never left without an instance).
It ignores backlog carried between windows of different sizes, which the run of the plan
then checks: its attainment is reported too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from infra.policy.slo import Slo
from infra.sim.controllers import Clairvoyant
from infra.sim.engine import RunResult
from infra.sim.metrics import within_slo
from infra.sim.trace import Trace

WINDOW_S = 300.0


def plan(
    trace: Trace,
    static_runs: Sequence[RunResult],
    slo: Slo,
    floor: int,
    lead_s: float,
    window_s: float = WINDOW_S,
) -> Clairvoyant:
    """`static_runs[i]` is the run with i + 1 instances."""
    windows = max(1, math.ceil((trace.end_s - trace.start_s) / window_s))
    index = np.minimum(
        ((trace.arrival_s - trace.start_s) // window_s).astype(np.int64), windows - 1
    )
    arrivals = np.bincount(index, minlength=windows)
    needed = np.full(windows, len(static_runs), dtype=np.int64)
    settled = arrivals == 0
    needed[settled] = floor
    for replicas, run in enumerate(static_runs, start=1):
        met = np.bincount(index, weights=within_slo(run, trace, slo), minlength=windows)
        enough = ~settled & (met >= slo.objective * arrivals)
        needed[enough] = max(replicas, floor)
        settled |= enough
    starts = [trace.start_s + w * window_s for w in range(windows)]
    return Clairvoyant(starts, needed.tolist(), lead_s)
