"""The calendar Lambda in the stack: function, least-privilege roles, daily schedule, alarms.

The function (lambdas/market_calendar/) keeps the group's one-off scheduled actions equal
to the NYSE schedule; this construct deploys it from its reproducible zip.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from cdktn import AssetType, TerraformAsset
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.lambda_function import (
    LambdaFunction,
    LambdaFunctionDeadLetterConfig,
    LambdaFunctionEnvironment,
    LambdaFunctionLoggingConfig,
)
from cdktn_provider_aws.lambda_function_event_invoke_config import (
    LambdaFunctionEventInvokeConfig,
)
from cdktn_provider_aws.scheduler_schedule import (
    SchedulerSchedule,
    SchedulerScheduleFlexibleTimeWindow,
    SchedulerScheduleTarget,
    SchedulerScheduleTargetDeadLetterConfig,
    SchedulerScheduleTargetRetryPolicy,
)
from cdktn_provider_aws.sqs_queue import SqsQueue
from constructs import Construct

from infra.lambda_package import LambdaPackage, build
from infra.policy.config import FLEET_POLICY
from infra.policy.errors import PolicyError
from infra.policy.fleet import FleetPolicy
from infra.policy.loader import policy_as_mapping

FUNCTION = "market_calendar"
# 05:00 in the exchange's time zone, every day: after local midnight, so "today" is the
# trading day it prepares, and nearly four hours before the 08:50 pre-warm, so retries
# (up to an hour) and a person answering the error alarm both fit before the open.
DAILY_AT = "cron(0 5 * * ? *)"
# Scheduler retries a failed delivery (throttling, service errors) for up to an hour.
RETRY_ATTEMPTS = 5
RETRY_MAX_AGE_S = 3600
# The function itself is retried by Lambda's asynchronous invocation, twice, then the event
# goes to the same dead-letter queue.
FUNCTION_RETRIES = 2
DLQ_RETENTION_S = 14 * 24 * 3600  # SQS maximum: time to read what failed over a holiday
TIMEOUT_S = 60  # a run is a handful of Auto Scaling calls; imports take ~1 s
MEMORY_MB = 256
# Lambda's environment is limited to 4 KB in all; the policy must leave room for the rest.
MAX_POLICY_ENV_BYTES = 3500
# This construct's alarms, without the fleet's name in front (`<fleet>-market-calendar-errors`);
# `observability.ALL_ALARMS` lists them with the fleet's own.
ERRORS_ALARM = "market-calendar-errors"
DEAD_LETTERS_ALARM = "market-calendar-dead-letters"
CALENDAR_ALARMS = (ERRORS_ALARM, DEAD_LETTERS_ALARM)


@dataclass(frozen=True)
class MarketCalendarProps:
    name: str  # the fleet's name, e.g. finsight-serving-prod
    account_id: str
    autoscaling_group_name: str
    autoscaling_group_arn: str
    alarm_topic_arn: str
    policy: FleetPolicy
    log_retention_days: int
    metrics_namespace: str  # the stack's one CloudWatch namespace
    horizon_days: int = 7


@functools.cache
def _package() -> LambdaPackage:
    """The function's zip, made (or found in the build cache) once per synth: every
    environment deploys the same bytes, and checking the cache hashes each file again."""
    return build(FUNCTION)


def policy_environment(policy: FleetPolicy) -> str:
    """The policy as the function reads it (FLEET_POLICY_JSON), refused if it cannot fit."""
    mapping = policy_as_mapping(policy)
    # The zip carries the published event calendar (FLEET_POLICY.events) and the function
    # adds the environment's `events` to it: only the policy's own ones travel here.
    mapping["events"] = [
        event
        for event, parsed in zip(mapping["events"], policy.events, strict=True)
        if parsed not in FLEET_POLICY.events
    ]
    text = json.dumps(mapping, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_POLICY_ENV_BYTES:
        raise PolicyError(
            "special_days",
            f"the policy takes {len(text.encode())} bytes in the calendar function's "
            f"environment, over {MAX_POLICY_ENV_BYTES}; remove past special days",
        )
    return text


class MarketCalendar(Construct):
    package: LambdaPackage
    function_name: str
    function_arn: str
    role_name: str
    dead_letter_queue_arn: str
    schedule_name: str
    # Short name (CALENDAR_ALARMS) -> deployed name.
    alarm_names: dict[str, str]

    def __init__(self, scope: Construct, id_: str, props: MarketCalendarProps) -> None:
        super().__init__(scope, id_)
        function_name = f"{props.name}-market-calendar"
        self.function_name = function_name
        self.package = _package()
        code = TerraformAsset(self, "code", path=str(self.package.path), type=AssetType.FILE)

        # Created before the function, so Lambda never creates it without a retention.
        log_group = CloudwatchLogGroup(
            self,
            "logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=props.log_retention_days,
            # Powertools' metrics are embedded metric format: Standard class only (see
            # observability.LOG_GROUP_CLASS).
            log_group_class="STANDARD",
        )
        queue = SqsQueue(
            self,
            "dead-letter",
            name=f"{function_name}-dlq",
            sqs_managed_sse_enabled=True,
            message_retention_seconds=DLQ_RETENTION_S,
        )
        self.dead_letter_queue_arn = queue.arn

        role = IamRole(
            self,
            "role",
            name=f"{function_name}-function",
            assume_role_policy=_trust("lambda.amazonaws.com", props.account_id),
        )
        self.role_name = role.name
        IamRolePolicy(
            self,
            "permissions",
            name="market-calendar",
            role=role.id,
            policy=json.dumps(
                _function_policy(props.autoscaling_group_arn, log_group.arn, queue.arn)
            ),
        )

        function = LambdaFunction(
            self,
            "function",
            function_name=function_name,
            description="Keeps the fleet's one-off scheduled actions equal to the NYSE calendar",
            role=role.arn,
            filename=code.path,
            source_code_hash=self.package.sha256_base64,
            handler=self.package.handler,
            runtime=self.package.runtime,
            architectures=["x86_64"],
            memory_size=MEMORY_MB,
            timeout=TIMEOUT_S,
            # One run at a time: two concurrent runs would race on the same actions.
            reserved_concurrent_executions=1,
            environment=LambdaFunctionEnvironment(
                variables={
                    "ASG_NAME": props.autoscaling_group_name,
                    "HORIZON_DAYS": str(props.horizon_days),
                    "FLEET_POLICY_JSON": policy_environment(props.policy),
                    "POWERTOOLS_SERVICE_NAME": "market-calendar",
                    "POWERTOOLS_METRICS_NAMESPACE": props.metrics_namespace,
                    "POWERTOOLS_LOG_LEVEL": "INFO",
                }
            ),
            logging_config=LambdaFunctionLoggingConfig(log_format="Text", log_group=log_group.name),
            dead_letter_config=LambdaFunctionDeadLetterConfig(target_arn=queue.arn),
            depends_on=[log_group],
        )
        self.function_arn = function.arn
        LambdaFunctionEventInvokeConfig(
            self,
            "async-retries",
            function_name=function.function_name,
            maximum_retry_attempts=FUNCTION_RETRIES,
            maximum_event_age_in_seconds=RETRY_MAX_AGE_S,
        )

        scheduler_role = IamRole(
            self,
            "scheduler-role",
            name=f"{function_name}-scheduler",
            assume_role_policy=_trust("scheduler.amazonaws.com", props.account_id),
        )
        IamRolePolicy(
            self,
            "scheduler-permissions",
            name="invoke-market-calendar",
            role=scheduler_role.id,
            policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "InvokeTheCalendarFunction",
                            "Effect": "Allow",
                            "Action": "lambda:InvokeFunction",
                            "Resource": function.arn,
                        },
                        {
                            "Sid": "DeadLetter",
                            "Effect": "Allow",
                            "Action": "sqs:SendMessage",
                            "Resource": queue.arn,
                        },
                    ],
                }
            ),
        )
        schedule = SchedulerSchedule(
            self,
            "daily",
            name=function_name,
            description="Daily run of the calendar function, before the pre-warm",
            schedule_expression=DAILY_AT,
            schedule_expression_timezone=props.policy.schedule.time_zone,
            flexible_time_window=SchedulerScheduleFlexibleTimeWindow(mode="OFF"),
            target=SchedulerScheduleTarget(
                arn=function.arn,
                role_arn=scheduler_role.arn,
                input="{}",
                retry_policy=SchedulerScheduleTargetRetryPolicy(
                    maximum_retry_attempts=RETRY_ATTEMPTS,
                    maximum_event_age_in_seconds=RETRY_MAX_AGE_S,
                ),
                dead_letter_config=SchedulerScheduleTargetDeadLetterConfig(arn=queue.arn),
            ),
        )
        self.schedule_name = schedule.name

        self.alarm_names = {alarm: f"{props.name}-{alarm}" for alarm in CALENDAR_ALARMS}
        CloudwatchMetricAlarm(
            self,
            "errors",
            alarm_name=self.alarm_names[ERRORS_ALARM],
            alarm_description=(
                "The calendar function failed: holidays and early closes may not be applied "
                "(README: Market calendar Lambda; invoke it again once fixed)"
            ),
            namespace="AWS/Lambda",
            metric_name="Errors",
            dimensions={"FunctionName": function.function_name},
            statistic="Sum",
            period=300,
            evaluation_periods=1,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",  # it runs once a day: no data is normal
            alarm_actions=[props.alarm_topic_arn],
            ok_actions=[props.alarm_topic_arn],
        )
        CloudwatchMetricAlarm(
            self,
            "dead-letters",
            alarm_name=self.alarm_names[DEAD_LETTERS_ALARM],
            alarm_description=(
                "A calendar run was given up after its retries and sits in the dead-letter "
                "queue: invoke the function by hand once the cause is fixed"
            ),
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": queue.name},
            statistic="Maximum",
            period=300,
            evaluation_periods=1,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[props.alarm_topic_arn],
        )


def _trust(service: str, account_id: str) -> str:
    # The source-account condition keeps another account's service resource from using it.
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                }
            ],
        }
    )


def _function_policy(group_arn: str, log_group_arn: str, queue_arn: str) -> dict[str, object]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                # Writes only on the fleet's own group: the resource is its exact ARN.
                "Sid": "ManageOwnGroupScheduledActions",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:PutScheduledUpdateGroupAction",
                    "autoscaling:DeleteScheduledAction",
                ],
                "Resource": group_arn,
            },
            {
                # Auto Scaling's Describe* calls support no resource-level permissions: AWS
                # accepts only "*" for them. They read; every write is confined above.
                "Sid": "DescribeNeedsWildcard",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeScheduledActions",
                ],
                "Resource": "*",
            },
            {
                # The learned profile reads the fleet's Demand history; GetMetricData has
                # no resource-level permissions (AWS accepts only "*").
                "Sid": "ReadDemandHistory",
                "Effect": "Allow",
                "Action": ["cloudwatch:GetMetricData"],
                "Resource": "*",
            },
            {
                "Sid": "OwnLogGroup",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group_arn}:*",
            },
            {
                "Sid": "DeadLetter",
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
            },
        ],
    }
