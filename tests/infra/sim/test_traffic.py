"""The reference traffic generator: seeded, the seed's volumes, shaped by market hours."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from infra.policy import FLEET_POLICY
from infra.sim.runner import Simulation, run_configs
from infra.sim.traffic import Scenario, generate

HOURS = FLEET_POLICY.schedule
TUESDAY = dt.date(2026, 12, 1)


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    first = generate(Scenario(), HOURS, TUESDAY, 1, seed=11)
    again = generate(Scenario(), HOURS, TUESDAY, 1, seed=11)
    other = generate(Scenario(), HOURS, TUESDAY, 1, seed=12)
    np.testing.assert_array_equal(first.arrival_s, again.arrival_s)
    np.testing.assert_array_equal(first.output_tokens, again.output_tokens)
    assert first.burst_starts_s == again.burst_starts_s
    assert not np.array_equal(first.arrival_s[:100], other.arrival_s[:100])


def test_a_day_is_the_same_whichever_range_it_is_generated_in() -> None:
    alone = generate(Scenario(), HOURS, TUESDAY, 1, seed=3)
    in_week = generate(Scenario(), HOURS, TUESDAY - dt.timedelta(days=1), 3, seed=3)
    inside = (in_week.arrival_s >= alone.start_s) & (in_week.arrival_s < alone.end_s)
    np.testing.assert_array_equal(in_week.arrival_s[inside], alone.arrival_s)


def test_trading_day_volume_is_tenants_times_qpd_mostly_in_market_hours() -> None:
    trace = generate(Scenario(), HOURS, TUESDAY, 1, seed=5)
    assert len(trace) == 5 * 2_000
    assert np.bincount(trace.tenant).tolist() == [2_000] * 5
    local_hour = (trace.arrival_s - trace.start_s) / 3600
    in_hours = np.mean((local_hour >= 9) & (local_hour < 16))
    assert in_hours > 0.75
    open_hour = np.sum((local_hour >= 9) & (local_hour < 10))
    midday_hour = np.sum((local_hour >= 12.5) & (local_hour < 13.5))
    assert open_hour > midday_hour  # the open peak
    assert trace.burst_starts_s  # news and batch bursts are labelled


def test_holiday_and_weekend_carry_a_small_share() -> None:
    thanksgiving = generate(Scenario(), HOURS, dt.date(2026, 11, 26), 1, seed=5)
    saturday = generate(Scenario(), HOURS, dt.date(2026, 11, 28), 1, seed=5)
    early_close = generate(Scenario(), HOURS, dt.date(2026, 11, 27), 1, seed=5)
    assert len(thanksgiving) == len(saturday) == 5 * 80
    assert len(early_close) == 5 * 1_200
    after_one = (early_close.arrival_s - early_close.start_s) / 3600 >= 14
    assert np.mean(after_one) < 0.1  # the plateau ends at the 13:00 early close


@pytest.mark.parametrize(
    "date",
    [
        dt.date(2026, 3, 8),  # spring forward: the day has 23 hours
        dt.date(2026, 11, 1),  # fall back: 25 hours
        dt.date(2026, 3, 9),  # the Monday after
    ],
)
def test_dst_day_keeps_the_open_peak_on_the_wall_clock(date: dt.date) -> None:
    # The switches fall on Sundays: trade every day so the DST day itself has market hours.
    every_day = dataclasses.replace(HOURS, weekdays=tuple(range(7)))
    trace = generate(Scenario(), every_day, date, 1, seed=1)
    local = [dt.datetime.fromtimestamp(t, HOURS.zone).hour for t in trace.arrival_s]
    busiest_hour = np.bincount(local).argmax()
    # The open peak, 35 min after the 09:00 open; an hour off either way is a DST slip.
    assert busiest_hour == HOURS.open_time.hour


def test_no_traffic_gives_an_empty_trace_that_still_simulates() -> None:
    trace = generate(Scenario(qpd_per_tenant=0), HOURS, TUESDAY, 1, seed=5)
    assert len(trace) == 0
    outcome = run_configs(trace, Simulation(FLEET_POLICY), configs=("static-1", "policy-aws"))
    assert [r.latency.requests for r in outcome.reports] == [0, 0]
    assert outcome.report("policy-aws").gpu_hours > 24  # the 2-instance market-hours minimum
