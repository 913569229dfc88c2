"""What people see: the dashboard, the paging alarms and their SNS topic, the log groups.

This construct's alarm names are listed once in `ALARMS`; the three scaling alarms are named
here too, though their action is a scaling policy. `ALL_ALARMS` adds the calendar function's
two: it is every alarm the stack deploys (the runbook has one entry per name).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cdktn_provider_aws.cloudwatch_dashboard import CloudwatchDashboard
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.cloudwatch_metric_alarm import (
    CloudwatchMetricAlarm,
    CloudwatchMetricAlarmMetricQuery,
    CloudwatchMetricAlarmMetricQueryMetric,
)
from cdktn_provider_aws.kms_alias import KmsAlias
from cdktn_provider_aws.kms_key import KmsKey
from cdktn_provider_aws.sns_topic import SnsTopic
from cdktn_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from contract import SHED_METRIC
from infra.policy.aws_rules import (
    DEMAND_METRIC,
    GROUP_DIMENSION,
    GROUP_METRICS_NAMESPACE,
    QUEUE_DEPTH_METRIC,
    ScalingRules,
)
from infra.stack.fleet import LOG_GROUP_PREFIX
from infra.stack.market_calendar import CALENDAR_ALARMS
from infra.stack.scaling import rule_alarm_config

# Alarm names, without the fleet's name in front (see `alarm_name`).
SCALE_OUT_ALARM = "demand-high"
SCALE_IN_ALARM = "demand-low"
QUEUE_DEPTH_ALARM = "queue-depth-high"
METRIC_MISSING_ALARM = "scaling-metric-missing"
LATENCY_ALARM = "p99-latency-over-sla"
ERROR_RATE_ALARM = "5xx-rate-high"
UNHEALTHY_HOST_ALARM = "unhealthy-host"
NO_HEALTHY_HOST_ALARM = "no-healthy-hosts"
SATURATED_ALARM = "at-max-capacity-queue-high"
SCALING_ALARMS = (SCALE_OUT_ALARM, SCALE_IN_ALARM, QUEUE_DEPTH_ALARM)
PAGING_ALARMS = (
    METRIC_MISSING_ALARM,
    LATENCY_ALARM,
    ERROR_RATE_ALARM,
    UNHEALTHY_HOST_ALARM,
    NO_HEALTHY_HOST_ALARM,
    SATURATED_ALARM,
)
ALARMS = SCALING_ALARMS + PAGING_ALARMS
# Every alarm of a stack with the calendar function (the default); without it, `ALARMS`.
ALL_ALARMS = ALARMS + CALENDAR_ALARMS

LOG_GROUPS = (f"{LOG_GROUP_PREFIX}/gateway", f"{LOG_GROUP_PREFIX}/vllm")
ALB_NAMESPACE = "AWS/ApplicationELB"


def alarm_name(fleet_name: str, alarm: str) -> str:
    """The deployed name of an alarm: `finsight-serving-prod-p99-latency-over-sla`."""
    return f"{fleet_name}-{alarm}"


@dataclass(frozen=True)
class ObservabilityProps:
    name: str
    region: str
    account_id: str
    namespace: str
    autoscaling_group_name: str
    load_balancer_arn_suffix: str
    target_group_arn_suffix: str
    rules: ScalingRules
    latency_sla_p99_s: float
    error_rate_5xx_percent: float
    alarm_email: str | None
    log_retention_days: int


def alarm_topic_key_policy(props: ObservabilityProps) -> dict[str, Any]:
    """The alarm topic key's policy: the account administers it; only this stack's alarms
    (every alarm the stack deploys is named `<fleet>-...`) may use it to publish.

    CloudWatch alarms are the topic's only publishers (the calendar function's failures reach
    it through its own alarms, not by publishing).
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersTheKey",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{props.account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                # Against the confused deputy: this account's alarms of this stack only.
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": props.account_id},
                    "ArnLike": {
                        "aws:SourceArn": (
                            f"arn:aws:cloudwatch:{props.region}:{props.account_id}:alarm:"
                            f"{props.name}-*"
                        )
                    },
                },
            },
        ],
    }


