"""The fleet policy compiled into AWS scaling rules, and a pure replay of how AWS runs them.

`compile_scaling_rules(policy)` turns the Ray Serve-style policy into what the stack
provisions: a high-resolution CloudWatch alarm per direction on the Average of `Demand`
(sequences running plus queued at the gateway) per instance, each driving an EC2 Auto
Scaling step policy whose `PercentChangeInCapacity` bands reproduce Ray's smoothed step

    desired = ceil(current * (1 + factor * (m / target - 1)))      m = demand per instance

A third high-resolution alarm watches the Average of `QueueDepth` per instance (sequences
waiting at the gateway and in vLLM): a sustained queue means the demand steps were not
enough, and its step policy adds the capacity that would run the queue. A paging alarm
(`SaturationAlarm`) fires when the group is at its maximum and the queue stays up.

`replay_step(...)` evaluates the scaling rules one metric period at a time, the way
CloudWatch and EC2 Auto Scaling do, so tests (and the fleet simulator) can compare the
deployed behaviour with `infra.policy.decide()` on the same load without any cloud.

Stable API: `compile_scaling_rules`, `ScalingRules`, `AlarmRule`, `StepPolicyRule`,
`StepAdjustment`, `SaturationAlarm`, `ReplayState`, `replay_step`, and the metric-name and
namespace constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

# The gateway's metric contract, shared with the gateway through `contract` and re-exported
# here: each ready gateway publishes its metrics per instance every metric period with the
# group's dimension, so the Average across instances is demand (or queue) per instance.
from contract import DEMAND_METRIC as DEMAND_METRIC
from contract import GROUP_DIMENSION as GROUP_DIMENSION
from contract import METRICS_NAMESPACE as METRICS_NAMESPACE
from contract import QUEUE_DEPTH_METRIC as QUEUE_DEPTH_METRIC
from infra.policy import cold_start
from infra.policy.errors import PolicyError
from infra.policy.fleet import FleetPolicy
from infra.policy.queue import GatewayQueue

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

# EC2 Auto Scaling publishes group metrics (GroupInServiceInstances, ...) once a minute
# ("1Minute" is the only granularity EnableMetricsCollection accepts), so an alarm reading
# them has a 60 s period.
GROUP_METRICS_NAMESPACE = "AWS/AutoScaling"
GROUP_METRICS_PERIOD_S = 60
IN_SERVICE_METRIC = "GroupInServiceInstances"
# The saturation page: at the maximum in service with a queue for this many minutes in a
# row. In service at the maximum means every instance the group may run already serves, so
# no launch is on its way; five minutes (ten times the longest a request waits,
# `max_queue_wait_s`) tells a lasting overload from a burst the queues absorb.
SATURATION_MINUTES = 5
# A metric-math alarm may read at most 10 metrics (a hard CloudWatch limit).
MAX_ALARM_METRICS = 10


class Comparison(StrEnum):
    GREATER_THAN = "GreaterThanThreshold"
    GREATER_THAN_OR_EQUAL = "GreaterThanOrEqualToThreshold"
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
        if self.comparison is Comparison.GREATER_THAN_OR_EQUAL:
            return value >= self.threshold
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
class SaturationAlarm:
    """The page for a fleet that cannot grow: in service at its maximum with a queue.

    A metric-math alarm over two one-minute series: the group's `GroupInServiceInstances`
    (Minimum: at the maximum for the whole minute) and `QueueDepth` per instance (Average).
    The expression is 1 in a minute where both hold, else 0; the alarm fires when every one
    of `evaluation_periods` minutes is 1. CloudWatch treats a value missing from one series
    of a comparison as 0, so a silent queue metric or a group without data reads as "not
    saturated"; a minute with neither series has no datapoint and does not breach.
    """

    in_service_metric: str
    in_service_statistic: str
    queue_metric: str
    queue_statistic: str
    period_s: int
    evaluation_periods: int
    max_capacity: int
    queue_threshold: float

    @property
    def expression(self) -> str:
        """The alarm's metric-math expression over the ids `inservice` and `queue`.

        Only functions CloudWatch allows in alarms (IF and comparisons; no SEARCH, and none
        of the whole-series aggregates such as MAX(m1) whose value depends on how many
        datapoints the alarm fetches), returning a single time series.
        """
        return f"IF(inservice >= {self.max_capacity} AND queue > {self.queue_threshold:g}, 1, 0)"

    @property
    def window_s(self) -> int:
        return self.period_s * self.evaluation_periods

    def value(self, in_service: float | None, queue: float | None) -> float | None:
        """The expression's value for one minute, as CloudWatch computes it."""
        if in_service is None and queue is None:
            return None
        at_max = (in_service or 0.0) >= self.max_capacity
        queued = (queue or 0.0) > self.queue_threshold
        return 1.0 if at_max and queued else 0.0

    def in_alarm(self, minutes: tuple[tuple[float | None, float | None], ...]) -> bool:
        """ALARM when each of the last `evaluation_periods` minutes is saturated."""
        window = minutes[-self.evaluation_periods :]
        values = [self.value(in_service, queue) for in_service, queue in window]
        return len(window) == self.evaluation_periods and all(v == 1.0 for v in values)


