"""Publishes the scaling signal to CloudWatch every period, as 1-second-resolution metrics.

Dimensioned by AutoScalingGroupName, so that an alarm's Average across instances reads
"per instance":
- `Demand`: sequences running plus queued at this gateway, sampled every second and sent
  once a period as a statistic set (SampleCount, Sum, Minimum, Maximum). Its Average is
  the period's, not one instant's, and its Maximum is the highest demand at any moment of
  the period (admission keeps the peak between samples), so a short burst is never missed.
  No cap hides it: the queue lets it exceed what the instance runs.
- `QueueDepth`: sequences queued here plus vLLM's own waiting requests, when last read.
- `Shed`: requests refused in the period (a Sum; 0 when none).
A failure is logged and retried later with back-off; it never touches serving. An instance
that takes no traffic sends nothing, since its zeros would pull the group's average down:
not yet ready, draining, or not in service (a warm-pool instance being prepared); the
`hold_reason` callable says which, and each change is logged once.
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
from contract import DEMAND_METRIC, GROUP_DIMENSION, QUEUE_DEPTH_METRIC, SHED_METRIC

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef, StatisticSetTypeDef

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0
# A timer may fire a hair before its deadline: not a reason for one more sample.
EARLY_WAKE_S = 0.001


@dataclass
class PeriodSamples:
    """One period of `Demand`: its samples, and the peak seen between them."""

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
    demand: PeriodSamples,
    queue_depth: float,
    shed: int,
    autoscaling_group_name: str,
    timestamp: dt.datetime,
) -> list[MetricDatumTypeDef]:
    dimensions = [{"Name": GROUP_DIMENSION, "Value": autoscaling_group_name}]
    data: list[MetricDatumTypeDef] = [
        {
            "MetricName": DEMAND_METRIC,
            "Dimensions": dimensions,  # type: ignore[typeddict-item]
            "Timestamp": timestamp,
            "StatisticValues": demand.statistic_set(),
            "Unit": "Count",
            "StorageResolution": 1,
        }
    ]
    for name, value in ((QUEUE_DEPTH_METRIC, float(queue_depth)), (SHED_METRIC, float(shed))):
        data.append(
            {
                "MetricName": name,
                "Dimensions": dimensions,  # type: ignore[typeddict-item]
                "Timestamp": timestamp,
                "Value": value,
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
        read_demand: Callable[[], float],
        read_queue_depth: Callable[[], float],
        read_demand_peak: Callable[[], float] | None = None,
        read_refused_total: Callable[[], int] = lambda: 0,
        hold_reason: Callable[[], str | None] = lambda: None,
        sample_interval_s: float = SAMPLE_INTERVAL_S,
        max_backoff_s: float = 300.0,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._namespace = namespace
        self._group = autoscaling_group_name
        self._interval_s = interval_s
        self._read_demand = read_demand
        self._read_demand_peak = read_demand_peak
        self._read_queue_depth = read_queue_depth
        self._read_refused_total = read_refused_total
        self._hold_reason = hold_reason
        self._sample_interval_s = min(sample_interval_s, interval_s)
        self._max_backoff_s = max_backoff_s
        self._samples = PeriodSamples()
        self.failures = 0
        self.holding: str | None = None  # why nothing is published now, if nothing is
        self._refused_before = read_refused_total()

    def sample(self) -> None:
        """Take one sample of the demand (and the peak since the last one)."""
        self._sample_into(self._samples)

    def _sample_into(self, samples: PeriodSamples) -> None:
        peak = self._read_demand_peak() if self._read_demand_peak is not None else None
        samples.add(float(self._read_demand()), peak)

    async def publish_once(self) -> bool:
        """Send the period's datapoints; False if nothing was sent (held back or failed).

        The period's samples are spent either way: a period that could not be sent is
        lost rather than folded into the next one.
        """
        samples, self._samples = self._samples, PeriodSamples()
        # Refusals while held back belong to no published period.
        refused_total = self._read_refused_total()
        shed, self._refused_before = refused_total - self._refused_before, refused_total
        holding = self._hold_reason()
        if holding != self.holding:
            # Logged on a change of reason only: a period's repeat says nothing new.
            self.holding = holding
            if holding:
                log.info("scaling signal held back: %s", holding)
            else:
                log.info("scaling signal published")
        if holding:
            return False
        if not samples.count:  # called before any sample of the period was taken
            self._sample_into(samples)
        data = scaling_datapoints(
            samples,
            self._read_queue_depth(),
            shed,
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
