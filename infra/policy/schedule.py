"""The effective schedule: every change of minimum capacity over a date range, DST-correct.

Pure functions of the policy and the exchange calendar; the CLI prints them, the stack's
recurring scheduled actions and the calendar Lambda's one-off actions are built from them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

from infra.policy.calendar import trading_day
from infra.policy.fleet import FleetPolicy

UTC = dt.UTC

# Why the minimum changed; one name per cause, shared with the Lambda and the runbook.
REASON_PRE_OPEN = "pre-open"
REASON_CLOSE = "close"
REASON_EARLY_CLOSE = "early-close"
REASON_HOLIDAY = "holiday"
REASON_SPECIAL = "special"
REASON_SPECIAL_END = "special-end"
REASON_EVENT = "event"
REASON_EVENT_END = "event-end"
REASON_PROFILE = "profile"
REASON_PROFILE_END = "profile-end"


@dataclass(frozen=True)
class CapacityChange:
    """The minimum capacity from `local_time` on (a `holiday` entry records a skipped day)."""

    local_time: dt.datetime
    min_replicas: int
    reason: str
    note: str = ""

    @property
    def utc_time(self) -> dt.datetime:
        return self.local_time.astimezone(UTC)

    def as_json(self) -> dict[str, object]:
        return {
            "local_time": self.local_time.isoformat(),
            "utc_time": self.utc_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "min_replicas": self.min_replicas,
            "reason": self.reason,
            "note": self.note,
        }


@dataclass(frozen=True)
class _Window:
    start: dt.datetime
    end: dt.datetime
    min_replicas: int
    start_reason: str
    end_reason: str
    note: str


def _market_window(policy: FleetPolicy, date: dt.date) -> _Window | None:
    hours = policy.schedule
    if date.weekday() not in hours.weekdays:
        return None
    day = trading_day(hours.exchange, date)
    if day.is_holiday:
        return None
    zone = hours.zone
    close = hours.early_close_time if day.is_early_close else hours.close_time
    return _Window(
        start=dt.datetime.combine(date, hours.prewarm_time, zone),
        end=dt.datetime.combine(date, close, zone),
        min_replicas=policy.market_hours.min_replicas,
        start_reason=REASON_PRE_OPEN,
        end_reason=REASON_EARLY_CLOSE if day.is_early_close else REASON_CLOSE,
        note=day.name or "",
    )


def _windows(policy: FleetPolicy, date: dt.date) -> list[_Window]:
    zone = policy.schedule.zone
    windows = [w for w in [_market_window(policy, date)] if w is not None]
    windows += [
        _Window(
            start=dt.datetime.combine(date, special.start, zone),
            end=dt.datetime.combine(date, special.end, zone),
            min_replicas=special.min_replicas,
            start_reason=REASON_SPECIAL,
            end_reason=REASON_SPECIAL_END,
            note=special.reason,
        )
        for special in policy.special_days
        if special.date == date
    ]
    windows += [
        _Window(
            start=dt.datetime.combine(date, event.start, zone),
            end=dt.datetime.combine(date, event.end, zone),
            min_replicas=min(event.min_replicas, policy.max_replicas),
            start_reason=REASON_EVENT,
            end_reason=REASON_EVENT_END,
            note=f"{event.name} {event.release:%H:%M}",
        )
        for event in policy.active_events
        if event.date == date
    ]
    windows += [
        _Window(
            start=dt.datetime.combine(date, learned.start, zone),
            end=dt.datetime.combine(date, learned.end, zone),
            min_replicas=learned.min_replicas,
            start_reason=REASON_PROFILE,
            end_reason=REASON_PROFILE_END,
            note=f"demand rises at {learned.release:%H:%M}",
        )
        for learned in policy.learned
        if learned.date == date and date not in policy.cancelled_event_dates
    ]
    return windows


def _minimum_within(policy: FleetPolicy, windows: list[_Window], at: dt.datetime) -> int:
    active = [w.min_replicas for w in windows if w.start <= at < w.end]
    return max([policy.default.min_replicas, *active])


def effective_schedule(policy: FleetPolicy, start: dt.date, days: int) -> list[CapacityChange]:
    """Every change of the minimum from `start` for `days` local days, in time order.

    A holiday on a weekday yields one `holiday` entry at the would-be pre-warm time with
    the default minimum, so readers see the skipped day rather than a silent gap.
    """
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    zone = policy.schedule.zone
    changes: list[CapacityChange] = []
    for offset in range(days):
        date = start + dt.timedelta(days=offset)
        day = trading_day(policy.schedule.exchange, date)
        if day.is_holiday and date.weekday() in policy.schedule.weekdays:
            changes.append(
                CapacityChange(
                    local_time=dt.datetime.combine(date, policy.schedule.prewarm_time, zone),
                    min_replicas=policy.default.min_replicas,
                    reason=REASON_HOLIDAY,
                    note=day.name or "",
                )
            )
        windows = _windows(policy, date)
        edges = sorted(
            [(w.start, w.start_reason, w.note) for w in windows]
            + [(w.end, w.end_reason, w.note) for w in windows]
        )
        previous = policy.default.min_replicas
        for at, reason, note in edges:
            minimum = _minimum_within(policy, windows, at)
            if minimum != previous:
                changes.append(CapacityChange(at, minimum, reason, note))
                previous = minimum
    return changes


@lru_cache(maxsize=512)
def _day_windows(policy: FleetPolicy, date: dt.date) -> tuple[_Window, ...]:
    return tuple(_windows(policy, date))


def minimum_at(policy: FleetPolicy, instant: dt.datetime) -> int:
    """The minimum replica count the schedule requires at an aware instant."""
    local = instant.astimezone(policy.schedule.zone)
    return _minimum_within(policy, list(_day_windows(policy, local.date())), local)
