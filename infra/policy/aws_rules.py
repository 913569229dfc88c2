"""The fleet policy compiled into AWS scaling rules, and a pure replay of how AWS runs them.

`compile_scaling_rules(policy)` turns the Ray Serve-style policy into what the stack
provisions: a high-resolution CloudWatch alarm per direction on the Average of
`OngoingRequests` per instance, each driving an EC2 Auto Scaling step policy whose
`PercentChangeInCapacity` bands reproduce Ray's smoothed step

    desired = ceil(current * (1 + factor * (m / target - 1)))      m = requests per instance

`replay_step(...)` evaluates those same rules one metric period at a time, the way
CloudWatch and EC2 Auto Scaling do, so tests (and the fleet simulator) can compare the
deployed behaviour with `infra.policy.decide()` on the same load without any cloud.

Stable API: `compile_scaling_rules`, `ScalingRules`, `AlarmRule`, `StepPolicyRule`,
`StepAdjustment`, `ReplayState`, `replay_step`, and the metric-name and namespace constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

# The gateway's metric contract, shared with the gateway through `contract` and re-exported
# here: each gateway publishes both metrics per instance every metric period with the
# group's dimension, so the Average across instances is load per instance.
from contract import DEMAND_METRIC as DEMAND_METRIC
from contract import GROUP_DIMENSION as GROUP_DIMENSION
from contract import METRICS_NAMESPACE as METRICS_NAMESPACE
from contract import QUEUE_DEPTH_METRIC as QUEUE_DEPTH_METRIC
from infra.policy import cold_start
from infra.policy.errors import PolicyError
from infra.policy.fleet import FleetPolicy

# CloudWatch repeats an EC2 Auto Scaling alarm action once per minute while the alarm
# stays in ALARM (every other action fires on the state change only).
AUTOSCALING_ACTION_REPEAT_S = 60

# EC2 Auto Scaling accepts at most this many step adjustments in one policy.
MAX_STEP_ADJUSTMENTS = 20

# Ray's band is (a, b] above the threshold where AWS's is [a, b): bounds sit this far above
# Ray's edges so that a whole-number average on an edge lands in Ray's band.
EDGE_NUDGE = 0.001

# The heartbeat alarm looks at one-minute sample counts: three silent minutes mean every
# gateway stopped publishing (a healthy idle gateway still publishes zeros every 10 s).
HEARTBEAT_PERIOD_S = 60
HEARTBEAT_EVALUATION_PERIODS = 3


class Comparison(StrEnum):
    GREATER_THAN = "GreaterThanThreshold"
    LESS_THAN_OR_EQUAL = "LessThanOrEqualToThreshold"
    LESS_THAN = "LessThanThreshold"


class MissingData(StrEnum):
    NOT_BREACHING = "notBreaching"
    BREACHING = "breaching"


class AdjustmentType(StrEnum):
    PERCENT_CHANGE = "PercentChangeInCapacity"


@dataclass(frozen=True)
class AlarmRule:
    """One CloudWatch metric alarm, in the vocabulary of PutMetricAlarm."""

    metric_name: str
    statistic: str
    period_s: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: Comparison
    treat_missing_data: MissingData

    @property
    def window_s(self) -> int:
        return self.period_s * self.evaluation_periods

    def breaches(self, value: float | None) -> bool:
        if value is None:
            return self.treat_missing_data is MissingData.BREACHING
        if self.comparison is Comparison.GREATER_THAN:
            return value > self.threshold
        if self.comparison is Comparison.LESS_THAN_OR_EQUAL:
            return value <= self.threshold
        return value < self.threshold

    def in_alarm(self, datapoints: tuple[float | None, ...]) -> bool:
        """ALARM when `datapoints_to_alarm` of the last `evaluation_periods` breach."""
        window = datapoints[-self.evaluation_periods :]
        return sum(self.breaches(value) for value in window) >= self.datapoints_to_alarm


@dataclass(frozen=True)
class StepAdjustment:
    """A band of (metric - threshold) and the percentage of capacity it adds or removes.

    AWS semantics: above the threshold the lower bound is inclusive and the upper bound
    exclusive; below it the lower bound is exclusive and the upper inclusive. None means
    unbounded.
    """

    lower_bound: float | None
    upper_bound: float | None
    scaling_adjustment: int

    def contains(self, delta: float, above_threshold: bool) -> bool:
        lower = -math.inf if self.lower_bound is None else self.lower_bound
        upper = math.inf if self.upper_bound is None else self.upper_bound
        if above_threshold:
            return lower <= delta < upper
        return lower < delta <= upper


@dataclass(frozen=True)
class StepPolicyRule:
    """One EC2 Auto Scaling step scaling policy."""

    adjustment_type: AdjustmentType
    min_adjustment_magnitude: int
    metric_aggregation_type: str
    estimated_instance_warmup_s: int
    steps: tuple[StepAdjustment, ...]

    def adjustment(self, metric: float, threshold: float, capacity: int) -> int:
        """Instances to add (or remove, negative) at `capacity` for this metric value."""
        delta = metric - threshold
        for step in self.steps:
            if step.contains(delta, self.scales_out):
                return percent_change(
                    capacity, step.scaling_adjustment, self.min_adjustment_magnitude
                )
        return 0

    @property
    def scales_out(self) -> bool:
        """A scale-out policy's bands lie above its alarm's threshold, a scale-in's below."""
        return self.steps[0].scaling_adjustment > 0


