"""The effective schedule: DST weeks, NYSE holidays and early closes, special days."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from infra.policy import FLEET_POLICY, SpecialDay, effective_schedule, minimum_at

NEW_YORK = FLEET_POLICY.schedule.zone


def utc_hhmm(changes: list, reason: str) -> list[str]:  # type: ignore[type-arg]
    return [c.utc_time.strftime("%m-%d %H:%M") for c in changes if c.reason == reason]


@pytest.mark.parametrize(
    ("dst_sunday", "summer_after"),
    [
        (dt.date(2026, 3, 8), True),  # spring forward
        (dt.date(2026, 11, 1), False),  # fall back
        (dt.date(2027, 3, 14), True),
        (dt.date(2027, 11, 7), False),
    ],
)
def test_dst_weeks_shift_utc_but_not_local_times(dst_sunday: dt.date, summer_after: bool) -> None:
    friday_before = dst_sunday - dt.timedelta(days=2)
    monday_after = dst_sunday + dt.timedelta(days=1)
    changes = effective_schedule(FLEET_POLICY, friday_before, 4)
    pre_open = [c for c in changes if c.reason == "pre-open"]
    close = [c for c in changes if c.reason == "close"]
    assert [c.local_time.date() for c in pre_open] == [friday_before, monday_after]
    assert {c.local_time.strftime("%H:%M") for c in pre_open} == {"08:50"}
    assert {c.local_time.strftime("%H:%M") for c in close} == {"16:00"}
    # 09:00 ET is 13:00 UTC in summer (EDT) and 14:00 UTC in winter (EST).
    summer, winter = "12:50", "13:50"
    before, after = (winter, summer) if summer_after else (summer, winter)
    assert [c.utc_time.strftime("%H:%M") for c in pre_open] == [before, after]
    open_utc = [
        dt.datetime.combine(c.local_time.date(), dt.time(9), NEW_YORK).astimezone(dt.UTC).hour
        for c in pre_open
    ]
    assert open_utc == ([14, 13] if summer_after else [13, 14])


def test_thanksgiving_2026_holiday_and_early_close() -> None:
    changes = effective_schedule(FLEET_POLICY, dt.date(2026, 11, 25), 3)
    summary = [(c.local_time.strftime("%m-%d %H:%M"), c.min_replicas, c.reason) for c in changes]
    assert summary == [
        ("11-25 08:50", 2, "pre-open"),
        ("11-25 16:00", 1, "close"),
        ("11-26 08:50", 1, "holiday"),  # Thanksgiving: no market-hours minimum
        ("11-27 08:50", 2, "pre-open"),
        ("11-27 13:00", 1, "early-close"),  # the minimum drops at 13:00
    ]
    assert minimum_at(FLEET_POLICY, dt.datetime(2026, 11, 26, 11, 0, tzinfo=NEW_YORK)) == 1
    assert minimum_at(FLEET_POLICY, dt.datetime(2026, 11, 27, 12, 59, tzinfo=NEW_YORK)) == 2
    assert minimum_at(FLEET_POLICY, dt.datetime(2026, 11, 27, 13, 0, tzinfo=NEW_YORK)) == 1


def test_good_friday_2027_and_weekends_have_no_minimum() -> None:
    changes = effective_schedule(FLEET_POLICY, dt.date(2027, 3, 26), 3)  # Fri, Sat, Sun
    assert [(c.reason, c.note) for c in changes] == [("holiday", "Good Friday")]


def test_every_2026_holiday_from_the_architecture_is_skipped() -> None:
    holidays_2026 = [
        "01-01",
        "01-19",
        "02-16",
        "04-03",
        "05-25",
        "06-19",
        "07-03",
        "09-07",
        "11-26",
        "12-25",
    ]
    changes = effective_schedule(FLEET_POLICY, dt.date(2026, 1, 1), 365)
    assert [c.local_time.strftime("%m-%d") for c in changes if c.reason == "holiday"] == (
        holidays_2026
    )
    assert [c.local_time.strftime("%m-%d") for c in changes if c.reason == "early-close"] == [
        "11-27",
        "12-24",
    ]
    pre_open_days = {c.local_time.date() for c in changes if c.reason == "pre-open"}
    assert len(pre_open_days) == 261 - len(holidays_2026)  # 261 weekdays in 2026


def test_special_day_raises_the_minimum_inside_and_around_market_hours() -> None:
    rebalance = SpecialDay(dt.date(2026, 12, 18), dt.time(15, 0), dt.time(17, 0), 3, "rebalance")
    policy = dataclasses.replace(FLEET_POLICY, special_days=(rebalance,))
    changes = effective_schedule(policy, dt.date(2026, 12, 18), 1)
    summary = [(c.local_time.strftime("%H:%M"), c.min_replicas, c.reason) for c in changes]
    assert summary == [
        ("08:50", 2, "pre-open"),
        ("15:00", 3, "special"),
        ("17:00", 1, "special-end"),  # the close at 16:00 changes nothing while 3 are held
    ]


def test_days_must_be_positive() -> None:
    with pytest.raises(ValueError, match="days must be > 0"):
        effective_schedule(FLEET_POLICY, dt.date(2026, 1, 1), 0)
