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

from app.admission import Admission
from app.cloudwatch import CloudWatchPublisher, PeriodSamples, scaling_datapoints
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
        Statistics=["Average", "Maximum", "Minimum", "SampleCount"],
    )
    points: list[dict[str, Any]] = answer["Datapoints"]
    return points


def test_datapoints_are_high_resolution_and_dimensioned_by_group() -> None:
    now = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)
    ongoing = PeriodSamples()
    for value, peak in ((6, 6), (8, 11), (7, 8)):
        ongoing.add(value, peak)
    data = scaling_datapoints(ongoing, 3.0, GROUP, now)
    assert [d["MetricName"] for d in data] == ["OngoingRequests", "QueueDepth"]
    assert all(d["StorageResolution"] == 1 for d in data)
    assert all(d["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": GROUP}] for d in data)
    # The period's samples as one statistic set; the peak between samples is its Maximum.
    assert data[0]["StatisticValues"] == {
        "SampleCount": 3.0, "Sum": 21.0, "Minimum": 6.0, "Maximum": 11.0,
    }  # fmt: skip
    assert "Value" not in data[0]
    assert data[1]["Value"] == 3.0
    # Without a reading of vLLM's queue, only OngoingRequests is sent.
    only = scaling_datapoints(ongoing, None, GROUP, now)
    assert [d["MetricName"] for d in only] == ["OngoingRequests"]


def test_publish_once_lands_in_cloudwatch(aws_env: None) -> None:
    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        publisher = CloudWatchPublisher(
            client, GatewayMetrics(), namespace=NAMESPACE, autoscaling_group_name=GROUP,
            interval_s=10, read_ongoing=lambda: 12, read_queue_depth=lambda: 4.0,
        )  # fmt: skip
        assert asyncio.run(publisher.publish_once())
        ongoing = datapoints(client, "OngoingRequests")
        queue = datapoints(client, "QueueDepth")
        assert [p["Maximum"] for p in ongoing] == [12.0]
        assert [p["Maximum"] for p in queue] == [4.0]


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
        read_ongoing=lambda: 0, read_queue_depth=lambda: None,
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
            interval_s=0.05, read_ongoing=lambda: 0, read_queue_depth=lambda: None,
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


def test_the_running_gateway_publishes_its_ongoing_requests(tmp_path: Path, aws_env: None) -> None:
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
        ongoing = datapoints(client, "OngoingRequests")
        assert sum(p["SampleCount"] for p in ongoing) >= 3
        assert max(p["Maximum"] for p in ongoing) == 3.0
        assert datapoints(client, "QueueDepth")


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


def test_nothing_is_published_while_held_back(aws_env: None) -> None:
    in_service = False
    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        publisher = CloudWatchPublisher(
            client, GatewayMetrics(), namespace=NAMESPACE, autoscaling_group_name=GROUP,
            interval_s=10, read_ongoing=lambda: 0, read_queue_depth=lambda: 0.0,
            should_publish=lambda: in_service,
        )  # fmt: skip
        assert not asyncio.run(publisher.publish_once())
        assert publisher.holding and publisher.failures == 0
        assert publisher.next_delay_s() == 10  # holding back is no failure: no back-off
        assert datapoints(client, "OngoingRequests") == []
        in_service = True
        assert asyncio.run(publisher.publish_once())
        assert not publisher.holding
        assert len(datapoints(client, "OngoingRequests")) == 1


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
            assert datapoints(client, "OngoingRequests") == []
            assert datapoints(client, "QueueDepth") == []
            assert not stack.gateway.drainer.draining
            # WHEN it leaves the pool for service, THEN its datapoints arrive
            imds.lifecycle_state = "InService"
            async with asyncio.timeout(3):
                while not datapoints(client, "OngoingRequests"):
                    await asyncio.sleep(0.05)
            assert datapoints(client, "QueueDepth")

    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        asyncio.run(scenario(client))


def test_the_period_average_and_a_burst_between_samples_reach_cloudwatch(aws_env: None) -> None:
    acme = Tenant("acme", max_concurrent_requests=100, max_tokens=100)
    admission = Admission(100, retry_after_s=1)
    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        publisher = CloudWatchPublisher(
            client, GatewayMetrics(), namespace=NAMESPACE, autoscaling_group_name=GROUP,
            interval_s=10, read_ongoing=lambda: admission.ongoing, read_queue_depth=lambda: 0.0,
            read_ongoing_peak=admission.take_peak,
        )  # fmt: skip
        # GIVEN a period of ten one-second samples: 2 in flight, then 4
        steady = [admission.admit(acme) for _ in range(2)]
        for second in range(10):
            if second == 5:
                steady += [admission.admit(acme) for _ in range(2)]
            if second == 7:
                # AND a burst of 9 more that comes and goes between two samples
                burst = [admission.admit(acme) for _ in range(9)]
                for ticket in burst:
                    ticket.release()
            publisher.sample()
        assert asyncio.run(publisher.publish_once())
        # THEN the datapoint carries the period's average, not its last instant, and the burst
        (point,) = datapoints(client, "OngoingRequests", period_s=10)
        assert point["SampleCount"] == 10
        assert point["Average"] == 3.0
        assert (point["Minimum"], point["Maximum"]) == (2.0, 13.0)
        # AND the next period starts afresh: one sample of the 4 still in flight
        assert asyncio.run(publisher.publish_once())
        points = datapoints(client, "OngoingRequests", period_s=10)  # one, or two buckets
        assert sum(p["SampleCount"] for p in points) == 11
        assert sum(p["Average"] * p["SampleCount"] for p in points) == 2 * 5 + 4 * 5 + 4


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
            interval_s=0.2, sample_interval_s=0.02, read_ongoing=lambda: 1,
            read_queue_depth=lambda: None,
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
