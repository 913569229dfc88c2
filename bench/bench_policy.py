"""How fast the pure policy functions run: they sit in the simulator's inner loop."""

from __future__ import annotations

import datetime as dt
import time

from infra.policy import FLEET_POLICY, DecisionState, Observation, decide, effective_schedule


def main() -> None:
    start = dt.datetime(2026, 11, 23, 9, 0, tzinfo=FLEET_POLICY.schedule.zone)
    ticks = 50_000
    state = DecisionState()
    current = 2
    began = time.perf_counter()
    for tick in range(ticks):
        now = start + dt.timedelta(seconds=tick)
        load = 45.0 if (tick // 600) % 2 else 5.0
        current, state = decide(FLEET_POLICY, Observation(load, current), state, now)
    decide_s = time.perf_counter() - began
    began = time.perf_counter()
    changes = effective_schedule(FLEET_POLICY, dt.date(2026, 1, 1), 365)
    schedule_s = time.perf_counter() - began
    print(f"decide():             {ticks / decide_s:>12,.0f} ticks/s ({ticks} ticks)")
    print(
        f"effective_schedule(): {schedule_s * 1000:>12.1f} ms for 365 days ({len(changes)} changes)"
    )
