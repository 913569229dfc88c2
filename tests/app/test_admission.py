"""Admission on the event loop: runs at once, waits its turn, or is refused with a reason."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from starlette.types import Message

from app.admission import Admission, Ticket
from app.errors import GatewayError
from app.fair_queue import QueueLimits
from app.tenants import Tenant

T = TypeVar("T")

ACME = Tenant("acme", max_concurrent_requests=2, max_tokens=100)
GLOBEX = Tenant("globex", max_concurrent_requests=5, max_tokens=100)


class Recorder:
    def __init__(self) -> None:
        self.shed: list[str] = []
        self.changes: list[tuple[int, int]] = []
        self.waits: list[tuple[str, float]] = []

    def admission(
        self, max_running: int = 3, max_queued: int = 4, tenant_max_queued: int = 2, wait_s=5.0
    ) -> Admission:
        return Admission(
            QueueLimits(max_running, max_queued, tenant_max_queued),
            max_queue_wait_s=wait_s,
            retry_after_s=2,
            on_shed=self.shed.append,
            on_change=lambda running, queued: self.changes.append((running, queued)),
            on_queued=lambda tenant, waited: self.waits.append((tenant, waited)),
        )


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), 10))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_request_with_room_runs_without_suspending() -> None:
    # No future, task or timer: the coroutine completes on its first step.
    admission = Recorder().admission()
    coroutine = admission.admit(ACME)
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)
    ticket = done.value.value
    assert isinstance(ticket, Ticket) and ticket.queued_s == 0.0
    assert (admission.running, admission.queued) == (1, 0)


def test_the_tenants_cap_makes_a_request_wait_not_fail_and_release_starts_it() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        admission = recorder.admission()
        first = await admission.admit(ACME, cost=2)
        waiter = asyncio.ensure_future(admission.admit(ACME))
        await settle()
        assert not waiter.done() and (admission.running, admission.queued) == (2, 1)
        assert admission.demand == 3
        first.release()
        first.release()  # a second release changes nothing
        second = await waiter
        assert second.queued_s > 0 and admission.tenant_running("acme") == 1
        assert recorder.changes == [(2, 0), (2, 1), (1, 0)]
        assert [tenant for tenant, _ in recorder.waits] == ["acme"]
        assert recorder.shed == []
        second.release()
        assert admission.demand == 0

    run(scenario)


def test_a_full_queue_is_503_and_a_tenants_share_429_both_with_retry_after() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        admission = recorder.admission(max_running=2, max_queued=3, tenant_max_queued=2)
        running = await admission.admit(GLOBEX, cost=2)
        acme = asyncio.ensure_future(admission.admit(ACME, cost=2))
        await settle()
        with pytest.raises(GatewayError) as share:
            await admission.admit(ACME)
        assert (share.value.status, share.value.retry_after_s) == (429, 2)
        assert share.value.shed_reason == "tenant_queue_full"
        assert "limit is 2 waiting" in share.value.message
        globex = asyncio.ensure_future(admission.admit(GLOBEX))
        await settle()
        with pytest.raises(GatewayError) as full:
            await admission.admit(GLOBEX)
        assert (full.value.status, full.value.retry_after_s) == (503, 2)
        assert full.value.shed_reason == "queue_full"
        assert "at most 3" in full.value.message
        assert recorder.shed == ["tenant_queue_full", "queue_full"]
        # The queued requests are served in their turn.
        running.release()
        (await acme).release()
        (await globex).release()
        assert admission.demand == 0

    run(scenario)


def test_a_request_not_started_by_its_deadline_is_shed_and_its_place_freed() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        admission = recorder.admission(max_running=1, wait_s=0.05)
        running = await admission.admit(GLOBEX)
        with pytest.raises(GatewayError) as late:
            await admission.admit(ACME)
        assert (late.value.status, late.value.shed_reason) == (503, "queue_timeout")
        assert late.value.retry_after_s == 2 and late.value.queued_s is not None
        assert late.value.queued_s >= 0.05
        assert (admission.running, admission.queued) == (1, 0)
        assert recorder.shed == ["queue_timeout"] and recorder.waits[0][0] == "acme"
        running.release()
        assert admission.demand == 0

    run(scenario)


def test_a_client_that_disconnects_while_queued_frees_its_place_at_once() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        admission = recorder.admission(max_running=1)
        running = await admission.admit(GLOBEX)
        gone = asyncio.Event()
        reads = 0

        async def receive() -> Message:  # an ASGI receive whose body has been read
            nonlocal reads
            reads += 1
            await gone.wait()
            return {"type": "http.disconnect"}

        waiter = asyncio.ensure_future(admission.admit(ACME, receive=receive))
        await settle()
        assert admission.queued == 1 and reads == 1
        gone.set()
        await asyncio.sleep(0)  # the watcher's turn only: the place is free before ...
        assert admission.queued == 0
        with pytest.raises(GatewayError) as left:
            await waiter  # ... the request's own task resumes
        assert (left.value.status, left.value.shed_reason) == (499, "client_gone")
        assert recorder.shed == ["client_gone"]
        running.release()

    run(scenario)


def test_an_admitted_waiter_stops_reading_receive() -> None:
    # The proxy reads receive() after admission for its own disconnect watch: the
    # queue's watcher must be gone by then, not racing it for the message.
    async def scenario() -> None:
        admission = Recorder().admission(max_running=1)
        running = await admission.admit(GLOBEX)
        pending: list[asyncio.Future[Message]] = []

        async def receive() -> Message:
            future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            pending.append(future)
            return await future

        waiter = asyncio.ensure_future(admission.admit(ACME, receive=receive))
        await settle()
        running.release()
        ticket = await waiter
        await settle()
        assert len(pending) == 1 and pending[0].cancelled()
        ticket.release()

    run(scenario)


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    async def scenario() -> None:
        admission = Recorder().admission(max_running=1)
        running = await admission.admit(GLOBEX)
        waiter = asyncio.ensure_future(admission.admit(ACME))
        await settle()
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert admission.queued == 0
        # Started and cancelled in the same loop turn: the entry it got is finished.
        waiter = asyncio.ensure_future(admission.admit(ACME))
        await settle()
        running.release()
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert admission.demand == 0

    run(scenario)


def test_draining_refuses_newcomers_serves_the_queued_and_wait_idle_waits_for_them() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        admission = recorder.admission(max_running=1)
        running = await admission.admit(ACME)
        queued = asyncio.ensure_future(admission.admit(GLOBEX))
        await settle()
        admission.draining = True
        with pytest.raises(GatewayError) as refused:
            await admission.admit(GLOBEX)
        assert refused.value.status == 503 and "draining" in refused.value.message
        idle = asyncio.ensure_future(admission.wait_idle())
        running.release()
        served = await queued
        await settle()
        assert not idle.done()  # the queued request is running now
        served.release()
        await asyncio.wait_for(idle, 1)
        assert recorder.shed == ["draining"]

    run(scenario)


def test_the_peak_of_demand_between_two_reads_is_kept() -> None:
    async def scenario() -> None:
        admission = Recorder().admission(max_running=2, max_queued=4, tenant_max_queued=4)
        assert admission.take_peak() == 0
        tickets = [await admission.admit(GLOBEX) for _ in range(2)]
        waiters = [asyncio.ensure_future(admission.admit(GLOBEX)) for _ in range(2)]
        await settle()
        # Two running, two queued: the demand of 4 is what the sampler must see.
        for ticket in tickets:
            ticket.release()
        tickets = list(await asyncio.gather(*waiters))
        tickets[0].release()
        assert (admission.demand, admission.take_peak()) == (1, 4)
        assert admission.take_peak() == 1  # the next read starts from the demand then
        tickets[1].release()
        assert (admission.take_peak(), admission.take_peak()) == (1, 0)

    run(scenario)
