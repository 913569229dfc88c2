"""Which one-off scheduled actions the group needs so its minimum follows the exchange calendar.

Pure functions: the stack's recurring Mon-Fri actions (pre-open, close) and any live
`fleet override` actions are the baseline; where the baseline would leave the minimum
different from the effective schedule (holiday, early close, special day), a one-off
action owned by the calendar corrects it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from contract import CALENDAR_ACTION_PREFIX, OVERRIDE_ACTION_PREFIX
from infra.policy import CapacityChange, FleetPolicy, effective_schedule
from infra.policy.calendar import trading_day
from infra.policy.schedule import REASON_HOLIDAY

UTC = dt.UTC

# Every action this function creates, and only those, starts with this prefix: it never
# touches the stack's recurring actions or the overrides people add.
CALENDAR_PREFIX = CALENDAR_ACTION_PREFIX

# The contract with `fleet override` (infra/cli/override_cmd.py): an override is a pair of
# one-off actions `<prefix><id>-start` / `<prefix><id>-end`, the id beginning YYYYMMDD-HHMM.
OVERRIDE_PREFIX = OVERRIDE_ACTION_PREFIX
_OVERRIDE_NAME = re.compile(
    rf"^{re.escape(OVERRIDE_PREFIX)}(?P<id>\d{{8}}-\d{{4}}(?:-[a-z0-9-]+)?)-(?P<edge>start|end)$"
)

# A recurring action cannot be cancelled for one day, only undone after it has run. Scheduled
# actions may start up to 2 minutes late and run in start-time order within a group, so an
# action 5 minutes later always lands after the one it undoes, with margin for the slower
# execution AWS warns about when actions are close together. On a holiday the pre-warm has
# then already asked for a second instance; lowering the minimum lets the ordinary scale-in
# policy remove it once idle, rather than forcing a desired capacity over real load.
CORRECTION_LAG = dt.timedelta(minutes=5)


@dataclass(frozen=True, order=True)
class OneOffAction:
    """A one-off scheduled action that sets the group's minimum at a UTC instant."""

    start_time: dt.datetime  # aware, UTC
    min_size: int
    name: str

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "start_time": self.start_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "min_size": self.min_size,
        }


@dataclass(frozen=True)
class Override:
    """A live `fleet override` window, read back from the group's scheduled actions."""

    override_id: str
    start: dt.datetime  # aware
    end: dt.datetime  # aware
    min_replicas: int
    end_min_replicas: int  # what the override's end action sets back


@dataclass(frozen=True)
class _Event:
    at: dt.datetime
    min_replicas: int


def calendar_action_name(local_time: dt.datetime, reason: str) -> str:
    return f"{CALENDAR_PREFIX}{local_time:%Y%m%d-%H%M}-{reason}"


def overrides_from_actions(actions: Iterable[OneOffAction]) -> list[Override]:
    """Pair the `-start`/`-end` actions of each override; unpaired halves are ignored."""
    starts: dict[str, OneOffAction] = {}
    ends: dict[str, OneOffAction] = {}
    for action in actions:
        match = _OVERRIDE_NAME.match(action.name)
        if match is None:
            continue
        (starts if match["edge"] == "start" else ends)[match["id"]] = action
    return [
        Override(
            override_id=override_id,
            start=start.start_time,
            end=ends[override_id].start_time,
            min_replicas=start.min_size,
            end_min_replicas=ends[override_id].min_size,
        )
        for override_id, start in sorted(starts.items())
        if override_id in ends and ends[override_id].start_time > start.start_time
    ]


@dataclass(frozen=True)
class _Step:
    """The minimum the schedule wants from `at` on, and why (for the action's name)."""

    at: dt.datetime
    min_replicas: int
    reason: str


