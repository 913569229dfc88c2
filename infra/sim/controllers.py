"""The controllers a simulated fleet can run, behind one small interface.

Each sees, every control tick, the per-instance ongoing requests averaged over the last
metric period and the group's desired capacity, and answers with a new desired capacity.
`quiet_until` lets the engine skip idle stretches: it returns the instant up to which
ticks with no load would change nothing (or `now_s` when the controller is still busy).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from infra.policy import DecisionState, Direction, FleetPolicy, Observation, decide
from infra.policy.aws_rules import ReplayState, compile_scaling_rules, replay_step
from infra.sim.aws import ScheduledMinimum

UTC = dt.UTC


@dataclass(frozen=True)
class FleetView:
    """What a controller observes at one tick."""

    now_s: float
    # Each serving instance's published Demand (running + queued at its gateway), mean
    # over the period; the name predates the queue (it is what Ray calls ongoing requests).
    ongoing_per_instance: Sequence[float]
    desired: int  # the group's current desired capacity (pending instances included)
    # Each serving instance's QueueDepth for the period (queued at the gateway plus waiting
    # in vLLM), in the same order (empty when a caller models no queue).
    queue_per_instance: Sequence[float] = ()


class Controller(Protocol):
    name: str

    def initial(self, start_s: float) -> int:
        """Instances in service when the simulation starts."""
        ...

    def desired(self, view: FleetView) -> int: ...

    def quiet_until(self, now_s: float, desired: int) -> float: ...


class Static:
    """A fixed number of instances: the baseline every autoscaler must beat on cost."""

    def __init__(self, replicas: int) -> None:
        self.name = f"static-{replicas}"
        self.replicas = replicas

    def initial(self, start_s: float) -> int:
        return self.replicas

    def desired(self, view: FleetView) -> int:
        return self.replicas

    def quiet_until(self, now_s: float, desired: int) -> float:
        return math.inf


class RayServe:
    """The ADR's Ray Serve semantics: `decide()` on the look-back average of ongoing requests.

    Ray replicas push metrics every 10 s and the controller averages a 30 s look-back; it
    ticks every 0.1 s, here every metric period (delays are multiples of it, so a decision
    lands at most one period late). The market-hours minimum switches exactly on time.
    """

    LOOK_BACK_S = 30.0

    def __init__(self, policy: FleetPolicy, schedule: ScheduledMinimum, period_s: float) -> None:
        self.name = "ray-serve"
        self.policy = policy
        self.schedule = schedule
        self.samples: deque[float] = deque(maxlen=max(1, int(self.LOOK_BACK_S // period_s)))
        self.state = DecisionState()

    def initial(self, start_s: float) -> int:
        return self.schedule.at(start_s)

    def desired(self, view: FleetView) -> int:
        self.samples.append(sum(view.ongoing_per_instance))
        load = sum(self.samples) / len(self.samples)
        now = dt.datetime.fromtimestamp(view.now_s, UTC)
        wanted, self.state = decide(self.policy, Observation(load, view.desired), self.state, now)
        return wanted

    def quiet_until(self, now_s: float, desired: int) -> float:
        idle = self.state.direction is Direction.NONE and not any(self.samples)
        if idle and desired == self.schedule.at(now_s):
            return self.schedule.next_change_s(now_s)
        return now_s


class ProposedOnAws:
    """The policy as deployed on AWS: its compiled alarms and step policies
    (`infra.policy.aws_rules`), evaluated on each 10 s datapoint of the Averages of Demand
    and QueueDepth per in-service instance, with the group's minimum set by scheduled
    actions that fire up to 2 minutes late."""

    def __init__(
        self, policy: FleetPolicy, schedule: ScheduledMinimum, name: str = "policy-aws"
    ) -> None:
        self.name = name
        self.rules = compile_scaling_rules(policy)
        self.schedule = schedule
        self.state = ReplayState()

    def initial(self, start_s: float) -> int:
        return self.schedule.at(start_s)

    def desired(self, view: FleetView) -> int:
        # No in-service instance publishes nothing: CloudWatch then has no datapoint.
        wanted, self.state = replay_step(
            self.rules,
            self.state,
            view.now_s,
            _average(view.ongoing_per_instance),
            view.desired,
            min_capacity=self.schedule.at(view.now_s),
            queue_depth_per_instance=_average(view.queue_per_instance),
        )
        return wanted

    def quiet_until(self, now_s: float, desired: int) -> float:
        # With only zeros in the alarm windows the rules can merely shrink the group, and
        # it is already at its minimum: nothing happens until the schedule changes.
        idle = (
            not any(self.state.datapoints)
            and not any(self.state.queue_datapoints)
            and not self.state.warming
        )
        if idle and desired == self.schedule.at(now_s):
            return self.schedule.next_change_s(now_s)
        return now_s


def _average(samples: Sequence[float]) -> float | None:
    """CloudWatch's Average across the instances that published; none: no datapoint."""
    return sum(samples) / len(samples) if samples else None


