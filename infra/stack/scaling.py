"""Step scaling compiled from the policy: three high-resolution alarms, three step policies.

Demand per instance drives the scale-out and scale-in policies; QueueDepth per instance
drives a second scale-out policy that adds what the queue needs. When several run at once,
EC2 Auto Scaling applies the one giving the largest capacity.

The numbers all come from `infra.policy.aws_rules.compile_scaling_rules`; this construct
only turns them into resources, so what is deployed is what the replay tests exercise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdktn_provider_aws.autoscaling_policy import (
    AutoscalingPolicy,
    AutoscalingPolicyStepAdjustment,
)
from cdktn_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from constructs import Construct

from infra.policy.aws_rules import GROUP_DIMENSION, AlarmRule, ScalingRule, ScalingRules


def rule_alarm_config(
    alarm: AlarmRule, namespace: str, autoscaling_group_name: str
) -> dict[str, Any]:
    """A compiled alarm rule's metric and thresholds as `CloudwatchMetricAlarm` arguments: the
    scaling alarms and the heartbeat alarm (observability) deploy their rules the same way."""
    return {
        "namespace": namespace,
        "metric_name": alarm.metric_name,
        "dimensions": {GROUP_DIMENSION: autoscaling_group_name},
        "statistic": alarm.statistic,
        "period": alarm.period_s,
        "evaluation_periods": alarm.evaluation_periods,
        "datapoints_to_alarm": alarm.datapoints_to_alarm,
        "threshold": alarm.threshold,
        "comparison_operator": alarm.comparison.value,
        "treat_missing_data": alarm.treat_missing_data.value,
    }


@dataclass(frozen=True)
class ScalingProps:
    name: str
    autoscaling_group_name: str
    namespace: str
    rules: ScalingRules
    scale_out_alarm_name: str
    scale_in_alarm_name: str
    queue_depth_alarm_name: str


class Scaling(Construct):
    scale_out_policy_arn: str
    scale_in_policy_arn: str
    queue_depth_policy_arn: str

    def __init__(self, scope: Construct, id_: str, props: ScalingProps) -> None:
        super().__init__(scope, id_)
        self.scale_out_policy_arn = self._rule(
            "scale-out", props, props.rules.scale_out, props.scale_out_alarm_name
        )
        self.scale_in_policy_arn = self._rule(
            "scale-in", props, props.rules.scale_in, props.scale_in_alarm_name
        )
        self.queue_depth_policy_arn = self._rule(
            "queue-depth", props, props.rules.queue_depth, props.queue_depth_alarm_name
        )

    def _rule(self, id_: str, props: ScalingProps, rule: ScalingRule, alarm_name: str) -> str:
        policy = AutoscalingPolicy(
            self,
            f"{id_}-policy",
            name=f"{props.name}-{id_}",
            autoscaling_group_name=props.autoscaling_group_name,
            policy_type="StepScaling",
            adjustment_type=rule.policy.adjustment_type.value,
            min_adjustment_magnitude=rule.policy.min_adjustment_magnitude,
            metric_aggregation_type=rule.policy.metric_aggregation_type,
            estimated_instance_warmup=rule.policy.estimated_instance_warmup_s,
            step_adjustment=[
                AutoscalingPolicyStepAdjustment(
                    scaling_adjustment=step.scaling_adjustment,
                    metric_interval_lower_bound=(
                        None if step.lower_bound is None else str(step.lower_bound)
                    ),
                    metric_interval_upper_bound=(
                        None if step.upper_bound is None else str(step.upper_bound)
                    ),
                )
                for step in rule.policy.steps
            ],
        )
        alarm = rule.alarm
        CloudwatchMetricAlarm(
            self,
            f"{id_}-alarm",
            alarm_name=alarm_name,
            alarm_description=(
                f"{id_}: Average {alarm.metric_name} per instance {alarm.comparison.value} "
                f"{alarm.threshold:g} for {alarm.window_s} s (compiled from infra.policy)"
            ),
            alarm_actions=[policy.arn],
            **rule_alarm_config(alarm, props.namespace, props.autoscaling_group_name),
        )
        return policy.arn
