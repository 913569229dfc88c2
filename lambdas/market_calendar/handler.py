"""Lambda entry point: parse the event and the environment, run `reconcile`, emit metrics."""

from __future__ import annotations

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
from lambdas.market_calendar.reconcile import reconcile
from lambdas.market_calendar.settings import CalendarRequest, CalendarSettings

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient

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


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, object]:
    try:
        request = CalendarRequest.from_event(event)
        settings = CalendarSettings.from_env(os.environ)
        summary = reconcile(_autoscaling_client(), settings, request, now=_utcnow())
    except Exception:
        metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
        logger.exception("calendar run failed; the next run retries from what is there")
        raise
    metrics.add_metric(name="ActionsCreated", unit=MetricUnit.Count, value=len(summary.created))
    metrics.add_metric(name="ActionsUpdated", unit=MetricUnit.Count, value=len(summary.updated))
    metrics.add_metric(name="ActionsDeleted", unit=MetricUnit.Count, value=len(summary.deleted))
    metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=0)
    _event_calendar_metrics(settings, summary.start)
    result = summary.as_json()
    logger.info("calendar run done", extra={"summary": result})
    return result
