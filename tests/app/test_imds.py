"""IMDSv2 reads and the lifecycle watcher, against the fake metadata service."""

from __future__ import annotations

import asyncio

import httpx

from app.imds import InstanceMetadata, LifecycleWatcher, counts_in_group_average
from tests.fakes.fake_imds import FakeImds


def test_reads_use_a_session_token_and_renew_it_when_refused() -> None:
    async def scenario() -> None:
        imds = FakeImds(instance_id="i-abc")
        metadata = InstanceMetadata("http://169.254.169.254", httpx.ASGITransport(app=imds.app))
        assert await metadata.instance_id() == "i-abc"
        metadata._token = "expired"
        assert await metadata.lifecycle_state() == "InService"
        assert metadata._token != "expired"
        await metadata.aclose()

    asyncio.run(scenario())


def test_the_watcher_fires_once_on_terminated_and_backs_off_on_errors() -> None:
    async def scenario() -> None:
        imds = FakeImds()
        metadata = InstanceMetadata("http://169.254.169.254", httpx.ASGITransport(app=imds.app))
        fired: list[str] = []
        watcher = LifecycleWatcher(metadata, fired.append, interval_s=0.01, max_backoff_s=0.05)
        task = asyncio.ensure_future(watcher.run())
        imds.fail = True
        await asyncio.sleep(0.2)
        failing_reads = imds.reads
        assert 1 <= failing_reads <= 8  # backed off: without it, about 20 reads
        imds.fail = False
        imds.lifecycle_state = "Terminated"
        await asyncio.wait_for(task, 2)
        assert fired == ["lifecycle state Terminated"]
        await metadata.aclose()

    asyncio.run(scenario())


def test_the_watcher_keeps_the_state_and_drains_a_warm_pool_instance_terminated() -> None:
    async def scenario() -> None:
        imds = FakeImds()
        imds.lifecycle_state = "Warmed:Running"
        metadata = InstanceMetadata("http://169.254.169.254", httpx.ASGITransport(app=imds.app))
        fired: list[str] = []
        watcher = LifecycleWatcher(metadata, fired.append, interval_s=0.01)
        assert watcher.state is None and not counts_in_group_average(watcher.state)
        task = asyncio.ensure_future(watcher.run())
        async with asyncio.timeout(2):
            while watcher.state is None:
                await asyncio.sleep(0.01)
        assert watcher.state == "Warmed:Running"
        assert not counts_in_group_average(watcher.state)
        # A failed read keeps the last state known.
        imds.fail = True
        reads = imds.reads
        async with asyncio.timeout(2):
            while imds.reads == reads:
                await asyncio.sleep(0.01)
        assert watcher.state == "Warmed:Running"
        imds.fail = False
        imds.lifecycle_state = "InService"
        async with asyncio.timeout(2):
            while watcher.state != "InService":
                await asyncio.sleep(0.01)
        assert counts_in_group_average(watcher.state) and not fired
        imds.lifecycle_state = "Warmed:Terminated"
        await asyncio.wait_for(task, 2)
        assert fired == ["lifecycle state Warmed:Terminated"]
        await metadata.aclose()

    asyncio.run(scenario())


def test_only_an_instance_in_service_counts_in_the_group_average() -> None:
    states = ["InService", "Warmed:Stopped", "Warmed:Running", "Warmed:Hibernated",
              "Warmed:Terminated", "Standby", "Detached", "Terminated", None]  # fmt: skip
    assert [state for state in states if counts_in_group_average(state)] == ["InService"]


class FailingMetadata:
    """IMDS unreachable for `failures` reads, then the instance is terminated."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.reads = 0

    async def lifecycle_state(self) -> str:
        self.reads += 1
        if self.reads <= self.failures:
            raise httpx.ConnectError("IMDS unreachable")
        return "Terminated"


def test_the_watcher_outlives_5000_failed_reads_in_a_row() -> None:
    async def scenario() -> None:
        metadata = FailingMetadata(5_000)
        fired: list[str] = []
        # No back-off wait (cap 0): 5,000 failures in well under a second.
        watcher = LifecycleWatcher(
            metadata,  # type: ignore[arg-type]
            fired.append,
            interval_s=0.05,
            max_backoff_s=0,
        )
        await asyncio.wait_for(watcher.run(), 30)
        assert metadata.reads == 5_001
        assert fired == ["lifecycle state Terminated"]

    asyncio.run(scenario())