@dataclass(frozen=True)
class ScalingRule:
    alarm: AlarmRule
    policy: StepPolicyRule


@dataclass(frozen=True)
class ScalingRules:
    """Everything the stack provisions for scaling, and the replay's input."""

    scale_out: ScalingRule
    scale_in: ScalingRule
    metric_heartbeat: AlarmRule
    min_capacity: int  # outside market hours; the scheduled actions raise it
    market_hours_min_capacity: int
    max_capacity: int


def percent_change(capacity: int, percent: int, min_magnitude: int) -> int:
    """EC2 Auto Scaling's PercentChangeInCapacity arithmetic.

    The raw change is rounded toward zero (a fraction between -1 and 1 becomes -1 or 1),
    and is at least `min_magnitude` instances.
    """
    if percent == 0:
        return 0
    raw = capacity * percent / 100
    magnitude = max(math.floor(abs(raw) + 1e-9), 1, min_magnitude)
    return magnitude if raw > 0 else -magnitude


def ray_adjustment(capacity: int, factor: float, ratio: float) -> int:
    """Ray Serve's smoothed change at `capacity` for m/target = `ratio` (before bounds)."""
    return math.ceil(capacity * factor * (ratio - 1) - 1e-9)


def compile_scaling_rules(
    policy: FleetPolicy, *, instance_warmup_s: int | None = None
) -> ScalingRules:
    """Compile the policy's shared parameters into alarms and step policies."""
    config = policy.default
    target = config.target_ongoing_requests
    maximum = policy.max_replicas
    warmup = cold_start.instance_warmup_s() if instance_warmup_s is None else instance_warmup_s

    # Ray scales out as soon as the smoothed count exceeds the current one, i.e. m > target,
    # and only if that holds for the whole up delay: every datapoint must breach.
    scale_out_alarm = AlarmRule(
        metric_name=DEMAND_METRIC,
        statistic="Average",
        period_s=config.metric_period_s,
        evaluation_periods=config.upscale_evaluation_periods,
        datapoints_to_alarm=config.upscale_evaluation_periods,
        threshold=float(target),
        comparison=Comparison.GREATER_THAN,
        # No data is no evidence of load: a silent fleet must not grow.
        treat_missing_data=MissingData.NOT_BREACHING,
    )
    # Ray's scale-in point depends on the current count (m <= target * (1 - 1/(f*n))); one
    # alarm has one threshold, so it takes the point of the largest fleet. Below that size
    # the group scales in a little earlier than Ray would; that is safe because the
    # survivors then carry at most 2x the threshold, which is <= target (no flapping).
    scale_in_ratio = max(0.0, 1 - 1 / (config.downscale_factor * maximum))
    scale_in_threshold = round(target * scale_in_ratio, 3)
    scale_in_alarm = AlarmRule(
        metric_name=DEMAND_METRIC,
        statistic="Average",
        period_s=config.metric_period_s,
        evaluation_periods=config.downscale_evaluation_periods,
        datapoints_to_alarm=config.downscale_evaluation_periods,
        threshold=scale_in_threshold,
        comparison=Comparison.LESS_THAN_OR_EQUAL,
        # An idle gateway still publishes zeros every 10 s, so real idleness is data and
        # breaches. Missing data means the publisher is broken: scaling in on it would
        # shrink a loaded fleet, so it must not count; the heartbeat alarm pages instead.
        treat_missing_data=MissingData.NOT_BREACHING,
    )
    heartbeat = AlarmRule(
        metric_name=DEMAND_METRIC,
        statistic="SampleCount",
        period_s=HEARTBEAT_PERIOD_S,
        evaluation_periods=HEARTBEAT_EVALUATION_PERIODS,
        datapoints_to_alarm=HEARTBEAT_EVALUATION_PERIODS,
        threshold=1.0,
        comparison=Comparison.LESS_THAN,
        # Here silence is the failure being watched for.
        treat_missing_data=MissingData.BREACHING,
    )
    out_steps = _scale_out_steps(target, config.upscale_factor, maximum)
    in_steps = _scale_in_steps(
        target, scale_in_ratio, scale_in_threshold, config.downscale_factor, maximum
    )
    for steps in (out_steps, in_steps):
        if len(steps) > MAX_STEP_ADJUSTMENTS:
            raise PolicyError(
                "max_replicas",
                f"needs {len(steps)} step adjustments to reproduce the smoothed step with "
                f"smoothing factor {config.upscale_factor:g}/{config.downscale_factor:g}; "
                f"EC2 Auto Scaling allows {MAX_STEP_ADJUSTMENTS}: lower max_replicas ({maximum})",
            )
    return ScalingRules(
        scale_out=ScalingRule(
            scale_out_alarm,
            StepPolicyRule(AdjustmentType.PERCENT_CHANGE, 1, "Average", warmup, out_steps),
        ),
        scale_in=ScalingRule(
            scale_in_alarm,
            StepPolicyRule(AdjustmentType.PERCENT_CHANGE, 1, "Average", warmup, in_steps),
        ),
        metric_heartbeat=heartbeat,
        min_capacity=config.min_replicas,
        market_hours_min_capacity=policy.market_hours.min_replicas,
        max_capacity=maximum,
    )


