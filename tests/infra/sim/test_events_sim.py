"""Market events in the simulator: the event-day burst, attainment after the open and the
event, and the policy with and without its event pre-warms side by side."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np

from infra.policy import FLEET_POLICY
from infra.sim.metrics import attainment_after
from infra.sim.runner import POLICY_CONFIG, REACTIVE_CONFIG, Simulation, run_configs
from infra.sim.traffic import Scenario, generate

FOMC_DAY = dt.date(2026, 12, 9)
ZONE = FLEET_POLICY.schedule.zone


def at(hour: int, minute: int) -> float:
    return dt.datetime.combine(FOMC_DAY, dt.time(hour, minute), ZONE).timestamp()


def test_event_day_adds_a_burst_from_the_release_minute_on_top_of_the_day() -> None:
    scenario = Scenario(qpd_per_tenant=400)
    plain = generate(scenario, FLEET_POLICY.schedule, FOMC_DAY, 1, seed=3)
    with_event = generate(scenario, FLEET_POLICY.schedule, FOMC_DAY, 1, 3, FLEET_POLICY.events)

    def between(trace_arrivals: np.ndarray, start: float, end: float) -> int:
        return int(((trace_arrivals >= start) & (trace_arrivals < end)).sum())

    burst = between(with_event.arrival_s, at(14, 0), at(14, 30))
    assert burst > 3 * between(plain.arrival_s, at(14, 0), at(14, 30))
    # The morning is not thinned to pay for the burst.
    morning_plain = between(plain.arrival_s, at(9, 0), at(12, 0))
    assert between(with_event.arrival_s, at(9, 0), at(12, 0)) >= 0.9 * morning_plain


def test_attainment_after_counts_only_requests_in_the_windows() -> None:
    arrivals = np.array([0.0, 100.0, 899.0, 900.0, 2000.0])
    within = np.array([True, False, True, False, False])
    assert attainment_after(within, arrivals, [0.0]) == 2 / 3
    assert attainment_after(within, arrivals, [5000.0]) is None


def test_policy_with_event_prewarm_beats_the_reactive_one_after_the_fomc_release() -> None:
    policy = FLEET_POLICY
    trace = generate(Scenario(), policy.schedule, FOMC_DAY, 1, 0, policy.events)

    outcome = run_configs(trace, Simulation(policy), configs=(POLICY_CONFIG, REACTIVE_CONFIG))

    label = "2026-12-09 14:00 FOMC statement"
    with_events = outcome.report(POLICY_CONFIG)
    reactive = outcome.report(REACTIVE_CONFIG)
    assert with_events.open_attainment is not None
    assert with_events.event_attainment[label] == 1.0
    assert (reactive.event_attainment[label] or 0) < 0.99
    # Cancelling the day's pre-warm makes the policy reactive there again.
    cancelled = dataclasses.replace(policy, cancelled_event_dates=(FOMC_DAY,))
    again = run_configs(trace, Simulation(cancelled), configs=(POLICY_CONFIG,))
    assert again.report(POLICY_CONFIG).event_attainment[label] == reactive.event_attainment[label]


def test_demand_by_minute_is_requests_in_flight_across_instances() -> None:
    from array import array

    from infra.sim.engine import RunResult, Timeline
    from infra.sim.learned import demand_by_minute

    start = at(14, 0)
    timeline = Timeline(
        time_s=array("d", [start, start + 10, start + 60]),
        ongoing_per_instance=array("d", [5.0, 7.0, 2.0]),
        in_service=array("l", [2, 2, 3]),
    )
    run = RunResult.__new__(RunResult)
    run.timeline = timeline

    demand = demand_by_minute(run, ZONE)[FOMC_DAY]

    assert demand[14 * 60] == 12.0  # (5 x 2 + 7 x 2) / 2 ticks
    assert demand[14 * 60 + 1] == 6.0 and demand[13 * 60] == 0.0
