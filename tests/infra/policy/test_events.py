"""Market events: validation, the policy file's `[[events]]`/`cancel_events`, the schedule."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from infra.policy import (
    FLEET_POLICY,
    PolicyError,
    effective_schedule,
    event_data_warning,
    minimum_at,
)
from infra.policy.event_data import PUBLISHED_EVENTS
from infra.policy.loader import policy_as_mapping, policy_from_mapping

ZONE = FLEET_POLICY.schedule.zone
EVENT = {
    "date": "2026-12-10",
    "release": "08:30",
    "start": "08:20",
    "end": "09:15",
    "min_replicas": 3,
    "name": "tenant report",
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"date": "2026-12-25"}, "events[0].date: 2026-12-25 (tenant report) is a closed day"),
        ({"date": "2026-12-12"}, "events[0].date: 2026-12-12 (tenant report) is a closed day"),
        ({"release": "09:30"}, "events[0].release: must be inside the window 08:20-09:15"),
        ({"end": "08:00"}, "events[0].end: must be after start (08:20)"),
        ({"min_replicas": 0}, "events[0].min_replicas: must be >= 1"),
        ({"min_replicas": 5}, "events[0].min_replicas: must be between 1 and max_replicas (4)"),
        ({"start": "25:00"}, "events[0].start: must be a time as HH:MM"),
        ({"name": " "}, "events[0].name: must say which event it is"),
    ],
)
def test_bad_events_are_refused_naming_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        policy_from_mapping({"events": [{**EVENT, **changes}]}, FLEET_POLICY)
    assert str(raised.value).startswith(message), str(raised.value)


def test_published_fomc_dates_are_sourced_trading_days() -> None:
    assert PUBLISHED_EVENTS and all(event.source for event in PUBLISHED_EVENTS)
    assert {e.date.year for e in PUBLISHED_EVENTS} >= {2026, 2027}
    # FOMC statement days are Wednesdays (second day of the Tuesday-Wednesday meeting).
    assert all(event.date.weekday() == 2 for event in PUBLISHED_EVENTS)


def test_user_events_add_to_the_published_ones_and_raise_the_schedule() -> None:
    policy = policy_from_mapping({"events": [EVENT]}, FLEET_POLICY)

    assert len(policy.events) == len(FLEET_POLICY.events) + 1
    changes = [
        (c.local_time.strftime("%H:%M"), c.min_replicas, c.reason)
        for c in effective_schedule(policy, dt.date(2026, 12, 10), 1)
    ]
    # 08:20 event start (3), the recurring pre-open at 08:50 is inside it, 09:15 back to 2.
    assert changes == [("08:20", 3, "event"), ("09:15", 2, "event-end"), ("16:00", 1, "close")]


def test_fomc_afternoon_minimum_and_cancelling_one_day() -> None:
    at = dt.datetime(2026, 12, 9, 14, 10, tzinfo=ZONE)
    assert minimum_at(FLEET_POLICY, at) == 3
    assert minimum_at(FLEET_POLICY, at.replace(hour=15)) == 2

    cancelled = policy_from_mapping({"cancel_events": ["2026-12-09"]}, FLEET_POLICY)

    assert minimum_at(cancelled, at) == 2
    assert [c.reason for c in effective_schedule(cancelled, dt.date(2026, 12, 9), 1)] == [
        "pre-open",
        "close",
    ]


def test_policy_with_events_round_trips_through_its_mapping() -> None:
    policy = policy_from_mapping({"events": [EVENT], "cancel_events": ["2026-12-09"]}, FLEET_POLICY)
    assert policy_from_mapping(policy_as_mapping(policy), FLEET_POLICY) == policy


def test_event_data_warning_when_dates_run_out_within_60_days() -> None:
    last = max(e.date for e in FLEET_POLICY.events)
    assert event_data_warning(FLEET_POLICY.events, last - dt.timedelta(days=61)) is None
    warning = event_data_warning(FLEET_POLICY.events, last - dt.timedelta(days=59))
    assert warning is not None and f"end on {last} (59 days" in warning
    users_own = [dataclasses.replace(e, source="") for e in FLEET_POLICY.events]
    assert "no published market events" in (event_data_warning(users_own, last) or "")
