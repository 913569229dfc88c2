"""The learned intraday profile: from the fleet's own demand on past days, per weekday and
minute, a high quantile of demand; where the scheduled floor cannot serve it, a pre-warm
window that starts one cold start ahead. Pure functions; the calendar Lambda feeds them
CloudWatch history and applies the windows as one-off actions. Plain Python: the Lambda's
zip carries no numpy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from infra.policy.calendar import trading_day
from infra.policy.events import MarketEvent
from infra.policy.fleet import FleetPolicy
from infra.policy.schedule import minimum_at

MINUTES_PER_DAY = 1440
PROFILE_NAME = "learned profile"
DEFAULT_QUANTILE = 0.9
# Fewer past days of the same weekday than this and the quantile is noise: skip.
MIN_DAYS_PER_WEEKDAY = 2


class HistoryTooShortError(ValueError):
    """Not enough past days of the target's weekday to learn from."""


@dataclass(frozen=True)
class ProfileSettings:
    quantile: float = DEFAULT_QUANTILE
    min_days_per_weekday: int = MIN_DAYS_PER_WEEKDAY
    # The cold start to cover: the schedule's own pre-warm lead by default.
    lead_s: int | None = None

    def __post_init__(self) -> None:
        if not 0.5 <= self.quantile <= 1.0:
            raise ValueError(f"quantile must be between 0.5 and 1.0, got {self.quantile}")
        if self.min_days_per_weekday < 1:
            raise ValueError(f"min_days_per_weekday must be >= 1, got {self.min_days_per_weekday}")


def learned_windows(
    policy: FleetPolicy,
    history: Mapping[dt.date, Sequence[float]],
    date: dt.date,
    settings: ProfileSettings = ProfileSettings(),
) -> list[MarketEvent]:
    """Pre-warm windows for local `date` from `history` (local date -> fleet demand, in
    requests in flight, per local minute 0..1439; missing minutes as 0).

    Raises HistoryTooShortError when fewer than `min_days_per_weekday` past trading days
    share the date's weekday. Returns [] on a closed day.
    """
    hours = policy.schedule
    if date.weekday() not in hours.weekdays or trading_day(hours.exchange, date).is_holiday:
        return []
    same_weekday = [
        [float(v) for v in values]
        for day, values in sorted(history.items())
        if day < date
        and day.weekday() == date.weekday()
        and not trading_day(hours.exchange, day).is_holiday
    ]
    if len(same_weekday) < settings.min_days_per_weekday:
        raise HistoryTooShortError(
            f"{len(same_weekday)} past {date:%A}(s) of demand history, need "
            f"{settings.min_days_per_weekday}"
        )
    for values in same_weekday:
        if len(values) != MINUTES_PER_DAY:
            raise ValueError(f"each day's history must have {MINUTES_PER_DAY} minutes")
    # The "higher" quantile: an observed value, never interpolated below a real peak.
    rank = math.ceil(settings.quantile * (len(same_weekday) - 1))
    demand = [sorted(column)[rank] for column in zip(*same_weekday, strict=True)]
    target = policy.default.target_ongoing_requests
    needed = [min(math.ceil(d / target - 1e-9), policy.max_replicas) for d in demand]
    zone = hours.zone

    def local(minute: int) -> dt.datetime:
        # Wall-clock minutes: combine, not add, so a DST day keeps its local times.
        return dt.datetime.combine(date, dt.time(minute // 60, minute % 60), zone)

    short = [needed[m] > minimum_at(policy, local(m)) for m in range(MINUTES_PER_DAY)]
    lead_min = math.ceil(
        (settings.lead_s if settings.lead_s is not None else hours.prewarm_lead_s) / 60
    )
    windows: list[tuple[int, int, int, int]] = []  # start, first short minute, end, minimum
    minute = 0
    while minute < MINUTES_PER_DAY:
        if not short[minute]:
            minute += 1
            continue
        first = minute
        while minute < MINUTES_PER_DAY and short[minute]:
            minute += 1
        start = max(first - lead_min, 0)
        minimum = max(needed[first:minute])
        if windows and start <= windows[-1][2]:
            previous = windows.pop()
            windows.append((previous[0], previous[1], minute, max(previous[3], minimum)))
        else:
            windows.append((start, first, minute, minimum))
    return [
        MarketEvent(
            date=date,
            release=local(first).time(),
            start=local(start).time(),
            end=local(end).time() if end < MINUTES_PER_DAY else dt.time(23, 59),
            min_replicas=minimum,
            name=PROFILE_NAME,
        )
        for start, first, end, minimum in windows
        if (end if end < MINUTES_PER_DAY else MINUTES_PER_DAY - 1) > start
    ]


def with_learned(policy: FleetPolicy, windows: Sequence[MarketEvent]) -> FleetPolicy:
    """`policy` with the learned windows added to its schedule (reason `profile`)."""
    return dataclasses.replace(policy, learned=tuple(windows))