class Observability(Construct):
    alarm_topic_arn: str
    alarm_topic_key_arn: str
    dashboard_name: str
    alarm_names: dict[str, str]

    def __init__(self, scope: Construct, id_: str, props: ObservabilityProps) -> None:
        super().__init__(scope, id_)
        self._props = props
        self.alarm_names = {alarm: alarm_name(props.name, alarm) for alarm in ALARMS}
        for group in LOG_GROUPS:
            CloudwatchLogGroup(
                self,
                group.rsplit("/", 1)[-1] + "-logs",
                name=group,
                retention_in_days=props.log_retention_days,
            )

        # A key of our own: CloudWatch alarms cannot publish to a topic encrypted with the
        # AWS-managed alias/aws/sns, whose policy cannot grant them the key.
        key = KmsKey(
            self,
            "alarm-topic-key",
            description=f"{props.name}: encrypts the alarm topic",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=json.dumps(alarm_topic_key_policy(props)),
        )
        self.alarm_topic_key_arn = key.arn
        KmsAlias(
            self,
            "alarm-topic-key-alias",
            name=f"alias/{props.name}-alarms",
            target_key_id=key.key_id,
        )
        topic = SnsTopic(
            self,
            "alarms",
            name=f"{props.name}-alarms",
            kms_master_key_id=key.arn,
        )
        self.alarm_topic_arn = topic.arn
        if props.alarm_email is not None:
            SnsTopicSubscription(
                self,
                "alarm-email",
                topic_arn=topic.arn,
                protocol="email",
                endpoint=props.alarm_email,
            )
        self._alarms()
        dashboard = CloudwatchDashboard(
            self,
            "dashboard",
            dashboard_name=props.name,
            dashboard_body=json.dumps(self._dashboard()),
        )
        self.dashboard_name = dashboard.dashboard_name

    def _page(self, alarm: str, description: str, **config: Any) -> None:
        """A paging alarm: it notifies the topic when it fires and again when it clears."""
        notify = [self.alarm_topic_arn]
        CloudwatchMetricAlarm(
            self,
            alarm,
            alarm_name=self.alarm_names[alarm],
            alarm_description=description,
            alarm_actions=notify,
            ok_actions=notify,
            **config,
        )

    def _alarms(self) -> None:
        props = self._props
        group = {GROUP_DIMENSION: props.autoscaling_group_name}
        balancer = {"LoadBalancer": props.load_balancer_arn_suffix}
        target_group = {**balancer, "TargetGroup": props.target_group_arn_suffix}
        heartbeat = props.rules.metric_heartbeat

        self._page(
            METRIC_MISSING_ALARM,
            f"No gateway published {DEMAND_METRIC} for "
            f"{heartbeat.window_s} s: scaling is blind (it neither grows nor shrinks)",
            **rule_alarm_config(heartbeat, props.namespace, props.autoscaling_group_name),
        )
        self._page(
            LATENCY_ALARM,
            f"p99 target response time above the {props.latency_sla_p99_s:g} s SLA for 5 min",
            namespace=ALB_NAMESPACE,
            metric_name="TargetResponseTime",
            dimensions=target_group,
            extended_statistic="p99",
            period=60,
            evaluation_periods=5,
            datapoints_to_alarm=5,
            threshold=props.latency_sla_p99_s,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )
        self._page(
            ERROR_RATE_ALARM,
            f"5xx responses above {props.error_rate_5xx_percent:g} % of requests for 5 min",
            evaluation_periods=5,
            datapoints_to_alarm=5,
            threshold=props.error_rate_5xx_percent,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            metric_query=[
                _metric("target5xx", "HTTPCode_Target_5XX_Count", balancer, "Sum"),
                _metric("elb5xx", "HTTPCode_ELB_5XX_Count", balancer, "Sum"),
                _metric("requests", "RequestCount", balancer, "Sum"),
                CloudwatchMetricAlarmMetricQuery(
                    id="rate",
                    label="5xx % of requests",
                    expression=("100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / FILL(requests, 1)"),
                    return_data=True,
                ),
            ],
        )
        self._page(
            UNHEALTHY_HOST_ALARM,
            "At least one gateway failed its readiness probe for 3 min",
            namespace=ALB_NAMESPACE,
            metric_name="UnHealthyHostCount",
            dimensions=target_group,
            statistic="Maximum",
            period=60,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )
        self._page(
            NO_HEALTHY_HOST_ALARM,
            "No healthy gateway: the ALB fails open and sends traffic to unready instances",
            namespace=ALB_NAMESPACE,
            metric_name="HealthyHostCount",
            dimensions=target_group,
            statistic="Minimum",
            period=60,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            threshold=1,
            comparison_operator="LessThanThreshold",
            # The ALB stops publishing when it has no registered target at all.
            treat_missing_data="breaching",
        )
        saturation = props.rules.saturation
        self._page(
            SATURATED_ALARM,
            f"{saturation.in_service_metric} at the maximum ({saturation.max_capacity}) with "
            f"{saturation.queue_metric} per instance above {saturation.queue_threshold:g} for "
            f"{saturation.window_s // 60} min: the fleet cannot grow and requests wait or are shed",
            evaluation_periods=saturation.evaluation_periods,
            datapoints_to_alarm=saturation.evaluation_periods,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            metric_query=[
                _metric(
                    "inservice",
                    saturation.in_service_metric,
                    group,
                    saturation.in_service_statistic,
                    namespace=GROUP_METRICS_NAMESPACE,
                    period=saturation.period_s,
                ),
                _metric(
                    "queue",
                    saturation.queue_metric,
                    group,
                    saturation.queue_statistic,
                    namespace=props.namespace,
                    period=saturation.period_s,
                ),
                CloudwatchMetricAlarmMetricQuery(
                    id="saturated",
                    label="in service at max with a queue",
                    expression=saturation.expression,
                    return_data=True,
                ),
            ],
        )

    def _dashboard(self) -> dict[str, object]:
        props = self._props
        region = props.region
        group = [GROUP_DIMENSION, props.autoscaling_group_name]
        balancer = ["LoadBalancer", props.load_balancer_arn_suffix]
        target_group = [*balancer, "TargetGroup", props.target_group_arn_suffix]
        rules = props.rules

        def graph(title: str, metrics: list[list[object]], **extra: object) -> dict[str, object]:
            return {
                "type": "metric",
                "width": 12,
                "height": 6,
                "properties": {
                    "title": title,
                    "region": region,
                    "view": "timeSeries",
                    "metrics": metrics,
                    **extra,
                },
            }

        widgets = [
            graph(
                "Demand per instance vs target (the scaling signal)",
                [[props.namespace, DEMAND_METRIC, *group, {"stat": "Average"}]],
                period=rules.scale_out.alarm.period_s,
                annotations={
                    "horizontal": [
                        {
                            "label": "target (scale out above)",
                            "value": rules.scale_out.alarm.threshold,
                        },
                        {"label": "scale in at or below", "value": rules.scale_in.alarm.threshold},
                    ]
                },
            ),
            graph(
                "Queue depth per instance (sequences waiting)",
                [
                    [
                        props.namespace,
                        QUEUE_DEPTH_METRIC,
                        *group,
                        {"stat": "Average", "label": "per instance (the alarm's)"},
                    ],
                    [
                        props.namespace,
                        QUEUE_DEPTH_METRIC,
                        *group,
                        {"stat": "Maximum", "label": "worst instance"},
                    ],
                ],
                period=rules.queue_depth.alarm.period_s,
                annotations={
                    "horizontal": [
                        {
                            "label": "scale out above",
                            "value": rules.queue_depth.alarm.threshold,
                        }
                    ]
                },
            ),
            graph(
                "Requests shed by the gateways (503/429)",
                [[props.namespace, SHED_METRIC, *group, {"stat": "Sum", "label": "fleet"}]],
                period=60,
            ),
            graph(
                "Instances: desired / in service / min / max",
                [
                    [GROUP_METRICS_NAMESPACE, name, *group, {"stat": "Maximum"}]
                    for name in (
                        "GroupDesiredCapacity",
                        "GroupInServiceInstances",
                        "GroupMinSize",
                        "GroupMaxSize",
                    )
                ],
                period=60,
            ),
            graph(
                "ALB requests",
                [[ALB_NAMESPACE, "RequestCount", *balancer, {"stat": "Sum"}]],
                period=60,
            ),
            graph(
                "Target response time p50 / p99",
                [
                    [ALB_NAMESPACE, "TargetResponseTime", *target_group, {"stat": "p50"}],
                    [ALB_NAMESPACE, "TargetResponseTime", *target_group, {"stat": "p99"}],
                ],
                period=60,
                annotations={
                    "horizontal": [{"label": "p99 SLA", "value": props.latency_sla_p99_s}]
                },
            ),
            graph(
                "4xx / 5xx",
                [
                    [ALB_NAMESPACE, name, *balancer, {"stat": "Sum"}]
                    for name in (
                        "HTTPCode_Target_4XX_Count",
                        "HTTPCode_Target_5XX_Count",
                        "HTTPCode_ELB_5XX_Count",
                    )
                ],
                period=60,
            ),
            graph(
                "Healthy / unhealthy gateways",
                [
                    [ALB_NAMESPACE, "HealthyHostCount", *target_group, {"stat": "Minimum"}],
                    [ALB_NAMESPACE, "UnHealthyHostCount", *target_group, {"stat": "Maximum"}],
                ],
                period=60,
            ),
            graph(
                "GPU utilisation and memory (%)",
                [
                    [
                        props.namespace,
                        "nvidia_smi_utilization_gpu",
                        *group,
                        {"stat": "Average"},
                    ],
                    [
                        props.namespace,
                        "nvidia_smi_utilization_memory",
                        *group,
                        {"stat": "Average"},
                    ],
                ],
                period=60,
            ),
            {
                "type": "log",
                "width": 12,
                "height": 6,
                "properties": {
                    "title": "Requests per tenant per minute",
                    "region": region,
                    "view": "timeSeries",
                    "query": (
                        f"SOURCE '{LOG_GROUPS[0]}' | filter ispresent(tenant) "
                        "| stats count(*) as requests by bin(1m), tenant"
                    ),
                },
            },
        ]
        return {"widgets": widgets}


def _metric(
    id_: str,
    metric_name: str,
    dimensions: dict[str, str],
    stat: str,
    namespace: str = ALB_NAMESPACE,
    period: int = 60,
) -> CloudwatchMetricAlarmMetricQuery:
    return CloudwatchMetricAlarmMetricQuery(
        id=id_,
        metric=CloudwatchMetricAlarmMetricQueryMetric(
            namespace=namespace,
            metric_name=metric_name,
            dimensions=dimensions,
            stat=stat,
            period=period,
        ),
    )
