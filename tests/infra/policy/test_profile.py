"""The learned intraday profile on synthetic history with a known burst."""

from __future__ import annotations

import datetime as dt

import pytest

from infra.policy import FLEET_POLICY, effective_schedule
from infra.policy.profile import HistoryTooShortError, learned_windows, with_learned

WEDNESDAY = dt.date(2026, 12, 16)


def day(burst: float, start: int = 14 * 60, minutes: int = 30, base: float = 5.0) -> list[float]:
    values = [0.0] * 1440
    for minute in range(9 * 60 + 30, 16 * 60):
        values[minute] = base
    for minute in range(start, start + minutes):
        values[minute] = burst
    return values


def test_a_recurring_burst_gets_a_window_one_cold_start_ahead() -> None:
    # GIVEN two past Wednesdays with 35 requests in flight at 14:00-14:29 (4 replicas at 10)
    history = {dt.date(2026, 12, 2): day(35.0), dt.date(2026, 12, 9): day(32.0)}

    (window,) = learned_windows(FLEET_POLICY, history, WEDNESDAY)

    assert (window.start, window.release, window.end) == (
        dt.time(13, 50),  # the pre-warm lead (600 s) before the rise
        dt.time(14, 0),
        dt.time(14, 30),
    )
    assert window.min_replicas == 4
    reasons = [
        (c.local_time.strftime("%H:%M"), c.min_replicas, c.reason)
        for c in effective_schedule(with_learned(FLEET_POLICY, [window]), WEDNESDAY, 1)
    ]
    assert ("13:50", 4, "profile") in reasons and ("14:30", 2, "profile-end") in reasons


def test_demand_the_floor_serves_and_other_weekdays_give_no_window() -> None:
    history = {
        dt.date(2026, 12, 2): day(15.0),  # 2 replicas serve 20: the market-hours floor
        dt.date(2026, 12, 9): day(15.0),
        dt.date(2026, 12, 8): day(40.0),  # a Tuesday: not this weekday's history
        dt.date(2026, 12, 1): day(40.0),
    }
    assert learned_windows(FLEET_POLICY, history, WEDNESDAY) == []


def test_a_one_off_burst_is_below_the_quantile_of_three_days() -> None:
    history = {
        dt.date(2026, 11, 25): day(5.0),
        dt.date(2026, 12, 2): day(5.0),
        dt.date(2026, 12, 9): day(40.0),
    }
    from infra.policy.profile import ProfileSettings

    assert learned_windows(FLEET_POLICY, history, WEDNESDAY, ProfileSettings(quantile=0.5)) == []
    assert learned_windows(FLEET_POLICY, history, WEDNESDAY, ProfileSettings(quantile=1.0))


def test_too_short_history_is_refused_and_closed_days_need_none() -> None:
    with pytest.raises(HistoryTooShortError, match="1 past Wednesday"):
        learned_windows(FLEET_POLICY, {dt.date(2026, 12, 9): day(35.0)}, WEDNESDAY)
    assert learned_windows(FLEET_POLICY, {}, dt.date(2026, 12, 25)) == []
