"""The deployed policy: the ADR's DEFAULT and MARKET_HOURS configs and the NYSE window.

Edit here (one reviewed diff), then run `fleet check` to replay trading days against it.
"""

from __future__ import annotations

from infra.policy.event_data import PUBLISHED_EVENTS
from infra.policy.fleet import FleetPolicy
from infra.policy.market_hours import MarketHours, SpecialDay
from infra.policy.scaling import ScalingConfig

DEFAULT = ScalingConfig(
    min_replicas=1,
    max_replicas=4,
    target_ongoing_requests=10,
    upscale_delay_s=30,  # debounce against burst-induced flapping
    downscale_delay_s=300,  # 5 min idle before scale-in (preserve warmth)
    smoothing_factor=0.5,  # dampens oscillation
    metric_period_s=10,  # high-resolution CloudWatch metric, as the gateway publishes
)

# Always-on minimum of 2 in market hours: a cold replica needs 30-90 s of model load.
MARKET_HOURS = ScalingConfig(
    min_replicas=2,
    max_replicas=DEFAULT.max_replicas,
    target_ongoing_requests=DEFAULT.target_ongoing_requests,
    upscale_delay_s=DEFAULT.upscale_delay_s,
    downscale_delay_s=DEFAULT.downscale_delay_s,
    smoothing_factor=DEFAULT.smoothing_factor,
    metric_period_s=DEFAULT.metric_period_s,
)

SCHEDULE = MarketHours()

# One-off days with extra warm capacity (index rebalancing, earnings peaks).
SPECIAL_DAYS: tuple[SpecialDay, ...] = ()

FLEET_POLICY = FleetPolicy(
    default=DEFAULT,
    market_hours=MARKET_HOURS,
    schedule=SCHEDULE,
    special_days=SPECIAL_DAYS,
    # FOMC statement afternoons from the Federal Reserve's published schedule (event_data.py).
    events=PUBLISHED_EVENTS,
)