@dataclass(frozen=True)
class ScalingRules:
    """Everything the stack provisions for scaling, and the replay's input."""

    scale_out: ScalingRule
    scale_in: ScalingRule
    # Adds capacity when sequences queue, beyond what the demand steps gave.
    queue_depth: ScalingRule
    metric_heartbeat: AlarmRule
    saturation: SaturationAlarm
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
    queue = policy.queue
    # The same up delay as the demand alarm: a queue is evidence only if it lasts.
    queue_alarm = AlarmRule(
        metric_name=QUEUE_DEPTH_METRIC,
        statistic="Average",
        period_s=config.metric_period_s,
        evaluation_periods=config.upscale_evaluation_periods,
        datapoints_to_alarm=config.upscale_evaluation_periods,
        threshold=float(queue.scale_out_queue_depth),
        comparison=Comparison.GREATER_THAN,
        # A silent fleet has no queue to act on; the heartbeat alarm covers silence.
        treat_missing_data=MissingData.NOT_BREACHING,
    )
    queue_steps = _queue_depth_steps(queue, maximum)
    saturation = SaturationAlarm(
        in_service_metric=IN_SERVICE_METRIC,
        in_service_statistic="Minimum",
        queue_metric=QUEUE_DEPTH_METRIC,
        queue_statistic="Average",
        period_s=GROUP_METRICS_PERIOD_S,
        evaluation_periods=SATURATION_MINUTES,
        max_capacity=maximum,
        queue_threshold=float(queue.scale_out_queue_depth),
    )
    for steps in (out_steps, in_steps, queue_steps):
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
        queue_depth=ScalingRule(
            queue_alarm,
            StepPolicyRule(AdjustmentType.PERCENT_CHANGE, 1, "Average", warmup, queue_steps),
        ),
        metric_heartbeat=heartbeat,
        saturation=saturation,
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


# The queue-depth bands' upper edges, as fractions of the per-instance queue bound.
QUEUE_BAND_EDGES = (0.25, 0.5, 0.75)


def queue_runner_capacity(capacity: int, queued_per_instance: float, max_running: int) -> int:
    """Instances that run every queued sequence as well: n * (running + queued) / running,
    when each of the `capacity` instances runs `max_running` and queues the rest."""
    return math.ceil(capacity * (max_running + queued_per_instance) / max_running - 1e-9)


def _queue_depth_steps(queue: GatewayQueue, maximum: int) -> tuple[StepAdjustment, ...]:
    # A queue forms only once an instance runs `max_running` sequences, so q queued per
    # instance on n instances needs n * q / max_running more of them. Each band adds the
    # smallest percentage that, after EC2 Auto Scaling's rounding toward zero, reaches that
    # capacity at the band's upper edge for every fleet size (hence at any q in the band);
    # the last band sizes for a full queue (requests are being shed: demand is unknown).
    threshold = queue.scale_out_queue_depth
    full = max(float(queue.max_queued), threshold + 1)
    uppers = sorted({edge * queue.max_queued for edge in QUEUE_BAND_EDGES} | {full})
    uppers = [edge for edge in uppers if edge > threshold]
    bands: list[tuple[float | None, float | None, int]] = []
    lower = 0.0
    for index, upper in enumerate(uppers):
        last = index == len(uppers) - 1
        percent = _percent_running_queue(upper, queue.max_running, maximum)
        bands.append((lower, None if last else round(upper - threshold, 3), percent))
        lower = round(upper - threshold, 3)
    return _merge(bands)


def _percent_running_queue(queued: float, max_running: int, maximum: int) -> int:
    """The smallest percentage whose change reaches `queue_runner_capacity` at every size."""
    wanted = {
        n: min(queue_runner_capacity(n, queued, max_running), maximum) for n in range(1, maximum)
    }
    return next(
        p
        for p in range(1, 100 * maximum + 1)
        if all(n + percent_change(n, p, 1) >= capacity for n, capacity in wanted.items())
    )


