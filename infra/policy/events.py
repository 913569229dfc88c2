"""Scheduled market events (FOMC statements, data releases, a tenant's earnings) as dated
windows of extra warm capacity, and the check that the published calendar has not run out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from infra.policy.errors import PolicyError

# `fleet policy` warns and the calendar function publishes a metric when the last event
# from a published source is closer than this: a year's dates must be added before then.
EVENT_DATA_WARNING_DAYS = 60


@dataclass(frozen=True)
class MarketEvent:
    """A dated release (local `release` time) and the window `start`-`end` it needs covered
    with at least `min_replicas` warm replicas; `source` names where the date comes from."""

    date: dt.date
    release: dt.time
    start: dt.time
    end: dt.time
    min_replicas: int
    name: str
    source: str = ""

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise PolicyError(
                "end",
                f"must be after start ({self.start:%H:%M}) on the same day, got {self.end:%H:%M}",
            )
        if not self.start <= self.release < self.end:
            raise PolicyError(
                "release",
                f"must be inside the window {self.start:%H:%M}-{self.end:%H:%M}, "
                f"got {self.release:%H:%M}",
            )
        if isinstance(self.min_replicas, bool) or not isinstance(self.min_replicas, int):
            raise PolicyError("min_replicas", f"must be a whole number, got {self.min_replicas!r}")
        if self.min_replicas < 1:
            raise PolicyError("min_replicas", f"must be >= 1, got {self.min_replicas}")
        if not self.name.strip():
            raise PolicyError("name", "must say which event it is (e.g. 'FOMC statement')")

    @property
    def published(self) -> bool:
        """Taken from a published schedule (a named source) rather than added by a user."""
        return bool(self.source.strip())


def event_data_end(events: Iterable[MarketEvent]) -> dt.date | None:
    """The last date covered by published (sourced) event data, or None without any."""
    dates = [event.date for event in events if event.published]
    return max(dates) if dates else None


def event_data_warning(
    events: Iterable[MarketEvent], today: dt.date, within_days: int = EVENT_DATA_WARNING_DAYS
) -> str | None:
    """A warning when the published event dates end within `within_days` of `today`."""
    end = event_data_end(events)
    if end is None:
        return "no published market events in the policy; event pre-warms are off"
    left = (end - today).days
    if left < within_days:
        return (
            f"published market-event dates end on {end} ({left} days from {today}); add the "
            f"next year's dates to infra/policy/event_data.py (warning below {within_days} days)"
        )
    return None