def _best_percent(
    candidates: range, capacities: range, wanted: dict[int, int], clip: tuple[int, int]
) -> int:
    """The integer percentage reproducing Ray's clipped outcome at the most capacities."""
    low, high = clip

    def score(percent: int) -> int:
        return sum(
            min(max(n + percent_change(n, percent, 1), low), high) == wanted[n] for n in capacities
        )

    return max(candidates, key=lambda p: (score(p), -abs(p)))


def _merge(bands: list[tuple[float | None, float | None, int]]) -> tuple[StepAdjustment, ...]:
    merged: list[StepAdjustment] = []
    for lower, upper, percent in bands:
        if merged and merged[-1].scaling_adjustment == percent:
            merged[-1] = replace(merged[-1], upper_bound=upper)
        else:
            merged.append(StepAdjustment(lower, upper, percent))
    return tuple(merged)


def _scale_out_steps(target: float, factor: float, maximum: int) -> tuple[StepAdjustment, ...]:
    # Ray's change at count n jumps where n*f*(ratio-1) crosses a whole number; between two
    # consecutive such ratios every count wants a fixed change, so one percentage can serve.
    capacities = range(1, maximum)
    edges = sorted(
        {1 + j / (factor * n) for n in capacities for j in range(1, maximum - n + 1)} | {1.0}
    )
    bands: list[tuple[float | None, float | None, int]] = []
    for index, lower in enumerate(edges):
        upper = edges[index + 1] if index + 1 < len(edges) else None
        probe = (lower + upper) / 2 if upper is not None else lower + 1
        wanted = {n: min(n + ray_adjustment(n, factor, probe), maximum) for n in capacities}
        percent = _best_percent(range(1, 100 * maximum + 1), capacities, wanted, (1, maximum))
        bands.append(
            (
                0.0 if lower == 1 else round((lower - 1) * target + EDGE_NUDGE, 3),
                None if upper is None else round((upper - 1) * target + EDGE_NUDGE, 3),
                percent,
            )
        )
    return _merge(bands)


