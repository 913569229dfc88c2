"""The fleet policy: the ADR's two scaling configs plus when each applies."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from infra.policy.calendar import trading_day
from infra.policy.errors import PolicyError
from infra.policy.events import MarketEvent
from infra.policy.market_hours import MarketHours, SpecialDay
from infra.policy.queue import GatewayQueue
from infra.policy.scaling import ScalingConfig, coupling_warnings
from infra.policy.slo import Slo


def check_event(
    event: MarketEvent, hours: MarketHours, max_replicas: int | None, where: str
) -> None:
    """What an event cannot know alone: the fleet's maximum and the exchange's closed days.

    `max_replicas` None skips the maximum: a policy file's entries are checked against it
    (loader), while an environment with a smaller maximum than the published events' minimum
    (a one-instance dev fleet) keeps them, capped at its maximum by the schedule."""
    if max_replicas is not None and event.min_replicas > max_replicas:
        raise PolicyError(
            f"{where}.min_replicas",
            f"must be between 1 and max_replicas ({max_replicas}), got {event.min_replicas}",
        )
    day = trading_day(hours.exchange, event.date)
    if day.is_holiday or event.date.weekday() not in hours.weekdays:
        closed = day.name or event.date.strftime("%A")
        raise PolicyError(
            f"{where}.date",
            f"{event.date} ({event.name}) is a closed day on {hours.exchange} ({closed}); "
            "events must fall on trading days",
        )


@dataclass(frozen=True)
class FleetPolicy:
    """Everything the stack, the calendar Lambda, the simulator and the KEDA export read.

    `default` applies outside market hours, `market_hours` inside the window; the two may
    differ only in `min_replicas` because one set of alarms and step policies serves both
    (a scheduled action can change an Auto Scaling group's minimum, not its alarms).
    """

    default: ScalingConfig
    market_hours: ScalingConfig
    schedule: MarketHours
    special_days: tuple[SpecialDay, ...] = ()
    # The gateway's queue on each instance (what runs, what waits, for how long).
    queue: GatewayQueue = field(default_factory=GatewayQueue)
    # The service-level objective every request is judged against (targets, objective,
    # per-tenant targets and alarms).
    slo: Slo = field(default_factory=Slo)
    # Scheduled market events (published and users' own) and the dates on which their
    # pre-warms are cancelled (`cancel_events` in a policy file).
    events: tuple[MarketEvent, ...] = ()
    cancelled_event_dates: tuple[dt.date, ...] = ()
    # Pre-warm windows learned from past demand (infra/policy/profile.py); set by the
    # calendar function and the simulator, never in a policy file.
    learned: tuple[MarketEvent, ...] = ()

    def __post_init__(self) -> None:
        shared = (
            "max_replicas",
            "target_ongoing_requests",
            "upscale_delay_s",
            "downscale_delay_s",
            "upscale_factor",
            "downscale_factor",
            "metric_period_s",
        )
        for name in shared:
            market_value = getattr(self.market_hours, name)
            default_value = getattr(self.default, name)
            if market_value != default_value:
                raise PolicyError(
                    f"market_hours.{name}",
                    f"must equal default.{name} ({default_value}); only min_replicas may "
                    f"differ between the two configs, got {market_value}",
                )
        if self.market_hours.min_replicas < self.default.min_replicas:
            raise PolicyError(
                "market_hours.min_replicas",
                f"must be >= default.min_replicas ({self.default.min_replicas}), "
                f"got {self.market_hours.min_replicas}",
            )
        for index, day in enumerate(self.special_days):
            if day.min_replicas > self.default.max_replicas:
                raise PolicyError(
                    f"special_days[{index}].min_replicas",
                    f"must be <= max_replicas ({self.default.max_replicas}), "
                    f"got {day.min_replicas}",
                )
            for other in self.special_days[:index]:
                if other.date == day.date and other.start < day.end and day.start < other.end:
                    raise PolicyError(
                        f"special_days[{index}]",
                        f"window {day.start:%H:%M}-{day.end:%H:%M} on {day.date} overlaps "
                        f"{other.start:%H:%M}-{other.end:%H:%M} ({other.reason})",
                    )

        for index, event in enumerate(self.events):
            check_event(event, self.schedule, None, f"events[{index}]")

    @property
    def active_events(self) -> tuple[MarketEvent, ...]:
        """The events whose pre-warm applies (not on a cancelled date)."""
        cancelled = set(self.cancelled_event_dates)
        return tuple(e for e in self.events if e.date not in cancelled)

    @property
    def max_replicas(self) -> int:
        return self.default.max_replicas

    def warnings(self) -> list[str]:
        return coupling_warnings(self.default)
