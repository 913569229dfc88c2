"""The autoscaling policy as typed, validated data: the project's single source of truth."""

from infra.policy.config import DEFAULT, FLEET_POLICY, MARKET_HOURS, SCHEDULE
from infra.policy.decision import DecisionState, Direction, Observation, decide
from infra.policy.errors import PolicyError
from infra.policy.events import MarketEvent, event_data_warning
from infra.policy.fleet import FleetPolicy
from infra.policy.market_hours import MarketHours, SpecialDay
from infra.policy.scaling import ScalingConfig, coupling_warnings
from infra.policy.schedule import CapacityChange, effective_schedule, minimum_at

__all__ = [
    "DEFAULT",
    "FLEET_POLICY",
    "MARKET_HOURS",
    "SCHEDULE",
    "CapacityChange",
    "DecisionState",
    "Direction",
    "FleetPolicy",
    "MarketEvent",
    "MarketHours",
    "Observation",
    "PolicyError",
    "ScalingConfig",
    "SpecialDay",
    "coupling_warnings",
    "decide",
    "effective_schedule",
    "event_data_warning",
    "minimum_at",
]