def _scale_in_steps(
    target: float, ratio: float, threshold: float, factor: float, maximum: int
) -> tuple[StepAdjustment, ...]:
    capacities = range(2, maximum + 1)
    inner = {
        1 - j / (factor * n)
        for n in capacities
        for j in range(1, n)
        if 0 <= 1 - j / (factor * n) < ratio
    }
    edges = sorted(inner | {ratio})
    bands: list[tuple[float | None, float | None, int]] = []
    previous: float | None = None
    for upper in edges:
        # Below the threshold a band is (lower, upper]: the first one ends at its edge.
        probe = upper if previous is None else (previous + upper) / 2
        wanted = {n: max(n + ray_adjustment(n, factor, max(probe, 0.0)), 1) for n in capacities}
        percent = _best_percent(range(-1, -101, -1), capacities, wanted, (1, maximum))
        bands.append(
            (
                None if previous is None else round(previous * target - threshold, 3),
                round(upper * target - threshold, 3),
                percent,
            )
        )
        previous = upper
    return _merge(bands)


@dataclass(frozen=True)
class ReplayState:
    """What CloudWatch and the Auto Scaling group remember between metric periods."""

    datapoints: tuple[float | None, ...] = ()
    scale_out_next_action_s: float | None = None  # None: the alarm is not in ALARM
    scale_in_next_action_s: float | None = None
    warming: tuple[tuple[float, int], ...] = field(default=())  # (warm at, instances)


def replay_step(
    rules: ScalingRules,
    state: ReplayState,
    at_s: float,
    ongoing_requests_per_instance: float | None,
    desired: int,
    min_capacity: int | None = None,
) -> tuple[int, ReplayState]:
    """Feed one metric period's datapoint; return the new desired capacity and state.

    Call once per `rules.scale_out.alarm.period_s`, with the Average of OngoingRequests
    per instance over that period (None if nothing was published), the group's current
    desired capacity and the minimum in force (the schedule's; default `min_capacity`).

    Modelled AWS behaviour:
    - each alarm is evaluated on its last `evaluation_periods` datapoints;
    - on entering ALARM the step policy runs at once, then again every 60 s while the
      alarm stays in ALARM (CloudWatch's repeat for Auto Scaling actions);
    - a scale-out counts instances still within `estimated_instance_warmup_s` as already
      added: the step is computed on the warm capacity and only the excess is launched;
    - the group clamps the result to [min, max].
    """
    lower = rules.min_capacity if min_capacity is None else min_capacity
    upper = rules.max_capacity
    desired = min(max(desired, lower), upper)
    window = max(rules.scale_out.alarm.evaluation_periods, rules.scale_in.alarm.evaluation_periods)
    datapoints = (*state.datapoints, ongoing_requests_per_instance)[-window:]
    warming = tuple((ready, count) for ready, count in state.warming if ready > at_s)
    metric = ongoing_requests_per_instance

    out_next = _next_action(rules.scale_out.alarm, datapoints, state.scale_out_next_action_s, at_s)
    in_next = _next_action(rules.scale_in.alarm, datapoints, state.scale_in_next_action_s, at_s)

    if out_next is not None and out_next <= at_s and metric is not None:
        out_next = at_s + AUTOSCALING_ACTION_REPEAT_S
        warm = desired - sum(count for _, count in warming)
        step = rules.scale_out.policy.adjustment(metric, rules.scale_out.alarm.threshold, warm)
        wanted = min(max(warm + step, lower), upper)
        if wanted > desired:
            warmup = rules.scale_out.policy.estimated_instance_warmup_s
            warming = (*warming, (at_s + warmup, wanted - desired))
            desired = wanted
    elif in_next is not None and in_next <= at_s and metric is not None:
        in_next = at_s + AUTOSCALING_ACTION_REPEAT_S
        step = rules.scale_in.policy.adjustment(metric, rules.scale_in.alarm.threshold, desired)
        desired = min(max(desired + step, lower), upper)
    return desired, ReplayState(datapoints, out_next, in_next, warming)


def _next_action(
    alarm: AlarmRule,
    datapoints: tuple[float | None, ...],
    scheduled: float | None,
    at_s: float,
) -> float | None:
    if len(datapoints) < alarm.evaluation_periods or not alarm.in_alarm(datapoints):
        return None
    return at_s if scheduled is None else scheduled
