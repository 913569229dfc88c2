"""The fleet's demand history from CloudWatch (GetMetricData, 1-minute) and the learned
pre-warm windows computed from it for the days the calendar plans."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contract import DEMAND_METRIC, GROUP_DIMENSION
from infra.policy import FleetPolicy
from infra.policy.events import MarketEvent
from infra.policy.profile import MINUTES_PER_DAY, HistoryTooShortError, learned_windows

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

PERIOD_S = 60
UTC = dt.UTC


@dataclass(frozen=True)
class Learned:
    """The windows learned for the planned days, or why learning was skipped."""

    windows: tuple[MarketEvent, ...] = ()
    skipped: str | None = None
    history_days: int = 0


def demand_history(
    client: CloudWatchClient,
    namespace: str,
    group: str,
    policy: FleetPolicy,
    start: dt.datetime,
    end: dt.datetime,
) -> dict[dt.date, list[float]]:
    """Fleet demand (requests in flight, summed over instances) per local date and minute.

    Each gateway publishes `Demand` every `metric_period_s`; the 1-minute Sum over the
    group is then (60 / metric_period_s) x the fleet's mean requests in flight. Minutes
    without data count as 0; a local date appears only if it has any datapoint.
    """
    samples_per_minute = PERIOD_S / policy.default.metric_period_s
    zone = policy.schedule.zone
    days: dict[dt.date, list[float]] = defaultdict(lambda: [0.0] * MINUTES_PER_DAY)
    query: dict[str, Any] = {
        "MetricDataQueries": [
            {
                "Id": "demand",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": DEMAND_METRIC,
                        "Dimensions": [{"Name": GROUP_DIMENSION, "Value": group}],
                    },
                    "Period": PERIOD_S,
                    "Stat": "Sum",
                },
                "ReturnData": True,
            }
        ],
        "StartTime": start,
        "EndTime": end,
        "ScanBy": "TimestampAscending",
    }
    while True:
        page = client.get_metric_data(**query)
        for result in page["MetricDataResults"]:
            for at, value in zip(result["Timestamps"], result["Values"], strict=True):
                local = at.astimezone(zone)
                days[local.date()][local.hour * 60 + local.minute] = value / samples_per_minute
        token = page.get("NextToken")
        if not token:
            return dict(days)
        query["NextToken"] = token


def learn(
    client: CloudWatchClient,
    namespace: str,
    group: str,
    policy: FleetPolicy,
    first: dt.date,
    days: int,
    weeks: int,
) -> Learned:
    """Windows for `days` local dates from `first`, from `weeks` weeks of history before it."""
    zone = policy.schedule.zone
    end = dt.datetime.combine(first, dt.time(0), zone)
    history = demand_history(client, namespace, group, policy, end - dt.timedelta(weeks=weeks), end)
    windows: list[MarketEvent] = []
    try:
        for offset in range(days):
            windows += learned_windows(policy, history, first + dt.timedelta(days=offset))
    except HistoryTooShortError as error:
        return Learned(skipped=str(error), history_days=len(history))
    return Learned(windows=tuple(windows), history_days=len(history))
