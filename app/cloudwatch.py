"""Publishes the scaling signal to CloudWatch every period, as 1-second-resolution metrics.

`OngoingRequests` (requests in flight at this gateway) and `QueueDepth` (vLLM's waiting
requests), dimensioned by AutoScalingGroupName so that the alarm's Average across
instances reads "ongoing requests per instance". `OngoingRequests` is sampled every second
and sent once a period as a statistic set (SampleCount, Sum, Minimum, Maximum): its
Average is the period's, not one instant's, and its Maximum is the most requests in flight
at any moment of the period (admission keeps the peak between samples), so a short burst
is never missed. A failure is logged and retried later with back-off; it never touches
serving. While the instance is not in service (a warm-pool instance being prepared, say:
`should_publish` says so) nothing is sent, since its zeros would pull the group's average
down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.backoff import backoff_delay_s
from app.metrics import GatewayMetrics
from contract import DEMAND_METRIC, GROUP_DIMENSION, QUEUE_DEPTH_METRIC

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef, StatisticSetTypeDef

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0
# A timer may fire a hair before its deadline: not a reason for one more sample.
EARLY_WAKE_S = 0.001


@dataclass
class PeriodSamples:
    """One period of `OngoingRequests`: its samples, and the peak seen between them."""

    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, value: float, peak: float | None = None) -> None:
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value, value if peak is None else peak)

    def statistic_set(self) -> StatisticSetTypeDef:
        return {
            "SampleCount": float(self.count),
            "Sum": self.total,
            "Minimum": self.minimum,
            "Maximum": self.maximum,
        }


def scaling_datapoints(
    ongoing_requests: PeriodSamples,
    queue_depth: float | None,
    autoscaling_group_name: str,
    timestamp: dt.datetime,
) -> list[MetricDatumTypeDef]:
    dimensions = [{"Name": GROUP_DIMENSION, "Value": autoscaling_group_name}]
    data: list[MetricDatumTypeDef] = [
        {
            "MetricName": DEMAND_METRIC,
            "Dimensions": dimensions,  # type: ignore[typeddict-item]
            "Timestamp": timestamp,
            "StatisticValues": ongoing_requests.statistic_set(),
            "Unit": "Count",
            "StorageResolution": 1,
        }
    ]
    if queue_depth is not None:
        data.append(
            {
                "MetricName": QUEUE_DEPTH_METRIC,
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
        read_ongoing_peak: Callable[[], float] | None = None,
        should_publish: Callable[[], bool] = lambda: True,
        sample_interval_s: float = SAMPLE_INTERVAL_S,
        max_backoff_s: float = 300.0,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._namespace = namespace
        self._group = autoscaling_group_name
        self._interval_s = interval_s
        self._read_ongoing = read_ongoing
        self._read_ongoing_peak = read_ongoing_peak
        self._read_queue_depth = read_queue_depth
        self._should_publish = should_publish
        self._sample_interval_s = min(sample_interval_s, interval_s)
        self._max_backoff_s = max_backoff_s
        self._samples = PeriodSamples()
        self.failures = 0
        self.holding = False

    def sample(self) -> None:
        """Take one sample of the requests in flight (and the peak since the last one)."""
        self._sample_into(self._samples)

    def _sample_into(self, samples: PeriodSamples) -> None:
        peak = self._read_ongoing_peak() if self._read_ongoing_peak is not None else None
        samples.add(float(self._read_ongoing()), peak)

    async def publish_once(self) -> bool:
        """Send the period's datapoints; False if nothing was sent (held back or failed).

        The period's samples are spent either way: a period that could not be sent is
        lost rather than folded into the next one.
        """
        samples, self._samples = self._samples, PeriodSamples()
        holding = not self._should_publish()
        if holding != self.holding:
            self.holding = holding
            log.info(
                "scaling signal %s",
                "held back: this instance is not in service" if holding else "published again",
            )
        if holding:
            return False
        if not samples.count:  # called before any sample of the period was taken
            self._sample_into(samples)
        data = scaling_datapoints(
            samples,
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
        return backoff_delay_s(self._interval_s, self.failures, self._max_backoff_s)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        publish_at = loop.time() + self.next_delay_s()
        while True:
            await asyncio.sleep(max(0.0, min(self._sample_interval_s, publish_at - loop.time())))
            self.sample()
            if loop.time() >= publish_at - EARLY_WAKE_S:
                await self.publish_once()
                publish_at = loop.time() + self.next_delay_s()
