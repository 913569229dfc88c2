"""Publishes the scaling signal to CloudWatch every period, as 1-second-resolution metrics.

`OngoingRequests` (requests in flight at this gateway) and `QueueDepth` (vLLM's waiting
requests), dimensioned by AutoScalingGroupName so that the alarm's Average across
instances reads "ongoing requests per instance". A failure is logged and retried later
with back-off; it never touches serving. While the instance is not in service (a warm-pool
instance being prepared, say: `should_publish` says so) nothing is sent, since its zeros
would pull the group's average down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.metrics import GatewayMetrics

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef

log = logging.getLogger(__name__)


def scaling_datapoints(
    ongoing_requests: float,
    queue_depth: float | None,
    autoscaling_group_name: str,
    timestamp: dt.datetime,
) -> list[MetricDatumTypeDef]:
    dimensions = [{"Name": "AutoScalingGroupName", "Value": autoscaling_group_name}]
    data: list[MetricDatumTypeDef] = [
        {
            "MetricName": "OngoingRequests",
            "Dimensions": dimensions,  # type: ignore[typeddict-item]
            "Timestamp": timestamp,
            "Value": float(ongoing_requests),
            "Unit": "Count",
            "StorageResolution": 1,
        }
    ]
    if queue_depth is not None:
        data.append(
            {
                "MetricName": "QueueDepth",
                "Dimensions": dimensions,  # type: ignore[typeddict-item]
                "Timestamp": timestamp,
                "Value": float(queue_depth),
                "Unit": "Count",
                "StorageResolution": 1,
            }
        )
    return data


class CloudWatchPublisher:
    def __init__(
        self,
        client: CloudWatchClient,
        metrics: GatewayMetrics,
        *,
        namespace: str,
        autoscaling_group_name: str,
        interval_s: float,
        read_ongoing: Callable[[], float],
        read_queue_depth: Callable[[], float | None],
        should_publish: Callable[[], bool] = lambda: True,
        max_backoff_s: float = 300.0,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._namespace = namespace
        self._group = autoscaling_group_name
        self._interval_s = interval_s
        self._read_ongoing = read_ongoing
        self._read_queue_depth = read_queue_depth
        self._should_publish = should_publish
        self._max_backoff_s = max_backoff_s
        self.failures = 0
        self.holding = False

    async def publish_once(self) -> bool:
        """Send one period's datapoints; False if nothing was sent (held back or failed)."""
        holding = not self._should_publish()
        if holding != self.holding:
            self.holding = holding
            log.info(
                "scaling signal %s",
                "held back: this instance is not in service" if holding else "published again",
            )
        if holding:
            return False
        data = scaling_datapoints(
            self._read_ongoing(),
            self._read_queue_depth(),
            self._group,
            dt.datetime.now(dt.UTC),
        )
        try:
            await asyncio.to_thread(
                self._client.put_metric_data, Namespace=self._namespace, MetricData=data
            )
        except Exception as error:  # botocore errors of every kind: keep serving
            self.failures += 1
            self._metrics.cloudwatch_errors.inc()
            log.warning("publishing to CloudWatch failed (%d in a row): %s", self.failures, error)
            return False
        self.failures = 0
        return True

    def next_delay_s(self) -> float:
        if not self.failures:
            return self._interval_s
        backoff: float = self._interval_s * 2.0**self.failures
        return min(backoff, self._max_backoff_s)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.next_delay_s())
            await self.publish_once()
