"""The scaling signal reaches CloudWatch (moto), and its failures never touch serving."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from app.admission import Admission, Ticket
from app.cloudwatch import CloudWatchPublisher, PeriodSamples, scaling_datapoints
from app.fair_queue import QueueLimits
from app.main import Runtime
from app.metrics import GatewayMetrics
from app.tenants import Tenant
from tests.app.stack import chat_body, running_stack
from tests.fakes.fake_imds import FakeImds
from tests.fakes.fake_vllm import FakeVllmConfig

NAMESPACE = "FinSight/Test"
GROUP = "finsight-test-asg"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def datapoints(client: Any, name: str, period_s: int = 1) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    answer = client.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": "AutoScalingGroupName", "Value": GROUP}],
        StartTime=now - dt.timedelta(minutes=5),
        EndTime=now + dt.timedelta(minutes=1),
        Period=period_s,
        Statistics=["Average", "Maximum", "Minimum", "SampleCount", "Sum"],
    )
    points: list[dict[str, Any]] = answer["Datapoints"]
    return points


def test_datapoints_are_high_resolution_and_dimensioned_by_group() -> None:
    now = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)
    demand = PeriodSamples()
    for value, peak in ((6, 6), (8, 11), (7, 8)):
        demand.add(value, peak)
    data = scaling_datapoints(demand, 3.0, 0, GROUP, now)
    assert [d["MetricName"] for d in data] == ["Demand", "QueueDepth", "Shed"]
    assert all(d["StorageResolution"] == 1 for d in data)
    assert all(d["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": GROUP}] for d in data)
    # The period's samples as one statistic set; the peak between samples is its Maximum.
    assert data[0]["StatisticValues"] == {
        "SampleCount": 3.0, "Sum": 21.0, "Minimum": 6.0, "Maximum": 11.0,
    }  # fmt: skip
    assert "Value" not in data[0]
    assert data[1]["Value"] == 3.0
    # A period without refusals says so: 0, not a missing datapoint.
    assert data[2]["Value"] == 0.0


def test_publish_once_lands_in_cloudwatch_with_the_periods_refusals(aws_env: None) -> None:
    metrics = GatewayMetrics()
    metrics.record_shed("queue_full")  # before the publisher starts: in no period of its
    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        publisher = CloudWatchPublisher(
            client, metrics, namespace=NAMESPACE, autoscaling_group_name=GROUP,
            interval_s=10, read_demand=lambda: 12, read_queue_depth=lambda: 4.0,
            read_refused_total=lambda: metrics.refused_total,
        )  # fmt: skip
        for reason in ("queue_full", "tenant_queue_full", "queue_timeout", "client_gone"):
            metrics.record_shed(reason)
        assert asyncio.run(publisher.publish_once())
        demand = datapoints(client, "Demand")
        queue = datapoints(client, "QueueDepth")
        assert [p["Maximum"] for p in demand] == [12.0]
        assert [p["Maximum"] for p in queue] == [4.0]
        # Three refusals; a client that left on its own is no refusal.
        assert [p["Sum"] for p in datapoints(client, "Shed")] == [3.0]


def test_failures_are_counted_and_back_off() -> None:
    client = boto3.client(
        "cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    for _ in range(3):
        stubber.add_client_error("put_metric_data", "Throttling", http_status_code=400)
    stubber.add_response("put_metric_data", {})
    metrics = GatewayMetrics()
    publisher = CloudWatchPublisher(
        client, metrics, namespace=NAMESPACE, autoscaling_group_name=GROUP, interval_s=10,
        read_demand=lambda: 0, read_queue_depth=lambda: 0.0,
    )  # fmt: skip
    delays = []
    with stubber:
        for _ in range(4):
            asyncio.run(publisher.publish_once())
            delays.append(publisher.next_delay_s())
    assert delays == [20, 40, 80, 10]
    assert metrics.cloudwatch_errors._value.get() == 3
    stubber.assert_no_pending_responses()


class AlwaysThrottled:
    """A CloudWatch client whose every put fails, as during a long outage."""

    def __init__(self) -> None:
        self.calls = 0

    def put_metric_data(self, **_: Any) -> None:
        self.calls += 1
        raise RuntimeError("Throttling")


def test_the_publisher_outlives_5000_failures_in_a_row() -> None:
    async def scenario() -> None:
        client = AlwaysThrottled()
        publisher = CloudWatchPublisher(
            client, GatewayMetrics(), namespace=NAMESPACE, autoscaling_group_name=GROUP,
            interval_s=0.05, read_demand=lambda: 0, read_queue_depth=lambda: 0.0,
            max_backoff_s=0,  # no waiting: 5,000 rounds in about a second
        )  # type: ignore[arg-type]  # fmt: skip
        task = asyncio.ensure_future(publisher.run())
        async with asyncio.timeout(60):
            while publisher.failures < 5_000 and not task.done():
                await asyncio.sleep(0.01)
        assert not task.done(), task.exception()
        assert publisher.next_delay_s() == 0
        task.cancel()

    asyncio.run(scenario())


def test_the_running_gateway_publishes_its_demand(tmp_path: Path, aws_env: None) -> None:
    async def scenario(client: Any) -> None:
        runtime = Runtime(
            boto3_client=lambda service, region_name: client,
            install_signal_handlers=False,
            exit_process=lambda: None,
        )
        config = FakeVllmConfig(token_delay_ms=100, tokens=8)
        async with running_stack(
            tmp_path, fake_config=config, runtime=runtime, cloudwatch_enabled=True,
            autoscaling_group_name=GROUP, cloudwatch_namespace=NAMESPACE,
            cloudwatch_interval_s=0.1,
        ) as stack, stack.client() as http:  # fmt: skip
            slow = [
                asyncio.ensure_future(http.post("/v1/chat/completions", json=chat_body()))
                for _ in range(3)
            ]
            await asyncio.gather(*slow)
            await asyncio.sleep(0.3)

    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        asyncio.run(scenario(client))
        demand = datapoints(client, "Demand")
        assert sum(p["SampleCount"] for p in demand) >= 3
        assert max(p["Maximum"] for p in demand) == 3.0
        assert datapoints(client, "QueueDepth")
        assert sum(p["Sum"] for p in datapoints(client, "Shed")) == 0


def test_a_failing_cloudwatch_never_affects_serving(tmp_path: Path) -> None:
    client = boto3.client(
        "cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)  # no responses queued: every call fails
    stubber.activate()

    async def scenario() -> None:
        runtime = Runtime(
            boto3_client=lambda service, region_name: client,
            install_signal_handlers=False,
            exit_process=lambda: None,
        )
        async with running_stack(
            tmp_path, runtime=runtime, cloudwatch_enabled=True,
            autoscaling_group_name=GROUP, cloudwatch_interval_s=0.05,
        ) as stack, stack.client() as http:  # fmt: skip
            async with asyncio.timeout(3):
                while not stack.gateway.metrics.cloudwatch_errors._value.get():
                    await asyncio.sleep(0.02)
            for _ in range(3):
                response = await http.post("/v1/chat/completions", json=chat_body())
                assert response.status_code == 200
            assert (await http.get("/health/ready")).status_code == 200

    asyncio.run(scenario())


def test_nothing_is_published_while_held_back_and_each_change_is_logged_once(
    aws_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    hold: str | None = "not ready (starting)"
    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        publisher = CloudWatchPublisher(
            client, GatewayMetrics(), namespace=NAMESPACE, autoscaling_group_name=GROUP,
            interval_s=10, read_demand=lambda: 0, read_queue_depth=lambda: 0.0,
            hold_reason=lambda: hold,
        )  # fmt: skip
        with caplog.at_level("INFO", logger="app.cloudwatch"):
            for _ in range(3):
                assert not asyncio.run(publisher.publish_once())
            assert publisher.holding and publisher.failures == 0
            assert publisher.next_delay_s() == 10  # holding back is no failure: no back-off
            assert datapoints(client, "Demand") == []
            hold = None
            for _ in range(2):
                assert asyncio.run(publisher.publish_once())
            assert not publisher.holding
            hold = "not ready (draining: SIGTERM)"
            assert not asyncio.run(publisher.publish_once())
        assert len(datapoints(client, "Demand")) == 1
        assert [r.getMessage() for r in caplog.records if r.name == "app.cloudwatch"] == [
            "scaling signal held back: not ready (starting)",
            "scaling signal published",
            "scaling signal held back: not ready (draining: SIGTERM)",
        ]


def test_a_gateway_publishes_only_while_ready_and_not_draining(
    tmp_path: Path, aws_env: None
) -> None:
    async def scenario(client: Any) -> None:
        runtime = Runtime(
            boto3_client=lambda service, region_name: client,
            install_signal_handlers=False,
            exit_process=lambda: None,
        )
        # GIVEN a gateway whose vLLM fails the readiness probe
        async with running_stack(
            tmp_path, fake_config=FakeVllmConfig(mode="fail"), runtime=runtime,
            wait_ready=False, cloudwatch_enabled=True, autoscaling_group_name=GROUP,
            cloudwatch_namespace=NAMESPACE, cloudwatch_interval_s=0.05, drain_min_s=5.0,
        ) as stack:  # fmt: skip
            await asyncio.sleep(0.4)  # eight periods
            # THEN it publishes nothing while not ready
            assert datapoints(client, "Demand") == []
            # WHEN vLLM serves, THEN its datapoints arrive
            stack.fake.config.mode = "ok"
            await stack.wait_ready()
            async with asyncio.timeout(3):
                while not datapoints(client, "Demand"):
                    await asyncio.sleep(0.05)
            # WHEN it drains, THEN nothing more arrives (its drain lingers 5 s)
            stack.gateway.drainer.begin("test")
            await asyncio.sleep(0.1)
            sent = sum(p["SampleCount"] for p in datapoints(client, "Demand"))
            await asyncio.sleep(0.4)
            assert sum(p["SampleCount"] for p in datapoints(client, "Demand")) == sent

    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        asyncio.run(scenario(client))


def test_a_warm_pool_instance_publishes_only_once_in_service(tmp_path: Path, aws_env: None) -> None:
    imds = FakeImds()
    # GIVEN an instance being prepared for the warm pool: the gateway runs, idle
    imds.lifecycle_state = "Warmed:Stopped"

    async def scenario(client: Any) -> None:
        runtime = Runtime(
            boto3_client=lambda service, region_name: client,
            install_signal_handlers=False,
            exit_process=lambda: None,
            imds_transport=httpx.ASGITransport(app=imds.app),
        )
        async with running_stack(
            tmp_path, runtime=runtime, cloudwatch_enabled=True, lifecycle_watch_enabled=True,
            lifecycle_hook_name="finsight-drain", autoscaling_group_name=GROUP,
            cloudwatch_namespace=NAMESPACE, cloudwatch_interval_s=0.05,
            imds_poll_interval_s=0.05,
        ) as stack:  # fmt: skip
            reads = imds.reads
            await asyncio.sleep(0.5)  # ten periods
            # THEN it publishes nothing while its target state is Warmed:*
            assert imds.reads > reads
            assert datapoints(client, "Demand") == []
            assert datapoints(client, "QueueDepth") == []
            assert not stack.gateway.drainer.draining
            # WHEN it leaves the pool for service, THEN its datapoints arrive
            imds.lifecycle_state = "InService"
            async with asyncio.timeout(3):
                while not datapoints(client, "Demand"):
                    await asyncio.sleep(0.05)
            assert datapoints(client, "QueueDepth")

    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        asyncio.run(scenario(client))


def test_the_period_average_and_a_burst_between_samples_reach_cloudwatch(aws_env: None) -> None:
    acme = Tenant("acme", max_concurrent_requests=100, max_tokens=100)

    async def scenario(client: Any) -> None:
        # Two sequences may run; demand beyond them waits in the queue, and counts.
        admission = Admission(
            QueueLimits(max_running=2, max_queued=100, tenant_max_queued=100),
            max_queue_wait_s=10,
            retry_after_s=1,
        )
        publisher = CloudWatchPublisher(
            client, GatewayMetrics(), namespace=NAMESPACE, autoscaling_group_name=GROUP,
            interval_s=10, read_demand=lambda: admission.demand, read_queue_depth=lambda: 0.0,
            read_demand_peak=admission.take_peak,
        )  # fmt: skip

        def queue(count: int) -> list[asyncio.Future[Ticket]]:
            return [asyncio.ensure_future(admission.admit(acme)) for _ in range(count)]

        # GIVEN a period of ten one-second samples: 2 running, then 2 more queued
        steady = queue(2)
        for second in range(10):
            if second == 5:
                steady += queue(2)
            if second == 7:
                # AND a burst of 9 more that comes and goes between two samples
                burst = queue(9)
                await asyncio.sleep(0)
                for waiter in burst:
                    waiter.cancel()
                await asyncio.gather(*burst, return_exceptions=True)
            await asyncio.sleep(0)
            publisher.sample()
        assert admission.running == 2 and admission.queued == 2
        assert await publisher.publish_once()
        # THEN the datapoint carries the period's average, not its last instant, and the burst
        (point,) = datapoints(client, "Demand", period_s=10)
        assert point["SampleCount"] == 10
        assert point["Average"] == 3.0
        assert (point["Minimum"], point["Maximum"]) == (2.0, 13.0)
        # AND the next period starts afresh: one sample of the demand of 4 still there
        assert await publisher.publish_once()
        points = datapoints(client, "Demand", period_s=10)  # one, or two buckets
        assert sum(p["SampleCount"] for p in points) == 11
        assert sum(p["Average"] * p["SampleCount"] for p in points) == 2 * 5 + 4 * 5 + 4
        for waiter in steady:
            (await waiter).release()

    with mock_aws():
        asyncio.run(scenario(boto3.client("cloudwatch", region_name="us-east-1")))


class RecordingCloudWatch:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def put_metric_data(self, **call: Any) -> dict[str, Any]:
        self.calls.append(call)
        return {}


def test_the_publisher_samples_each_second_of_its_period() -> None:
    async def scenario() -> list[dict[str, Any]]:
        client = RecordingCloudWatch()
        publisher = CloudWatchPublisher(
            client, GatewayMetrics(), namespace=NAMESPACE, autoscaling_group_name=GROUP,  # type: ignore[arg-type]
            interval_s=0.2, sample_interval_s=0.02, read_demand=lambda: 1,
            read_queue_depth=lambda: 0.0,
        )  # fmt: skip
        task = asyncio.ensure_future(publisher.run())
        async with asyncio.timeout(5):
            while len(client.calls) < 3:
                await asyncio.sleep(0.02)
        task.cancel()
        return client.calls

    calls = asyncio.run(scenario())
    counts = [call["MetricData"][0]["StatisticValues"]["SampleCount"] for call in calls]
    # Ten samples a period (a loaded machine may slip one); never a single instant.
    assert all(8 <= count <= 10 for count in counts), counts
