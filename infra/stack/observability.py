"""What people see: the alarms and their SNS topics (pages, tickets), the dashboard, the
log groups.

This construct's metric alarms are listed once in `ALARMS`; the three scaling alarms are
named here too, though their action is a scaling policy. The SLO's burn-rate alarms
(`slo_alarms.py`) add one composite per window (`SLO_ALARMS`), per tenant the SLO names
too, each over two inputs without actions. `ALL_ALARMS` adds the calendar function's two:
every alarm name with a runbook entry (a tenant's burn-rate alarm shares the fleet-wide
one's entry; the inputs are described in it).
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

from infra.policy.aws_rules import (
    DEMAND_METRIC,
    GROUP_DIMENSION,
    GROUP_METRICS_NAMESPACE,
    ScalingRules,
)
from infra.policy.slo import Slo
from infra.stack.dashboard import ALB_NAMESPACE, DashboardProps, dashboard_body
from infra.stack.fleet import LOG_GROUP_PREFIX
from infra.stack.market_calendar import CALENDAR_ALARMS
from infra.stack.scaling import rule_alarm_config
from infra.stack.slo_alarms import SLO_ALARMS, SloAlarms, SloAlarmsProps

# Alarm names, without the fleet's name in front (see `alarm_name`).
SCALE_OUT_ALARM = "demand-high"
SCALE_IN_ALARM = "demand-low"
QUEUE_DEPTH_ALARM = "queue-depth-high"
METRIC_MISSING_ALARM = "scaling-metric-missing"
# The ALB's p99 TargetResponseTime: time to the response headers, which for a stream comes
# before its first token. The SLO's burn-rate alarms judge what tenants feel.
ALB_RESPONSE_TIME_ALARM = "alb-p99-response-time-high"
ERROR_RATE_ALARM = "5xx-rate-high"
UNHEALTHY_HOST_ALARM = "unhealthy-host"
NO_HEALTHY_HOST_ALARM = "no-healthy-hosts"
SATURATED_ALARM = "at-max-capacity-queue-high"
SCALING_ALARMS = (SCALE_OUT_ALARM, SCALE_IN_ALARM, QUEUE_DEPTH_ALARM)
PAGING_ALARMS = (
    METRIC_MISSING_ALARM,
    ALB_RESPONSE_TIME_ALARM,
    ERROR_RATE_ALARM,
    UNHEALTHY_HOST_ALARM,
    NO_HEALTHY_HOST_ALARM,
    SATURATED_ALARM,
)
# This construct's metric alarms with actions.
ALARMS = SCALING_ALARMS + PAGING_ALARMS
# Every runbook entry of a stack with the calendar function (the default); without it,
# `ALARMS + SLO_ALARMS`.
ALL_ALARMS = ALARMS + SLO_ALARMS + CALENDAR_ALARMS

LOG_GROUPS = (f"{LOG_GROUP_PREFIX}/gateway", f"{LOG_GROUP_PREFIX}/vllm")
# CloudWatch Logs extracts embedded-metric-format metrics (the gateway's per-request
# metrics) only in the Standard class: "The Standard log class supports all CloudWatch Logs
# features. The Infrequent Access log class supports a subset" (CreateLogGroup,
# logGroupClass; the feature table is the CloudWatch Logs guide's "Log classes" page), and
# AWS introduced Infrequent Access for logs that need no "Live Tail, metric extraction,
# alarms, or data protection". The class "can't be changed after a log group is created",
# so it is written here rather than left to the default.
LOG_GROUP_CLASS = "STANDARD"


def alarm_name(fleet_name: str, alarm: str) -> str:
    """The deployed name of an alarm: `finsight-serving-prod-alb-p99-response-time-high`."""
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
    slo: Slo
    alb_response_time_p99_s: float
    error_rate_5xx_percent: float
    alarm_email: str | None
    ticket_email: str | None
    log_retention_days: int


def alarm_topic_key_policy(props: ObservabilityProps) -> dict[str, Any]:
    """The alarm topics' key policy: the account administers it; only this stack's alarms
    (every alarm the stack deploys, metric or composite, is named `<fleet>-...`, and both
    kinds have the ARN `arn:aws:cloudwatch:<region>:<account>:alarm:<name>`) may use it to
    publish.

    CloudWatch alarms are the topics' only publishers (the calendar function's failures reach
    the page topic through its own alarms, not by publishing).
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
    alarm_topic_arn: str  # pages
    ticket_topic_arn: str  # tickets: the slow burn-rate alarms
    alarm_topic_key_arn: str
    dashboard_name: str
    # Short name (`ALARMS`) -> deployed name, for this construct's metric alarms.
    alarm_names: dict[str, str]
    slo_alarms: SloAlarms

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
                log_group_class=LOG_GROUP_CLASS,
            )

        # A key of our own: CloudWatch alarms cannot publish to a topic encrypted with the
        # AWS-managed alias/aws/sns, whose policy cannot grant them the key.
        key = KmsKey(
            self,
            "alarm-topic-key",
            description=f"{props.name}: encrypts the alarm and ticket topics",
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
        # Tickets: a budget burning slowly is work for the day, not a page at night.
        tickets = SnsTopic(
            self,
            "tickets",
            name=f"{props.name}-tickets",
            kms_master_key_id=key.arn,
        )
        self.ticket_topic_arn = tickets.arn
        if props.ticket_email is not None:
            SnsTopicSubscription(
                self,
                "ticket-email",
                topic_arn=tickets.arn,
                protocol="email",
                endpoint=props.ticket_email,
            )
        self._alarms()
        self.slo_alarms = SloAlarms(
            self,
            "slo",
            SloAlarmsProps(
                name=props.name,
                namespace=props.namespace,
                autoscaling_group_name=props.autoscaling_group_name,
                slo=props.slo,
                page_topic_arn=self.alarm_topic_arn,
                ticket_topic_arn=self.ticket_topic_arn,
            ),
        )
        body = dashboard_body(
            DashboardProps(
                region=props.region,
                namespace=props.namespace,
                autoscaling_group_name=props.autoscaling_group_name,
                load_balancer_arn_suffix=props.load_balancer_arn_suffix,
                target_group_arn_suffix=props.target_group_arn_suffix,
                rules=props.rules,
                slo=props.slo,
                alb_response_time_p99_s=props.alb_response_time_p99_s,
                gateway_log_group=LOG_GROUPS[0],
            )
        )
        dashboard = CloudwatchDashboard(
            self,
            "dashboard",
            dashboard_name=props.name,
            dashboard_body=json.dumps(body),
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
            ALB_RESPONSE_TIME_ALARM,
            f"ALB p99 TargetResponseTime (to the response headers; a stream's first token "
            f"comes later) above {props.alb_response_time_p99_s:g} s for 5 min: the targets "
            "are slow to answer at all",
            namespace=ALB_NAMESPACE,
            metric_name="TargetResponseTime",
            dimensions=target_group,
            extended_statistic="p99",
            period=60,
            evaluation_periods=5,
            datapoints_to_alarm=5,
            threshold=props.alb_response_time_p99_s,
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