@dataclass(frozen=True)
class ReplayState:
    """What CloudWatch and the Auto Scaling group remember between metric periods."""

    datapoints: tuple[float | None, ...] = ()  # Demand per instance
    scale_out_next_action_s: float | None = None  # None: the alarm is not in ALARM
    scale_in_next_action_s: float | None = None
    warming: tuple[tuple[float, int], ...] = field(default=())  # (warm at, instances)
    queue_datapoints: tuple[float | None, ...] = ()  # QueueDepth per instance
    queue_depth_next_action_s: float | None = None


def replay_step(
    rules: ScalingRules,
    state: ReplayState,
    at_s: float,
    demand_per_instance: float | None,
    desired: int,
    min_capacity: int | None = None,
    *,
    queue_depth_per_instance: float | None = None,
) -> tuple[int, ReplayState]:
    """Feed one metric period's datapoints; return the new desired capacity and state.

    Call once per `rules.scale_out.alarm.period_s`, with the Average of Demand per instance
    over that period and the Average of QueueDepth per instance (None if nothing was
    published), the group's current desired capacity and the minimum in force (the
    schedule's; default `min_capacity`).

    Modelled AWS behaviour:
    - each alarm is evaluated on its last `evaluation_periods` datapoints;
    - on entering ALARM the step policy runs at once, then again every 60 s while the
      alarm stays in ALARM (CloudWatch's repeat for Auto Scaling actions);
    - a scale-out counts instances still within `estimated_instance_warmup_s` as already
      added: the step is computed on the warm capacity and only the excess is launched;
    - when several policies run in the same period, EC2 Auto Scaling applies the one that
      gives the largest capacity (for scale-out and scale-in alike);
    - the group clamps the result to [min, max].
    """
    lower = rules.min_capacity if min_capacity is None else min_capacity
    upper = rules.max_capacity
    desired = min(max(desired, lower), upper)
    window = max(rules.scale_out.alarm.evaluation_periods, rules.scale_in.alarm.evaluation_periods)
    datapoints = (*state.datapoints, demand_per_instance)[-window:]
    queue_window = rules.queue_depth.alarm.evaluation_periods
    queue_datapoints = (*state.queue_datapoints, queue_depth_per_instance)[-queue_window:]
    warming = tuple((ready, count) for ready, count in state.warming if ready > at_s)

    out_next = _next_action(rules.scale_out.alarm, datapoints, state.scale_out_next_action_s, at_s)
    in_next = _next_action(rules.scale_in.alarm, datapoints, state.scale_in_next_action_s, at_s)
    queue_next = _next_action(
        rules.queue_depth.alarm, queue_datapoints, state.queue_depth_next_action_s, at_s
    )

    # (capacity wanted, is a scale-out) of every policy whose action runs now.
    candidates: list[tuple[int, bool]] = []
    warm = desired - sum(count for _, count in warming)
    for rule, next_s, metric in (
        (rules.scale_out, out_next, demand_per_instance),
        (rules.queue_depth, queue_next, queue_depth_per_instance),
    ):
        if next_s is not None and next_s <= at_s and metric is not None:
            step = rule.policy.adjustment(metric, rule.alarm.threshold, warm)
            # A scale-out never lowers the group, whatever the warm capacity's step says.
            candidates.append((max(min(max(warm + step, lower), upper), desired), True))
    if out_next is not None and out_next <= at_s and demand_per_instance is not None:
        out_next = at_s + AUTOSCALING_ACTION_REPEAT_S
    if queue_next is not None and queue_next <= at_s and queue_depth_per_instance is not None:
        queue_next = at_s + AUTOSCALING_ACTION_REPEAT_S
    if in_next is not None and in_next <= at_s and demand_per_instance is not None:
        in_next = at_s + AUTOSCALING_ACTION_REPEAT_S
        step = rules.scale_in.policy.adjustment(
            demand_per_instance, rules.scale_in.alarm.threshold, desired
        )
        candidates.append((min(max(desired + step, lower), upper), False))

    if candidates:
        wanted, scales_out = max(candidates)
        if scales_out:
            # A scale-out launches only what the warm capacity's step exceeds the group by.
            if wanted > desired:
                warmup = rules.scale_out.policy.estimated_instance_warmup_s
                warming = (*warming, (at_s + warmup, wanted - desired))
                desired = wanted
        elif wanted < desired:
            desired = wanted
    return desired, ReplayState(
        datapoints, out_next, in_next, warming, queue_datapoints, queue_next
    )


def _next_action(
    alarm: AlarmRule,
    datapoints: tuple[float | None, ...],
    scheduled: float | None,
    at_s: float,
) -> float | None:
    if len(datapoints) < alarm.evaluation_periods or not alarm.in_alarm(datapoints):
        return None
    return at_s if scheduled is None else scheduled
