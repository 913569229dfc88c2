"""The policy compiled into AWS alarms and step policies, replayed against Ray's `decide()`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import operator
import re
from collections.abc import Callable

import pytest

from infra.policy import FLEET_POLICY, DecisionState, FleetPolicy, Observation, PolicyError, decide
from infra.policy.aws_rules import (
    AUTOSCALING_ACTION_REPEAT_S,
    GROUP_METRICS_PERIOD_S,
    MAX_ALARM_METRICS,
    MAX_STEP_ADJUSTMENTS,
    SATURATION_MINUTES,
    Comparison,
    MissingData,
    ReplayState,
    ScalingRules,
    compile_scaling_rules,
    queue_runner_capacity,
    ray_adjustment,
    replay_step,
)
from infra.policy.cold_start import instance_warmup_s
from infra.policy.scaling import HIGH_RESOLUTION_PERIODS_S

NEW_YORK = FLEET_POLICY.schedule.zone
SATURDAY_NOON = dt.datetime(2026, 11, 28, 12, 0, tzinfo=NEW_YORK)  # default minimum 1
RULES = compile_scaling_rules(FLEET_POLICY)
PERIOD_S = FLEET_POLICY.default.metric_period_s


def with_policy(**changes: object) -> FleetPolicy:
    return dataclasses.replace(
        FLEET_POLICY,
        default=dataclasses.replace(FLEET_POLICY.default, **changes),  # type: ignore[arg-type]
        market_hours=dataclasses.replace(FLEET_POLICY.market_hours, **changes),  # type: ignore[arg-type]
    )


def test_alarm_windows_are_the_policy_delays_at_metric_resolution() -> None:
    config = FLEET_POLICY.default
    out, scale_in = RULES.scale_out.alarm, RULES.scale_in.alarm
    assert (out.period_s, out.window_s) == (config.metric_period_s, config.upscale_delay_s)
    assert (scale_in.period_s, scale_in.window_s) == (10, config.downscale_delay_s)
    # Ray requires the wish to hold without interruption: every datapoint must breach
    assert out.datapoints_to_alarm == out.evaluation_periods == 3
    assert scale_in.datapoints_to_alarm == scale_in.evaluation_periods == 30
    assert (out.threshold, out.comparison) == (10.0, Comparison.GREATER_THAN)
    assert (scale_in.threshold, scale_in.comparison) == (5.0, Comparison.LESS_THAN_OR_EQUAL)
    assert RULES.scale_out.policy.estimated_instance_warmup_s == instance_warmup_s()
    assert (RULES.min_capacity, RULES.market_hours_min_capacity, RULES.max_capacity) == (1, 2, 4)


def test_missing_data_never_scales_and_the_heartbeat_breaches_on_silence() -> None:
    assert RULES.scale_out.alarm.treat_missing_data is MissingData.NOT_BREACHING
    assert RULES.scale_in.alarm.treat_missing_data is MissingData.NOT_BREACHING
    assert not RULES.scale_in.alarm.breaches(None)
    assert RULES.scale_in.alarm.breaches(0.0)  # an idle gateway publishes zeros
    assert RULES.metric_heartbeat.breaches(None)
    assert RULES.metric_heartbeat.treat_missing_data is MissingData.BREACHING
    # GIVEN four instances whose publisher went silent for an hour
    desired, state = 4, ReplayState()
    for period in range(360):
        desired, state = replay_step(RULES, state, period * PERIOD_S, None, desired)
    # THEN the group keeps its capacity (the heartbeat alarm pages a person instead)
    assert desired == 4


def ray_outcome(capacity: int, per_instance: float) -> int:
    config = FLEET_POLICY.default
    ratio = per_instance / config.target_ongoing_requests
    factor = config.upscale_factor if ratio > 1 else config.downscale_factor
    change = ray_adjustment(capacity, factor, ratio)
    return min(max(capacity + change, RULES.min_capacity), RULES.max_capacity)


def aws_outcome(rules: ScalingRules, capacity: int, per_instance: float) -> int:
    for rule in (rules.scale_out, rules.scale_in):
        if rule.alarm.breaches(per_instance):
            step = rule.policy.adjustment(per_instance, rule.alarm.threshold, capacity)
            return min(max(capacity + step, rules.min_capacity), rules.max_capacity)
    return capacity


def test_step_bands_reproduce_the_smoothed_step_except_the_documented_scale_in_gap() -> None:
    target = FLEET_POLICY.default.target_ongoing_requests
    factor = FLEET_POLICY.default.downscale_factor
    disagreements = []
    for capacity in range(1, RULES.max_capacity + 1):
        for hundredths in range(0, 100 * 100 + 1, 5):
            per_instance = hundredths / 100
            ray, aws = (
                ray_outcome(capacity, per_instance),
                aws_outcome(RULES, capacity, per_instance),
            )
            if ray != aws:
                disagreements.append((capacity, per_instance, ray, aws))
    # Every scale-out agrees. The one intended difference: one scale-in alarm has one
    # threshold (Ray's point for the largest fleet, 5 per instance), while Ray's point
    # falls with the count (target * (1 - 1/(f * n)): 3.3 at 3, 0 at 2). So a smaller
    # fleet between the two points loses one instance where Ray keeps it...
    assert disagreements
    for capacity, per_instance, ray, aws in disagreements:
        assert ray == capacity and aws == capacity - 1
        assert (
            target * (1 - 1 / (factor * capacity)) < per_instance <= RULES.scale_in.alarm.threshold
        )
        # ...and the survivors stay at or under the target, so no scale-out follows.
        assert per_instance * capacity / aws <= target


Load = Callable[[int], float]


def ray_changes(start: dt.datetime, seconds: int, load: Load, replicas: int) -> list[int]:
    state, capacities = DecisionState(), []
    for second in range(seconds):
        now = start + dt.timedelta(seconds=second)
        desired, state = decide(FLEET_POLICY, Observation(load(second), replicas), state, now)
        if desired != replicas:
            capacities.append(desired)
            replicas = desired
    return capacities


def aws_changes(seconds: int, load: Load, replicas: int) -> list[tuple[int, int]]:
    state, changes = ReplayState(), []
    for at_s in range(PERIOD_S, seconds, PERIOD_S):
        per_instance = load(at_s - 1) / replicas  # the Average over the period just ended
        desired, state = replay_step(RULES, state, at_s, per_instance, replicas)
        if desired != replicas:
            changes.append((at_s, desired))
            replicas = desired
    return changes


@pytest.mark.parametrize(
    ("name", "load", "replicas"),
    [
        ("burst of 30 on one instance", lambda s: 30.0, 1),
        ("burst of 80 on one instance", lambda s: 80.0, 1),
        ("idle fleet of four", lambda s: 0.0, 4),
        ("burst then idle", lambda s: 45.0 if s < 900 else 0.0, 1),
        ("steady at target", lambda s: 20.0, 2),
        ("short spikes under the up delay", lambda s: 90.0 if s % 60 < 20 else 5.0, 1),
    ],
)
def test_replayed_rules_make_the_same_scaling_decisions_as_decide(
    name: str, load: Load, replicas: int
) -> None:
    seconds = 2400
    ray = ray_changes(SATURDAY_NOON, seconds, load, replicas)
    aws = aws_changes(seconds, load, replicas)
    assert [capacity for _, capacity in aws] == ray, name
    if aws:
        # The first decision comes after the same delay (to one metric period)...
        first_delay = (
            FLEET_POLICY.default.upscale_delay_s
            if aws[0][1] > replicas
            else FLEET_POLICY.default.downscale_delay_s
        )
        assert first_delay <= aws[0][0] <= first_delay + PERIOD_S, name


def test_documented_timing_differences_after_the_first_step() -> None:
    # Scale-out: Ray steps again after another up delay; AWS waits for the new instance's
    # warm-up (it counts as capacity meanwhile), then steps at the next once-a-minute repeat.
    aws = aws_changes(600, lambda s: 30.0, 1)
    warmup = RULES.scale_out.policy.estimated_instance_warmup_s
    assert aws[0] == (30, 2)
    assert 30 + warmup <= aws[1][0] <= 30 + warmup + AUTOSCALING_ACTION_REPEAT_S
    assert aws[1][1] == 3
    # Scale-in: Ray restarts its 300 s wait after each step; CloudWatch repeats the action
    # once a minute while the alarm stays in ALARM, so an idle fleet reaches its minimum
    # sooner: 4 -> 2 at 300 s, -> 1 at 360 s (Ray: 601 s).
    assert aws_changes(900, lambda s: 0.0, 4) == [(300, 2), (300 + AUTOSCALING_ACTION_REPEAT_S, 1)]


def test_the_schedule_minimum_is_respected_by_the_replay() -> None:
    desired, state = 2, ReplayState()
    for period in range(100):
        desired, state = replay_step(
            RULES, state, period * PERIOD_S, 0.0, desired, RULES.market_hours_min_capacity
        )
    assert desired == 2


def test_a_policy_needing_more_step_adjustments_than_aws_allows_is_refused() -> None:
    with pytest.raises(PolicyError, match="max_replicas"):
        compile_scaling_rules(with_policy(max_replicas=16))


@pytest.mark.parametrize(("factor", "maximum"), [(1.0, 4), (0.5, 6), (0.3, 8)])
def test_other_valid_policies_compile_to_contiguous_bands(factor: float, maximum: int) -> None:
    rules = compile_scaling_rules(with_policy(smoothing_factor=factor, max_replicas=maximum))
    for rule in (rules.scale_out, rules.scale_in):
        steps = rule.policy.steps
        assert all(a.upper_bound == b.lower_bound for a, b in itertools.pairwise(steps))
    assert rules.scale_out.policy.steps[0].lower_bound == 0.0
    assert rules.scale_out.policy.steps[-1].upper_bound is None
    assert rules.scale_in.policy.steps[-1].upper_bound == 0.0
    assert rules.scale_in.policy.steps[0].lower_bound is None


# --- The queue-depth rule --------------------------------------------------------------

QUEUE = FLEET_POLICY.queue


def with_queue(**changes: object) -> FleetPolicy:
    return dataclasses.replace(FLEET_POLICY, queue=dataclasses.replace(QUEUE, **changes))  # type: ignore[arg-type]


def test_the_queue_depth_alarm_has_the_demand_alarms_window_and_the_policys_threshold() -> None:
    queue, out = RULES.queue_depth.alarm, RULES.scale_out.alarm
    assert (queue.metric_name, queue.statistic) == ("QueueDepth", "Average")
    assert queue.threshold == QUEUE.scale_out_queue_depth == 1.0
    assert queue.comparison is Comparison.GREATER_THAN
    # the up delay at metric resolution: a high-resolution period (10, 20 or 30 s), every
    # datapoint breaching
    assert (queue.period_s, queue.evaluation_periods) == (out.period_s, out.evaluation_periods)
    assert queue.period_s in HIGH_RESOLUTION_PERIODS_S
    assert queue.datapoints_to_alarm == queue.evaluation_periods
    assert queue.treat_missing_data is MissingData.NOT_BREACHING
    policy = RULES.queue_depth.policy
    assert policy.scales_out and policy.estimated_instance_warmup_s == instance_warmup_s()


@pytest.mark.parametrize(
    ("maximum", "factor", "queue_changes"),
    [
        (4, 0.5, {}),
        (8, 0.5, {}),
        (6, 0.3, {"max_queued": 8, "scale_out_queue_depth": 2.0}),
        (8, 1.0, {"engine_max_num_seqs": 64, "max_queued": 100}),
        (4, 0.5, {"max_queued": 0, "scale_out_queue_depth": 0.0}),
    ],
)
def test_one_queue_depth_step_adds_the_instances_that_would_run_the_queue(
    maximum: int, factor: float, queue_changes: dict[str, object]
) -> None:
    policy = dataclasses.replace(
        with_policy(max_replicas=maximum, smoothing_factor=factor),
        queue=dataclasses.replace(QUEUE, **queue_changes),  # type: ignore[arg-type]
    )
    rules = compile_scaling_rules(policy)
    queue, rule = policy.queue, rules.queue_depth
    steps = rule.policy.steps
    # EC2 Auto Scaling's shape: contiguous bands from the threshold up, at most 20
    assert len(steps) <= MAX_STEP_ADJUSTMENTS
    assert steps[0].lower_bound == 0.0 and steps[-1].upper_bound is None
    assert all(a.upper_bound == b.lower_bound for a, b in itertools.pairwise(steps))
    assert all(a.scaling_adjustment <= b.scaling_adjustment for a, b in itertools.pairwise(steps))
    full = max(queue.max_queued, rule.alarm.threshold + 1)
    for tenths in range(int(rule.alarm.threshold * 10) + 1, int(full * 10) + 1):
        queued = tenths / 10
        for capacity in range(1, maximum + 1):
            after = capacity + rule.policy.adjustment(queued, rule.alarm.threshold, capacity)
            wanted = queue_runner_capacity(capacity, queued, queue.max_running)
            assert min(after, maximum) >= min(wanted, maximum), (queued, capacity)


def test_the_queue_runner_capacity_is_running_plus_queued_over_running() -> None:
    # 2 instances each running 30 and queueing 15: 90 sequences need 3 instances
    assert queue_runner_capacity(2, 15.0, 30) == 3
    assert queue_runner_capacity(2, 15.1, 30) == 4
    assert queue_runner_capacity(1, 0.0, 30) == 1


def queue_changes(
    demand: Callable[[int], float], queued: Callable[[int], float | None], replicas: int
) -> list[tuple[int, int]]:
    state, changes = ReplayState(), []
    for at_s in range(PERIOD_S, 900, PERIOD_S):
        desired, state = replay_step(
            RULES,
            state,
            at_s,
            demand(at_s),
            replicas,
            queue_depth_per_instance=queued(at_s),
        )
        if desired != replicas:
            changes.append((at_s, desired))
            replicas = desired
    return changes


def test_a_queue_that_lasts_the_up_delay_scales_out_where_demand_alone_would_not() -> None:
    # GIVEN demand at the target (no demand alarm) while vLLM's KV cache makes requests wait
    at_target = FLEET_POLICY.default.target_ongoing_requests
    assert queue_changes(lambda s: at_target, lambda s: 0.0, 1) == []
    changes = queue_changes(lambda s: at_target, lambda s: 4.0, 1)
    # THEN the queue-depth policy adds one instance after the up delay
    assert changes[0] == (FLEET_POLICY.default.upscale_delay_s, 2)


def test_a_queue_shorter_than_the_up_delay_or_at_the_threshold_does_nothing() -> None:
    at_target = FLEET_POLICY.default.target_ongoing_requests
    brief = queue_changes(lambda s: at_target, lambda s: 20.0 if s % 60 < 20 else 0.0, 1)
    assert brief == []
    threshold = RULES.queue_depth.alarm.threshold
    assert queue_changes(lambda s: at_target, lambda s: threshold, 1) == []
    # no datapoint is no queue (a silent fleet must not grow on it)
    assert queue_changes(lambda s: at_target, lambda s: None, 1) == []


def alone(rule_name: str, demand: float, queued: float, capacity: int) -> int:
    """The capacity one scale-out rule asks for when its alarm fires."""
    rule = getattr(RULES, rule_name)
    metric = demand if rule_name == "scale_out" else queued
    step = rule.policy.adjustment(metric, rule.alarm.threshold, capacity)
    return min(capacity + step, RULES.max_capacity)


@pytest.mark.parametrize(
    ("demand", "queued", "winner"),
    [
        (12.0, 30.0, "queue_depth"),  # demand adds 1, the full queue 200 %
        (45.0, 2.0, "scale_out"),  # demand's 200 % beats the small queue's one instance
    ],
)
def test_when_both_alarms_fire_the_policy_giving_the_larger_capacity_runs(
    demand: float, queued: float, winner: str
) -> None:
    # EC2 Auto Scaling, given several policies at once, applies the largest capacity.
    expected = {name: alone(name, demand, queued, 1) for name in ("scale_out", "queue_depth")}
    assert expected[winner] > min(expected.values())
    changes = queue_changes(lambda s: demand, lambda s: queued, 1)
    assert changes[0] == (FLEET_POLICY.default.upscale_delay_s, max(expected.values()))


def test_the_queue_policy_counts_warming_instances_and_repeats_once_a_minute() -> None:
    at_target = FLEET_POLICY.default.target_ongoing_requests
    changes = queue_changes(lambda s: at_target, lambda s: 4.0, 1)
    warmup = RULES.queue_depth.policy.estimated_instance_warmup_s
    # 1 -> 2 at the up delay; the new instance counts as capacity while it warms up, so the
    # next instance comes only once it is warm, at the next once-a-minute repeat
    assert changes[0] == (30, 2)
    assert 30 + warmup <= changes[1][0] <= 30 + warmup + AUTOSCALING_ACTION_REPEAT_S
    assert (changes[1][0] - 30) % AUTOSCALING_ACTION_REPEAT_S == 0


# --- The saturation page ---------------------------------------------------------------

SATURATION = RULES.saturation


def test_the_saturation_alarm_reads_one_minute_group_metrics_within_aws_limits() -> None:
    # Group metrics have one granularity, 1Minute: the alarm's period is 60 s.
    assert SATURATION.period_s == GROUP_METRICS_PERIOD_S == 60
    assert (SATURATION.in_service_metric, SATURATION.in_service_statistic) == (
        "GroupInServiceInstances",
        "Minimum",
    )
    assert (SATURATION.queue_metric, SATURATION.queue_statistic) == ("QueueDepth", "Average")
    assert SATURATION.max_capacity == FLEET_POLICY.max_replicas
    assert SATURATION.queue_threshold == QUEUE.scale_out_queue_depth
    assert SATURATION.evaluation_periods == SATURATION_MINUTES
    # Two metrics (a metric-math alarm reads at most 10), and only functions CloudWatch
    # evaluates in alarms: no SEARCH, no whole-series aggregate.
    functions = set(re.findall(r"([A-Z_]+)\(", SATURATION.expression))
    assert functions <= ALARM_FUNCTIONS
    assert set(re.findall(r"\b([a-z]\w*)\b", SATURATION.expression)) == {"inservice", "queue"}
    assert 2 <= MAX_ALARM_METRICS == 10


# Functions the CloudWatch guide lists for metric math that are safe in alarms. SEARCH is
# refused in alarms; AVG/MIN/MAX/SUM/STDDEV of one series, DATAPOINT_COUNT, RUNNING_SUM
# and REMOVE_EMPTY are discouraged (they change with the datapoints an alarm fetches).
ALARM_FUNCTIONS = {"IF", "FILL", "DIFF", "RATE", "ABS", "CEIL", "FLOOR"}


def evaluate(expression: str, values: dict[str, float | None]) -> float | None:
    """A metric-math evaluator for IF, AND, comparisons and numbers, on one timestamp.

    CloudWatch's documented semantics: a comparison or logical operator between series
    treats a value missing from one of them as 0; no value in any series, no datapoint.
    """
    if all(value is None for value in values.values()):
        return None
    tokens = re.findall(r">=|<=|==|!=|[(),<>]|[A-Za-z_]\w*|\d+(?:\.\d+)?", expression)
    position = 0

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def primary() -> float:
        token = take()
        if token == "IF":
            assert take() == "("
            condition = disjunction()
            assert take() == ","
            then = disjunction()
            assert take() == ","
            otherwise = disjunction()
            assert take() == ")"
            return then if condition else otherwise
        if token == "(":
            inner = disjunction()
            assert take() == ")"
            return inner
        if token[0].isdigit():
            return float(token)
        return float(values[token] or 0.0)

    def comparison() -> float:
        left = primary()
        operators = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
        if position < len(tokens) and tokens[position] in operators:
            compare = operators[take()]
            return float(compare(left, primary()))
        return left

    def conjunction() -> float:
        value = comparison()
        while position < len(tokens) and tokens[position] == "AND":
            take()
            right = comparison()
            value = float(bool(value) and bool(right))
        return value

    def disjunction() -> float:
        value = conjunction()
        while position < len(tokens) and tokens[position] == "OR":
            take()
            right = conjunction()
            value = float(bool(value) or bool(right))
        return value

    result = disjunction()
    assert position == len(tokens), expression
    return result


def test_the_saturation_expression_means_what_the_rule_says() -> None:
    maximum, threshold = SATURATION.max_capacity, SATURATION.queue_threshold
    grid: list[float | None] = [None, 0.0, maximum - 1, maximum, maximum + 1]
    queues: list[float | None] = [None, 0.0, threshold, threshold + 0.5, 40.0]
    for in_service, queue in itertools.product(grid, queues):
        value = evaluate(SATURATION.expression, {"inservice": in_service, "queue": queue})
        assert value == SATURATION.value(in_service, queue), (in_service, queue)
    # at the maximum with a queue above the threshold: saturated; one short, or no queue: not
    assert SATURATION.value(maximum, threshold + 0.5) == 1.0
    assert SATURATION.value(maximum - 1, 40.0) == 0.0
    assert SATURATION.value(maximum, threshold) == 0.0
    # a silent gateway fleet reads as no queue, and a minute without any data is missing
    assert SATURATION.value(maximum, None) == 0.0
    assert SATURATION.value(None, None) is None


def test_the_saturation_alarm_needs_every_minute_of_its_window() -> None:
    saturated = (float(SATURATION.max_capacity), SATURATION.queue_threshold + 1)
    relieved = (float(SATURATION.max_capacity), 0.0)
    minutes = SATURATION.evaluation_periods
    assert SATURATION.in_alarm((saturated,) * minutes)
    assert not SATURATION.in_alarm((saturated,) * (minutes - 1))
    assert not SATURATION.in_alarm((saturated,) * (minutes - 1) + (relieved,))
    assert SATURATION.in_alarm((relieved,) + (saturated,) * minutes)
