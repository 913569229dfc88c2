"""Summaries: reversals, burst response, percentiles with failed requests."""

from __future__ import annotations

import math

import numpy as np

from infra.sim.metrics import burst_response_s, count_reversals, latency_summary
from infra.sim.sla import Sla


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


def test_burst_response_is_the_time_until_more_instances_serve() -> None:
    changes = [(0.0, 2), (500.0, 3), (4000.0, 4)]
    delays, missed = burst_response_s((300.0, 600.0, 9000.0), changes)
    # 300 -> 500 (3 serving); 600 -> next increase at 4000 is past the 30-min window;
    # 9000: nothing after.
    assert delays == [200.0]
    assert missed == 2


def test_failed_requests_make_the_percentile_infinite_not_nan() -> None:
    ttft = np.array([0.5] * 98 + [math.inf] * 2)
    summary = latency_summary(ttft, ttft * 10, Sla())
    assert summary.p99_ttft_s == math.inf
    assert summary.sla_attainment == 0.98
    assert not summary.meets_sla
