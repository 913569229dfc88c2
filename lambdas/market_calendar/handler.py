"""Lambda entry point: parse the event and the environment, run `reconcile`, emit metrics."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

# Named once for the gateways and this function; the zip carries infra/policy.
from infra.policy import event_data_warning
from infra.policy.aws_rules import METRICS_NAMESPACE
from infra.policy.events import event_data_end
from infra.policy.profile import with_learned
from lambdas.market_calendar.history import Learned, learn
from lambdas.market_calendar.reconcile import reconcile
from lambdas.market_calendar.settings import CalendarRequest, CalendarSettings

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_cloudwatch import CloudWatchClient

SERVICE = "market-calendar"

# Powertools' documented pattern: one Logger and one Metrics per function, flushed by the
# decorators; creating them reads only POWERTOOLS_* variables, no project configuration.
logger = Logger(service=SERVICE)
# The stack sets the namespace to its own (settings.cloudwatch_namespace); the default is
# for a run outside the stack.
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or METRICS_NAMESPACE,
    service=SERVICE,
)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _autoscaling_client() -> AutoScalingClient:
    # The Lambda runtime provides boto3; importing it here keeps the zip free of the SDK
    # (botocore alone is tens of MB) and the module importable where it is absent.
    import boto3

    return boto3.client("autoscaling")


def _event_calendar_metrics(settings: CalendarSettings, today: dt.date) -> None:
    # An alarm on EventDataDaysLeft < 60 tells the owners to add next year's dates.
    end = event_data_end(settings.policy.events)
    days_left = (end - today).days if end else 0
    metrics.add_metric(name="EventDataDaysLeft", unit=MetricUnit.Count, value=max(days_left, 0))
    warning = event_data_warning(settings.policy.events, today)
    if warning:
        logger.warning(warning)


def _cloudwatch_client() -> CloudWatchClient:
    import boto3

    return boto3.client("cloudwatch")


def _learn(settings: CalendarSettings, request: CalendarRequest, now: dt.datetime) -> Learned:
    """The learned profile's windows for the planned days, or why they were skipped."""
    if settings.profile_weeks == 0:
        return Learned(skipped="PROFILE_WEEKS is 0")
    start = request.date or now.astimezone(settings.policy.schedule.zone).date()
    return learn(
        _cloudwatch_client(),
        metrics.namespace or METRICS_NAMESPACE,
        settings.asg_name,
        settings.policy,
        start,
        settings.horizon_days,
        settings.profile_weeks,
    )


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, object]:
    try:
        request = CalendarRequest.from_event(event)
        settings = CalendarSettings.from_env(os.environ)
        now = _utcnow()
        learned = _learn(settings, request, now)
        planned = dataclasses.replace(
            settings, policy=with_learned(settings.policy, learned.windows)
        )
        summary = reconcile(_autoscaling_client(), planned, request, now=now)
    except Exception:
        metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
        logger.exception("calendar run failed; the next run retries from what is there")
        raise
    metrics.add_metric(name="ActionsCreated", unit=MetricUnit.Count, value=len(summary.created))
    metrics.add_metric(name="ActionsUpdated", unit=MetricUnit.Count, value=len(summary.updated))
    metrics.add_metric(name="ActionsDeleted", unit=MetricUnit.Count, value=len(summary.deleted))
    metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=0)
    _event_calendar_metrics(settings, summary.start)
    metrics.add_metric(name="ProfileWindows", unit=MetricUnit.Count, value=len(learned.windows))
    metrics.add_metric(
        name="ProfileSkipped", unit=MetricUnit.Count, value=1 if learned.skipped else 0
    )
    if learned.skipped:
        logger.info(
            "learned profile skipped: %s (%d days of history)",
            learned.skipped,
            learned.history_days,
        )
    result = summary.as_json()
    logger.info("calendar run done", extra={"summary": result})
    return result
