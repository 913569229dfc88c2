"""The market-hours window, its time zone and pre-warm lead, and one-off special days."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from infra.policy.errors import PolicyError

# Pre-warm lead: the worst case between the scheduled action's nominal time and a second
# replica passing its health checks, with margin:
#   scheduled actions may start up to 120 s late (EC2 Auto Scaling docs)
# + g5 launch and boot with the NVIDIA driver up          ~120 s
# + model load, the ADR's upper figure                     90 s
# + ALB health checks to healthy (2 x 15 s interval)        30 s
#   = 360 s; x1.5 for EBS lazy-load and AZ capacity retries = 540 s -> 600 s (08:50 ET).
DEFAULT_PREWARM_LEAD_S = 600

EXCHANGES = ("NYSE",)


@dataclass(frozen=True)
class MarketHours:
    """When the market-hours minimum applies: local window, weekdays, exchange calendar."""

    time_zone: str = "America/New_York"
    open_time: dt.time = dt.time(9, 0)
    close_time: dt.time = dt.time(16, 0)
    early_close_time: dt.time = dt.time(13, 0)
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday=0, as datetime.weekday()
    prewarm_lead_s: int = DEFAULT_PREWARM_LEAD_S
    exchange: str = "NYSE"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PolicyError("time_zone", f"unknown IANA time zone {self.time_zone!r}") from None
        if self.close_time <= self.open_time:
            raise PolicyError(
                "close_time",
                f"must be after open_time ({self.open_time:%H:%M}), got {self.close_time:%H:%M}",
            )
        if not self.open_time < self.early_close_time <= self.close_time:
            raise PolicyError(
                "early_close_time",
                f"must be after open_time ({self.open_time:%H:%M}) and not after close_time "
                f"({self.close_time:%H:%M}), got {self.early_close_time:%H:%M}",
            )
        if not self.weekdays or any(d not in range(7) for d in self.weekdays):
            raise PolicyError(
                "weekdays", f"must be a non-empty list of 0 (Mon) .. 6 (Sun), got {self.weekdays}"
            )
        if not 0 <= self.prewarm_lead_s <= 3 * 3600:
            raise PolicyError(
                "prewarm_lead_s", f"must be between 0 and 10800, got {self.prewarm_lead_s}"
            )
        opens_at = dt.datetime.combine(dt.date(2000, 1, 1), self.open_time)
        if (opens_at - dt.timedelta(seconds=self.prewarm_lead_s)).date() != opens_at.date():
            raise PolicyError("prewarm_lead_s", "must not move the pre-warm before local midnight")
        if self.exchange not in EXCHANGES:
            raise PolicyError("exchange", f"must be one of {EXCHANGES}, got {self.exchange!r}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def prewarm_time(self) -> dt.time:
        """Local time the market-hours minimum starts (open minus the pre-warm lead)."""
        opens_at = dt.datetime.combine(dt.date(2000, 1, 1), self.open_time)
        return (opens_at - dt.timedelta(seconds=self.prewarm_lead_s)).time()


@dataclass(frozen=True)
class SpecialDay:
    """A one-off day on which the business wants more warm capacity (rebalancing, earnings)."""

    date: dt.date
    start: dt.time
    end: dt.time
    min_replicas: int
    reason: str

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise PolicyError(
                "end", f"must be after start ({self.start:%H:%M}), got {self.end:%H:%M}"
            )
        if isinstance(self.min_replicas, bool) or not isinstance(self.min_replicas, int):
            raise PolicyError("min_replicas", f"must be a whole number, got {self.min_replicas!r}")
        if self.min_replicas < 1:
            raise PolicyError("min_replicas", f"must be >= 1, got {self.min_replicas}")
        if not self.reason.strip():
            raise PolicyError("reason", "must say why the day is special")
