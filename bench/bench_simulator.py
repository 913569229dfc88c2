"""How fast the fleet simulator replays traffic: one trading day and one month, every config.

Targets: a day in a few seconds, a month in under a minute. Wall time depends on what else
shares the machine, so CPU time is printed beside it.
"""

from __future__ import annotations

import datetime as dt
import time

from infra.policy import FLEET_POLICY
from infra.sim.runner import Simulation, run_configs
from infra.sim.traffic import Scenario, generate

TRADING_DAY = dt.date(2026, 12, 1)
MONTH = (dt.date(2026, 11, 1), 30)


def _timed(start: dt.date, days: int, label: str) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    trace = generate(Scenario(), FLEET_POLICY.schedule, start, days, seed=0)
    generated = time.perf_counter() - wall
    outcome = run_configs(trace, Simulation(FLEET_POLICY, seed=0))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{label:<28}{len(trace):>9,} requests  {len(outcome.runs)} configs  "
        f"wall {wall:6.1f} s  cpu {cpu:6.1f} s  (traffic {generated:.1f} s)"
    )


def main() -> None:
    _timed(TRADING_DAY, 1, f"one trading day {TRADING_DAY}")
    _timed(MONTH[0], MONTH[1], f"one month from {MONTH[0]}")
