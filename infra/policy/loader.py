"""Read a proposed policy from TOML (or a mapping) and write one back, validating every field.

A proposal file only lists what it changes; everything else comes from the deployed policy.
`market_hours` inherits from the proposal's `default`, as the two share all but the minimum.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from infra.policy.errors import PolicyError
from infra.policy.events import MarketEvent
from infra.policy.fleet import FleetPolicy, check_event
from infra.policy.market_hours import MarketHours, SpecialDay
from infra.policy.queue import GatewayQueue
from infra.policy.scaling import ScalingConfig
from infra.policy.slo import Slo, TenantSlo

T = TypeVar("T")


def _parse_time(field: str, value: object) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str):
        try:
            return dt.time.fromisoformat(value)
        except ValueError:
            pass
    raise PolicyError(field, f"must be a time as HH:MM, got {value!r}")


def _parse_date(field: str, value: object) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise PolicyError(field, f"must be a date as YYYY-MM-DD, got {value!r}")


def _build(cls: type[T], base: T | None, values: Mapping[str, Any], parent: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise PolicyError(
            f"{parent}.{unknown[0]}", f"unknown field; allowed: {', '.join(sorted(fields))}"
        )
    merged: dict[str, Any] = dataclasses.asdict(base) if base is not None else {}  # type: ignore[call-overload]
    for name, value in values.items():
        field_type = str(fields[name].type)
        if "dt.time" in field_type:
            value = _parse_time(f"{parent}.{name}", value)
        elif "dt.date" in field_type:
            value = _parse_date(f"{parent}.{name}", value)
        elif name == "weekdays" and isinstance(value, list):
            value = tuple(value)
        merged[name] = value
    try:
        return cls(**merged)
    except PolicyError as error:
        raise error.within(parent) from None
    except TypeError as error:
        raise PolicyError(parent, str(error)) from None


def policy_from_mapping(data: Mapping[str, Any], base: FleetPolicy) -> FleetPolicy:
    allowed = {
        "cancel_events",
        "default",
        "events",
        "market_hours",
        "queue",
        "schedule",
        "slo",
        "special_days",
    }
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise PolicyError(unknown[0], f"unknown section; allowed: {', '.join(sorted(allowed))}")
    default = _build(ScalingConfig, base.default, data.get("default", {}), "default")
    market_base = dataclasses.replace(default, min_replicas=base.market_hours.min_replicas)
    market = _build(ScalingConfig, market_base, data.get("market_hours", {}), "market_hours")
    schedule = _build(MarketHours, base.schedule, data.get("schedule", {}), "schedule")
    if "special_days" in data:
        special_days = tuple(
            _build(SpecialDay, None, entry, f"special_days[{index}]")
            for index, entry in enumerate(data["special_days"])
        )
    else:
        special_days = base.special_days
    queue = _build(GatewayQueue, base.queue, data.get("queue", {}), "queue")
    events, cancelled = _events(data, base, schedule, default.max_replicas)
    return FleetPolicy(
        default,
        market,
        schedule,
        special_days,
        queue,
        _slo(data, base.slo),
        events=events,
        cancelled_event_dates=cancelled,
    )


def _events(
    data: Mapping[str, Any], base: FleetPolicy, hours: MarketHours, max_replicas: int
) -> tuple[tuple[MarketEvent, ...], tuple[dt.date, ...]]:
    """`[[events]]` entries are added to the base's (the published calendar); an entry equal
    to one already there is kept once. `cancel_events` dates drop every event on that date."""
    entries = data.get("events", [])
    if not isinstance(entries, list):
        raise PolicyError("events", f"must be a list of tables, got {entries!r}")
    events = list(base.events)
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise PolicyError(f"events[{index}]", f"must be a table, got {entry!r}")
        event = _build(MarketEvent, None, entry, f"events[{index}]")
        check_event(event, hours, max_replicas, f"events[{index}]")
        if event not in events:
            events.append(event)
    dates = data.get("cancel_events", [])
    if not isinstance(dates, list):
        raise PolicyError("cancel_events", f"must be a list of YYYY-MM-DD dates, got {dates!r}")
    cancelled = list(base.cancelled_event_dates)
    for index, value in enumerate(dates):
        date = _parse_date(f"cancel_events[{index}]", value)
        if date not in cancelled:
            cancelled.append(date)
    return tuple(events), tuple(sorted(cancelled))


def _slo(data: Mapping[str, Any], base: Slo) -> Slo:
    """The `[slo]` section; `[[slo.tenants]]` entries, when given, replace the base's list."""
    values = dict(data.get("slo", {}))
    entries = values.get("tenants")
    if entries is None:
        values["tenants"] = base.tenants
    elif not isinstance(entries, list):
        raise PolicyError("slo.tenants", f"must be a list of tables, got {entries!r}")
    else:
        tenants = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise PolicyError(f"slo.tenants[{index}]", f"must be a table, got {entry!r}")
            tenants.append(_build(TenantSlo, None, entry, f"slo.tenants[{index}]"))
        values["tenants"] = tuple(tenants)
    return _build(Slo, base, values, "slo")


def load_policy(path: Path, base: FleetPolicy) -> FleetPolicy:
    """A policy proposal from a TOML file, layered over `base` (normally the deployed one)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise PolicyError(str(path), f"cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(str(path), f"not valid TOML: {error}") from None
    return policy_from_mapping(data, base)


def policy_as_mapping(policy: FleetPolicy) -> dict[str, Any]:
    """A JSON-ready view of the policy (times as HH:MM, dates as ISO)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dt.time):
            return value.strftime("%H:%M")
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {
        "default": plain(dataclasses.asdict(policy.default)),
        "market_hours": plain(dataclasses.asdict(policy.market_hours)),
        "schedule": plain(dataclasses.asdict(policy.schedule)),
        "special_days": plain([dataclasses.asdict(d) for d in policy.special_days]),
        "queue": plain(dataclasses.asdict(policy.queue)),
        "slo": plain(dataclasses.asdict(policy.slo)),
        "events": plain([dataclasses.asdict(e) for e in policy.events]),
        "cancel_events": plain(list(policy.cancelled_event_dates)),
    }