def _wanted_steps(policy: FleetPolicy, date: dt.date, overrides: Sequence[Override]) -> list[_Step]:
    """The effective schedule of one local day, raised to any override window in force."""
    zone = policy.schedule.zone
    changes: list[CapacityChange] = [
        c for c in effective_schedule(policy, date, 1) if c.reason != REASON_HOLIDAY
    ]
    windows = [
        (o.start.astimezone(zone), o.end.astimezone(zone), o.min_replicas)
        for o in overrides
        if o.start.astimezone(zone).date() == date
    ]

    def schedule_value(at: dt.datetime) -> tuple[int, str]:
        current = (policy.default.min_replicas, "default")
        for change in changes:
            if change.local_time <= at:
                current = (change.min_replicas, change.reason)
        return current

    times = sorted(
        {c.local_time for c in changes} | {s for s, _, _ in windows} | {e for _, e, _ in windows}
    )
    steps: list[_Step] = []
    previous = policy.default.min_replicas
    for at in times:
        value, reason = schedule_value(at)
        raised = [m for s, e, m in windows if s <= at < e and m > value]
        if raised:
            value, reason = max(raised), "override"
        if value != previous:
            steps.append(_Step(at, value, reason))
            previous = value
    return steps


def _baseline_events(
    policy: FleetPolicy, date: dt.date, overrides: Sequence[Override]
) -> list[_Event]:
    """What the group does that day without calendar actions: recurring ones, then overrides."""
    hours = policy.schedule
    zone = hours.zone
    events: list[_Event] = []
    # The stack compiles the same policy into recurring Mon-Fri actions at these local times.
    if date.weekday() in hours.weekdays:
        events.append(
            _Event(
                dt.datetime.combine(date, hours.prewarm_time, zone),
                policy.market_hours.min_replicas,
            )
        )
        events.append(
            _Event(dt.datetime.combine(date, hours.close_time, zone), policy.default.min_replicas)
        )
    for override in overrides:
        start = override.start.astimezone(zone)
        if start.date() == date:
            events.append(_Event(start, override.min_replicas))
            events.append(_Event(override.end.astimezone(zone), override.end_min_replicas))
    return sorted(events, key=lambda event: event.at)


def _step_at(steps: Sequence[_Step], at: dt.datetime) -> _Step | None:
    current = None
    for step in steps:
        if step.at <= at:
            current = step
    return current


def plan_day(
    policy: FleetPolicy, date: dt.date, overrides: Sequence[Override] = ()
) -> list[OneOffAction]:
    """The calendar's one-off actions for one local date (empty on an ordinary trading day).

    Walks the day's instants in order, tracking the minimum the group would actually have;
    wherever it differs from the wanted minimum, one action sets it right: at the wanted
    change itself, or `CORRECTION_LAG` after a baseline action it must undo.
    """
    zone = policy.schedule.zone
    steps = _wanted_steps(policy, date, overrides)
    events = _baseline_events(policy, date, overrides)
    is_holiday = trading_day(policy.schedule.exchange, date).is_holiday
    instants = sorted({e.at for e in events} | {s.at for s in steps})
    actions: list[OneOffAction] = []
    actual = policy.default.min_replicas
    for index, at in enumerate(instants):
        baseline_here = [e for e in events if e.at == at]
        if baseline_here:
            actual = baseline_here[-1].min_replicas
        wanted_step = _step_at(steps, at)
        wanted = wanted_step.min_replicas if wanted_step else policy.default.min_replicas
        if actual == wanted:
            continue
        if baseline_here:
            when = at + CORRECTION_LAG
            if index + 1 < len(instants) and instants[index + 1] <= when:
                continue  # the next instant decides the minimum before the correction could
            reason = (
                REASON_HOLIDAY if is_holiday else (wanted_step.reason if wanted_step else "default")
            )
        else:
            when = at
            reason = wanted_step.reason if wanted_step else "default"
        actions.append(
            OneOffAction(
                start_time=when.astimezone(UTC),
                min_size=wanted,
                name=calendar_action_name(when.astimezone(zone), reason),
            )
        )
        actual = wanted
    return actions


def plan_actions(
    policy: FleetPolicy, start: dt.date, days: int, overrides: Sequence[Override] = ()
) -> list[OneOffAction]:
    """The calendar's one-off actions for `days` local dates from `start`, in time order."""
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    actions: list[OneOffAction] = []
    for offset in range(days):
        actions += plan_day(policy, start + dt.timedelta(days=offset), overrides)
    return sorted(actions)
