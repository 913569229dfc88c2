"""The burn-rate replay on synthetic per-minute series whose answer is worked out by hand
(99 % over 28 days: page at 13.44 % missing over 1 h and 5 min, ticket at 5.6 % over 6 h
and 30 min, each window needing 20 requests)."""

from __future__ import annotations

import numpy as np
import pytest

from infra.policy.slo import Slo
from infra.sim.burn_rate import budget_burn, per_minute, replay

CLEAN_HOURS = 6


def series(*parts: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-minute (counted, misses) from runs of (minutes, requests a minute, misses a minute)."""
    counted = np.concatenate([np.full(m, n, dtype=np.int64) for m, n, _ in parts])
    misses = np.concatenate([np.full(m, k, dtype=np.int64) for m, _, k in parts])
    return counted, misses


def test_a_burst_of_misses_pages_and_does_not_ticket() -> None:
    # GIVEN 6 clean hours at 10 requests a minute, then 30 minutes with half of them missing
    counted, misses = series((CLEAN_HOURS * 60, 10, 0), (30, 10, 5), (120, 10, 0))
    alarms = replay(counted, misses, Slo())
    # THEN the hour's ratio reaches 13.44 % at the burst's 17th minute (85 / 600 = 14.2 %;
    # 80 / 600 = 13.3 % is short); the alarm holds to the burst's end and 3 minutes more,
    # until the 5-minute window holds one burst minute (5 / 50 = 10 %): 14 + 3 minutes
    assert (alarms["fast"].firings, alarms["fast"].minutes_in_alarm) == (1, 17)
    assert alarms["fast"].severity == "page"
    # the 6 h window never gets past 150 / 3,600 = 4.2 %, under the ticket's 5.6 %
    assert (alarms["slow"].firings, alarms["slow"].minutes_in_alarm) == (0, 0)


def test_a_trickle_of_misses_tickets_and_does_not_page() -> None:
    # GIVEN 6 clean hours at 25 requests a minute, then 6 hours with 2 of them missing (8 %)
    counted, misses = series((CLEAN_HOURS * 60, 25, 0), (CLEAN_HOURS * 60, 25, 2))
    alarms = replay(counted, misses, Slo())
    # THEN 8 % never reaches the page's 13.44 %
    assert alarms["fast"].firings == 0
    # and the 6 h window reaches 5.6 % exactly at the trickle's 252nd minute
    # (504 / 9,000): an exact hit alarms, and it holds to the end (360 - 252 + 1 minutes)
    assert (alarms["slow"].firings, alarms["slow"].minutes_in_alarm) == (1, 109)
    assert alarms["slow"].severity == "ticket"


def test_one_failure_in_three_requests_at_night_does_not_alarm() -> None:
    # GIVEN a night with 3 requests an hour apart, one of them failed (33 % missing)
    counted = np.zeros(8 * 60, dtype=np.int64)
    misses = np.zeros_like(counted)
    counted[[60, 120, 180]] = 1
    misses[120] = 1
    # THEN no window counts 20 requests: nothing fires
    alarms = replay(counted, misses, Slo())
    assert all(a.firings == 0 and a.minutes_in_alarm == 0 for a in alarms.values())
    # while the same night would page and ticket if a single request were enough
    loose = replay(counted, misses, Slo(min_requests=1))
    assert loose["fast"].firings == 1
    assert loose["slow"].firings == 1


def test_requests_count_in_the_minute_they_settled_and_the_span_covers_the_last() -> None:
    start = 1_000_000.0
    settled = np.array([start + 30, start + 59.9, start + 60, start + 200])
    missed = np.array([False, True, True, False])
    counted, misses = per_minute(settled, missed, start, start + 120)
    # the last request settled after the window's end: the span reaches its minute
    assert counted.tolist() == [2, 1, 0, 1]
    assert misses.tolist() == [1, 1, 0, 0]


def test_budget_burn_is_the_miss_ratio_in_budgets() -> None:
    assert budget_burn(2, 100, 0.01) == pytest.approx(2.0)
    assert budget_burn(1, 100, 0.01) == pytest.approx(1.0)
    assert budget_burn(0, 0, 0.01) == 0.0
