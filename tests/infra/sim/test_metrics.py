"""Summaries: reversals, burst-to-capacity episodes, percentiles with failed requests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infra.policy.slo import Slo, TenantSlo
from infra.sim.engine import Timeline
from infra.sim.metrics import count_reversals, latency_summary, scale_out_episodes


def test_a_reversal_is_an_opposite_scale_event_within_ten_minutes() -> None:
    events = [
        (0.0, 1, 2),  # up
        (300.0, 2, 1),  # down 5 min later: a reversal
        (1000.0, 1, 2),  # up 700 s later: too late to count
        (1100.0, 2, 3),  # up again: same direction
        (1200.0, 3, 2),  # down: a reversal
    ]
    assert count_reversals(events) == 2
    assert count_reversals([]) == 0


def _timeline(rows: list[tuple[float, float, int]]) -> Timeline:
    line = Timeline()
    for at, demand, serving in rows:
        line.time_s.append(at)
        line.ongoing_per_instance.append(demand)
        line.in_service.append(serving)
    return line


def test_burst_to_capacity_runs_from_demand_above_target_to_the_added_instance_serving() -> None:
    rows = [
        (0.0, 5.0, 1),
        (10.0, 12.0, 1),  # episode 1 starts: above the target of 10
        (20.0, 14.0, 1),
        (30.0, 15.0, 1),  # the controller scales out here
        (40.0, 9.0, 1),
        (300.0, 8.0, 2),  # the added instance serves: 290 s after the episode started
        (310.0, 11.0, 2),  # a spike above target without a scale out: no episode
        (320.0, 7.0, 2),
        (400.0, 13.0, 2),  # episode 2: scaled out, but nothing serves within 30 minutes
        (410.0, 13.0, 2),
        (2300.0, 13.0, 3),
    ]
    events = [(30.0, 1, 2), (410.0, 2, 3)]
    delays, missed = scale_out_episodes(_timeline(rows), events, target=10.0)
    assert delays == [290.0]
    assert missed == 1
    # A scale in is no episode's decision.
    assert scale_out_episodes(_timeline(rows), [(30.0, 2, 1)], target=10.0) == ([], 0)


def test_failed_requests_make_the_percentile_infinite_not_nan() -> None:
    ttft = np.array([0.5] * 98 + [math.inf] * 2)
    summary = latency_summary(ttft, ttft * 10, Slo())
    assert summary.p99_ttft_s == math.inf
    assert summary.slo_attainment == 0.98
    assert summary.misses == 2
    assert not summary.meets_slo
    # 2 % missing is twice the 1 % budget's even rate.
    assert summary.budget_burn == pytest.approx(2.0)


def test_a_tenant_is_judged_against_its_own_targets() -> None:
    ttft = np.array([0.5] * 90 + [2.0] * 10)
    slo = Slo(tenants=(TenantSlo("strict", ttft_s=1.0, e2e_s=30.0),))
    default = latency_summary(ttft, ttft * 10, slo)
    strict = latency_summary(ttft, ttft * 10, slo, "strict")
    assert (default.slo_attainment, default.ttft_target_s) == (1.0, 5.0)
    assert (strict.slo_attainment, strict.ttft_target_s, strict.e2e_target_s) == (0.9, 1.0, 30.0)