class TargetTracking:
    """EC2 target tracking on ongoing requests per instance, with its fixed managed alarms.

    One-minute datapoints; scale out when 3 of 3 exceed the target, to the capacity that
    brings the metric back to target; scale in when 15 of 15 are below 90% of it, with
    the default 300 s scale-in cooldown. New instances count once in service (warm-up).
    """

    OUT_DATAPOINTS = 3
    IN_DATAPOINTS = 15
    IN_THRESHOLD = 0.9
    SCALE_IN_COOLDOWN_S = 300.0
    MINUTE_S = 60.0

    def __init__(self, policy: FleetPolicy, schedule: ScheduledMinimum, period_s: float) -> None:
        self.name = "target-tracking"
        self.target = policy.default.target_ongoing_requests
        self.maximum = policy.max_replicas
        self.schedule = schedule
        self.ticks_per_minute = max(1, int(self.MINUTE_S // period_s))
        self.minute_per_instance: list[float] = []
        self.minute_total: list[float] = []
        self.datapoints: deque[tuple[float, float]] = deque(maxlen=self.IN_DATAPOINTS)
        self.last_scale_in_s = -math.inf

    def initial(self, start_s: float) -> int:
        return self.schedule.at(start_s)

    def desired(self, view: FleetView) -> int:
        floor = self.schedule.at(view.now_s)
        desired = min(max(view.desired, floor), self.maximum)
        if view.ongoing_per_instance:
            total = sum(view.ongoing_per_instance)
            self.minute_per_instance.append(total / len(view.ongoing_per_instance))
            self.minute_total.append(total)
        if len(self.minute_per_instance) < self.ticks_per_minute:
            return desired
        per_instance = sum(self.minute_per_instance) / len(self.minute_per_instance)
        total = sum(self.minute_total) / len(self.minute_total)
        self.minute_per_instance.clear()
        self.minute_total.clear()
        self.datapoints.append((per_instance, total))
        needed = min(max(math.ceil(total / self.target), floor), self.maximum)
        recent = list(self.datapoints)
        high = recent[-self.OUT_DATAPOINTS :]
        if len(high) == self.OUT_DATAPOINTS and all(p > self.target for p, _ in high):
            return max(desired, needed)
        cooled = view.now_s - self.last_scale_in_s >= self.SCALE_IN_COOLDOWN_S
        low = len(recent) == self.IN_DATAPOINTS and all(
            p < self.IN_THRESHOLD * self.target for p, _ in recent
        )
        if low and cooled and needed < desired:
            self.last_scale_in_s = view.now_s
            return needed
        return desired

    def quiet_until(self, now_s: float, desired: int) -> float:
        # Idle: no load in the alarm's datapoints and no minute half-filled.
        idle = not any(p for p, _ in self.datapoints) and not self.minute_per_instance
        if idle and desired == self.schedule.at(now_s):
            return self.schedule.next_change_s(now_s)
        return now_s


class Clairvoyant:
    """Follows a plan made knowing the traffic: the instances each window needs, launched
    `lead_s` ahead (the worst boot) so that they serve from the window's start."""

    def __init__(self, window_starts_s: Sequence[float], needed: Sequence[int], lead_s: float):
        self.name = "clairvoyant"
        self.starts = list(window_starts_s)
        self.needed = list(needed)
        self.lead_s = lead_s

    def initial(self, start_s: float) -> int:
        return self.desired_at(start_s)

    def desired_at(self, now_s: float) -> int:
        first = bisect.bisect_right(self.starts, now_s) - 1
        last = bisect.bisect_right(self.starts, now_s + self.lead_s) - 1
        return max(self.needed[max(first, 0) : max(last, 0) + 1])

    def desired(self, view: FleetView) -> int:
        return self.desired_at(view.now_s)

    def quiet_until(self, now_s: float, desired: int) -> float:
        index = bisect.bisect_right(self.starts, now_s + self.lead_s)
        return self.starts[index] - self.lead_s if index < len(self.starts) else math.inf
