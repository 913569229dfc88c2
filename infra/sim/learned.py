"""The learned profile in the simulator: per-minute fleet demand from a run's timeline (what
the gateways would have published), and the policy with the windows learned from it."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from zoneinfo import ZoneInfo

from infra.policy import FleetPolicy
from infra.policy.profile import MINUTES_PER_DAY, learned_windows, with_learned
from infra.sim.controllers import Static
from infra.sim.engine import RunResult, simulate
from infra.sim.runner import Simulation
from infra.sim.traffic import Scenario, generate


def demand_by_minute(run: RunResult, zone: ZoneInfo) -> dict[dt.date, list[float]]:
    """Mean requests in flight (running + queued, all instances) per local date and minute."""
    sums: dict[dt.date, list[float]] = defaultdict(lambda: [0.0] * MINUTES_PER_DAY)
    counts: dict[dt.date, list[int]] = defaultdict(lambda: [0] * MINUTES_PER_DAY)
    timeline = run.timeline
    for at, per_instance, serving in zip(
        timeline.time_s, timeline.ongoing_per_instance, timeline.in_service, strict=True
    ):
        local = dt.datetime.fromtimestamp(at, zone)
        minute = local.hour * 60 + local.minute
        sums[local.date()][minute] += per_instance * serving
        counts[local.date()][minute] += 1
    return {
        date: [s / c if c else 0.0 for s, c in zip(sums[date], counts[date], strict=True)]
        for date in sums
    }


def learned_policy(
    policy: FleetPolicy,
    scenario: Scenario,
    start: dt.date,
    days: int,
    weeks: int,
    simulation: Simulation,
) -> FleetPolicy:
    """`policy` with windows learned from `weeks` weeks of generated traffic before `start`
    (served by a static fleet at the maximum, so demand is not clipped by the fleet)."""
    first = start - dt.timedelta(weeks=weeks)
    history_trace = generate(
        scenario, policy.schedule, first, weeks * 7, simulation.seed, policy.events
    )
    run = simulate(
        history_trace,
        Static(policy.max_replicas),
        simulation.model,
        simulation.mechanics,
        simulation.seed,
        simulation.period_s,
        simulation.gateway_model,
    )
    history = demand_by_minute(run, policy.schedule.zone)
    windows = []
    for offset in range(days):
        windows += learned_windows(policy, history, start + dt.timedelta(days=offset))
    return with_learned(policy, windows)
