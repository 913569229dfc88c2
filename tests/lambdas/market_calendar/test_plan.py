"""The planner on its own: which corrections the recurring schedule needs, day by day."""

from __future__ import annotations

import dataclasses
import datetime as dt

from infra.policy import FLEET_POLICY, SpecialDay
from lambdas.market_calendar.plan import (
    CORRECTION_LAG,
    OneOffAction,
    Override,
    overrides_from_actions,
    plan_actions,
    plan_day,
)

UTC = dt.UTC


def test_an_ordinary_trading_week_needs_no_calendar_action() -> None:
    assert plan_actions(FLEET_POLICY, dt.date(2026, 11, 30), 7) == []


def test_christmas_eve_2026_early_close_and_christmas_holiday() -> None:
    names = [a.name for a in plan_actions(FLEET_POLICY, dt.date(2026, 12, 24), 2)]
    assert names == [
        "finsight-calendar-20261224-1300-early-close",
        "finsight-calendar-20261225-0855-holiday",
    ]


def test_holiday_correction_lands_after_the_late_recurring_prewarm() -> None:
    (action,) = plan_day(FLEET_POLICY, dt.date(2026, 11, 26))
    prewarm = dt.datetime.combine(
        dt.date(2026, 11, 26), FLEET_POLICY.schedule.prewarm_time, FLEET_POLICY.schedule.zone
    )
    # Scheduled actions may start up to 2 minutes late: the undo must come after that.
    assert action.start_time - prewarm == CORRECTION_LAG > dt.timedelta(minutes=2)
    assert action.min_size == FLEET_POLICY.default.min_replicas


def test_weekend_special_day_sets_and_resets_without_corrections() -> None:
    policy = dataclasses.replace(
        FLEET_POLICY,
        special_days=(SpecialDay(dt.date(2026, 12, 19), dt.time(10), dt.time(12), 2, "drill"),),
    )
    assert [(a.name, a.min_size) for a in plan_day(policy, dt.date(2026, 12, 19))] == [
        ("finsight-calendar-20261219-1000-special", 2),
        ("finsight-calendar-20261219-1200-special-end", 1),
    ]


def test_special_day_starting_with_the_prewarm_is_raised_after_it() -> None:
    policy = dataclasses.replace(
        FLEET_POLICY,
        special_days=(SpecialDay(dt.date(2026, 12, 16), dt.time(8, 50), dt.time(10), 4, "cpi"),),
    )
    assert [(a.name, a.min_size) for a in plan_day(policy, dt.date(2026, 12, 16))] == [
        # The name takes the schedule's reason for 08:50, which is the pre-open.
        ("finsight-calendar-20261216-0855-pre-open", 4),
        ("finsight-calendar-20261216-1000-special-end", 2),
    ]


def test_overrides_are_paired_from_their_action_names() -> None:
    start = dt.datetime(2026, 12, 16, 15, tzinfo=UTC)
    end = dt.datetime(2026, 12, 16, 16, tzinfo=UTC)
    actions = [
        OneOffAction(start, 3, "finsight-override-20261216-1000-start"),
        OneOffAction(end, 2, "finsight-override-20261216-1000-end"),
        OneOffAction(start, 4, "finsight-override-20261217-1000-start"),  # no end: ignored
        OneOffAction(start, 4, "finsight-calendar-20261216-1000-special"),
    ]
    assert overrides_from_actions(actions) == [Override("20261216-1000", start, end, 3, 2)]
