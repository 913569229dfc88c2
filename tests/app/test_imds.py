"""IMDSv2 reads and the lifecycle watcher, against the fake metadata service."""

from __future__ import annotations

import asyncio

import httpx

from app.imds import InstanceMetadata, LifecycleWatcher
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
