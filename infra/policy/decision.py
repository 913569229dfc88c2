"""The scaling decision, in the style of Ray Serve's default autoscaling policy.

    raw     = total_ongoing_requests / target_ongoing_requests
    desired = ceil(current + factor * (raw - current)), clipped to [active min, max]

A decision in one direction must hold for the whole up (or down) delay; any tick that
wants no change, or the opposite change, restarts the wait. The active minimum comes from
the market-hours schedule and is applied at once (a scheduled action is not debounced).
Pure: state goes in and comes out; the simulator and the tests drive it on a fake clock.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from enum import StrEnum

from infra.policy.fleet import FleetPolicy
from infra.policy.schedule import minimum_at


class Direction(StrEnum):
    NONE = "none"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class Observation:
    """What the controller sees at one tick."""

    total_ongoing_requests: float  # across the fleet, averaged over the look-back window
    current_replicas: int  # the current desired capacity


@dataclass(frozen=True)
class DecisionState:
    """The pending direction and since when it has been wanted without interruption."""

    direction: Direction = Direction.NONE
    since: dt.datetime | None = None


def smoothed_target(policy: FleetPolicy, total_ongoing: float, current: int) -> int:
    """Ray Serve's smoothed replica count, before bounds and delays."""
    config = policy.default
    raw = total_ongoing / config.target_ongoing_requests
    factor = config.upscale_factor if raw > current else config.downscale_factor
    return math.ceil(current + factor * (raw - current))


def decide(
    policy: FleetPolicy, observation: Observation, state: DecisionState, now: dt.datetime
) -> tuple[int, DecisionState]:
    """Return the desired replica count at `now` and the state for the next tick."""
    current = observation.current_replicas
    lower = minimum_at(policy, now)
    upper = policy.max_replicas
    if current < lower or current > upper:
        # The schedule (or a lowered max) overrides the controller without delay.
        return min(max(current, lower), upper), DecisionState()

    wanted = smoothed_target(policy, observation.total_ongoing_requests, current)
    wanted = min(max(wanted, lower), upper)
    if wanted == current:
        return current, DecisionState()

    direction = Direction.UP if wanted > current else Direction.DOWN
    since = state.since if state.direction == direction and state.since is not None else now
    state = DecisionState(direction, since)
    delay_s = (
        policy.default.upscale_delay_s
        if direction is Direction.UP
        else policy.default.downscale_delay_s
    )
    if (now - since).total_seconds() >= delay_s:
        return wanted, DecisionState()
    return current, state
