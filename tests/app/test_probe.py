"""The readiness verdict on a fake clock: freshness and consecutive failures."""

from __future__ import annotations

import asyncio

from app.probe import ReadinessProbe
from app.upstream import UpstreamClient
from tests.app.stack import serve
from tests.fakes.fake_vllm import FakeVllm


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ready_needs_a_fresh_success_and_fewer_than_two_failures() -> None:
    async def scenario() -> None:
        fake = FakeVllm()
        clock = FakeClock()
        async with serve(fake.app) as port:
            upstream = UpstreamClient(
                "127.0.0.1", port, connect_timeout_s=1, timeout_s=1, max_idle_connections=2
            )
            probe = ReadinessProbe(
                upstream,
                interval_s=1,
                timeout_s=1,
                freshness_s=10,
                failures_to_unready=2,
                clock=clock,
            )
            assert probe.healthy() == (False, "starting: no successful probe yet")
            assert await probe.probe_once()
            assert probe.models == frozenset({"fake-model"})
            assert probe.healthy()[0]
            fake.config.mode = "fail"
            assert not await probe.probe_once()
            assert probe.healthy()[0]  # one failure is tolerated
            assert not await probe.probe_once()
            assert not probe.healthy()[0]
            fake.config.mode = "ok"
            assert await probe.probe_once()
            clock.now += 10.5
            ok, reason = probe.healthy()
            assert not ok and "10 s" in reason
            upstream.close()

    asyncio.run(scenario())
