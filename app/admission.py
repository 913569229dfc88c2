"""Admission: the fair queue (`app.fair_queue`) on the event loop, with deadlines and refusals.

Everything counts sequences, not HTTP requests: vLLM runs `n` sequences for each prompt of a
request, so one request asking for 4 prompts x n=2 weighs 8 (its `cost`). A request runs at
once while the instance (`max_running`) and its tenant (`max_concurrent_requests`) have
room and nobody it would overtake is waiting; otherwise it waits its turn, round-robin by
tenant, for at most `max_queue_wait_s`. Requests are refused only when the queue is full
(503), the tenant's share of it is (429), the deadline passes (503), or the instance is
draining (503), each with Retry-After. Running plus queued is the demand the autoscaler
sees: no cap hides it.

A request that runs at once costs no future, task or timer: only one that waits does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.types import Receive

from app.errors import GatewayError
from app.fair_queue import QUEUE_FULL, Entry, FairQueue, QueueLimits
from app.tenants import Tenant

# A waiter's future resolves to None once it runs, or to the reason it was shed.
Waiter = asyncio.Future[str | None]

QUEUE_TIMEOUT = "queue_timeout"
CLIENT_GONE = "client_gone"
DRAINING = "draining"
CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer


class Ticket:
    """One admitted request; `release()` frees its sequences exactly once."""

    __slots__ = ("_admission", "_entry", "queued_s")

    def __init__(
        self, admission: Admission, entry: Entry[Waiter | None], queued_s: float = 0.0
    ) -> None:
        self._admission = admission
        self._entry: Entry[Waiter | None] | None = entry
        self.queued_s = queued_s  # how long the request waited for its turn

    def release(self) -> None:
        entry = self._entry
        if entry is not None:
            self._entry = None
            self._admission._finish(entry)


class Admission:
    def __init__(
        self,
        limits: QueueLimits,
        *,
        max_queue_wait_s: float,
        retry_after_s: int,
        on_shed: Callable[[str], None] = lambda reason: None,
        on_change: Callable[[int, int], None] = lambda running, queued: None,
        on_queued: Callable[[str, float], None] = lambda tenant_id, waited_s: None,
    ) -> None:
        self.limits = limits
        self.max_queue_wait_s = max_queue_wait_s
        self._retry_after_s = retry_after_s
        self._on_shed = on_shed
        self._on_change = on_change  # sequences running and queued, after every change
        # A waiter's tenant and wait, once the wait ends (started, shed, or its client gone).
        self._on_queued = on_queued
        self._queue: FairQueue[Waiter | None] = FairQueue(limits)
        self._peak = 0
        self.draining = False
        self._idle: asyncio.Event | None = None

    @property
    def running(self) -> int:
        """Sequences sent to vLLM (admitted, not yet finished)."""
        return self._queue.running

    @property
    def queued(self) -> int:
        """Sequences waiting for their turn here."""
        return self._queue.queued

    @property
    def demand(self) -> int:
        """Sequences running plus queued: the scaling signal."""
        return self._queue.demand

    def tenant_running(self, tenant_id: str) -> int:
        return self._queue.tenant_running(tenant_id)

    def tenant_queued(self, tenant_id: str) -> int:
        return self._queue.tenant_queued(tenant_id)

    def take_peak(self) -> int:
        """The highest demand since the last call (at least the current one): what a
        sampler would miss between two samples."""
        demand = self._queue.demand
        peak = max(self._peak, demand)
        self._peak = demand
        return peak

    def _refuse(self, status: int, message: str, kind: str, reason: str) -> GatewayError:
        self._on_shed(reason)
        return GatewayError(
            status, message, kind, retry_after_s=self._retry_after_s, shed_reason=reason
        )

    async def admit(self, tenant: Tenant, cost: int = 1, receive: Receive | None = None) -> Ticket:
        """Run the request's `cost` sequences now, or once its turn comes, or refuse it.

        `receive` is the request's ASGI receive, its body already read: while the request
        waits, it returns only when the client disconnects, which frees the place at once.
        A cost above the instance's `max_running` or the tenant's cap could never run:
        validation refuses such a request with 400 before it gets here (`app.validation`).
        """
        if self.draining:
            raise self._refuse(
                503,
                "This instance is draining; retry on another instance.",
                "service_unavailable",
                DRAINING,
            )
        queue = self._queue
        outcome = queue.offer(None, tenant.id, cost, tenant.max_concurrent_requests)
        if isinstance(outcome, str):
            raise self._refusal(outcome, tenant)
        entry = outcome
        demand = queue.demand
        if demand > self._peak:
            self._peak = demand
        self._on_change(queue.running, queue.queued)
        if entry.running:
            return Ticket(self, entry)
        return await self._wait(entry, receive)

    def _refusal(self, reason: str, tenant: Tenant) -> GatewayError:
        limits = self.limits
        if reason == QUEUE_FULL:
            return self._refuse(
                503,
                f"This instance is busy: {self._queue.running} sequences are running and its "
                f"queue holds {self._queue.queued} of at most {limits.max_queued} (sequences "
                "are prompts x n); retry shortly.",
                "service_unavailable",
                reason,
            )
        return self._refuse(
            429,
            f"This tenant already has {self._queue.tenant_queued(tenant.id)} sequences "
            f"waiting at this instance, its limit is {limits.tenant_max_queued} waiting "
            f"(beyond the {tenant.max_concurrent_requests} it may run at once; sequences are "
            "prompts x n); retry shortly.",
            "rate_limit_exceeded",
            reason,
        )

    async def _wait(self, entry: Entry[Waiter | None], receive: Receive | None) -> Ticket:
        loop = asyncio.get_running_loop()
        waiter: Waiter = loop.create_future()
        entry.item = waiter
        queued_at = time.perf_counter()

        def shed(reason: str) -> None:
            # Withdrawn at once, from the timer or the watcher, so that the place is free
            # before this request's task even resumes.
            if not waiter.done() and not entry.running:
                self._resume(self._queue.withdraw(entry))
                waiter.set_result(reason)

        async def watch_disconnect() -> None:
            assert receive is not None
            while (await receive())["type"] != "http.disconnect":
                pass
            shed(CLIENT_GONE)

        timer = loop.call_later(self.max_queue_wait_s, shed, QUEUE_TIMEOUT)
        watcher = loop.create_task(watch_disconnect()) if receive is not None else None
        try:
            reason = await waiter
        except asyncio.CancelledError:
            # The request's task was cancelled (the server shutting down): give the place
            # back whichever state the entry reached.
            if entry.running:
                self._finish(entry)
            elif not waiter.done() or waiter.cancelled():
                self._resume(self._queue.withdraw(entry))
            raise
        finally:
            timer.cancel()
            if watcher is not None:
                # The proxy reads receive() next, for its own disconnect watch.
                watcher.cancel()
        queued_s = time.perf_counter() - queued_at
        self._on_queued(entry.tenant, queued_s)
        if reason is None:
            return Ticket(self, entry, queued_s)
        if reason == CLIENT_GONE:
            self._on_shed(reason)
            error = GatewayError(
                CLIENT_CLOSED,
                "The client went away while its request was queued.",
                "invalid_request_error",
                shed_reason=reason,
            )
        else:
            error = self._refuse(
                503,
                f"This instance could not start the request within "
                f"{self.max_queue_wait_s:g} s of queueing; retry shortly.",
                "service_unavailable",
                reason,
            )
        error.queued_s = queued_s
        raise error

    def _resume(self, started: list[Entry[Waiter | None]]) -> None:
        """Wake the waiters the queue just started; note the change; notice idleness."""
        for entry in started:
            waiter = entry.item
            # A waiter whose task was cancelled meanwhile finds its entry running and
            # finishes it itself.
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        queue = self._queue
        self._on_change(queue.running, queue.queued)
        if not queue.demand and self._idle is not None:
            self._idle.set()
            self._idle = None

    def _finish(self, entry: Entry[Waiter | None]) -> None:
        self._resume(self._queue.finish(entry))

    async def wait_idle(self) -> None:
        """Return once nothing runs or waits (the drain waits on this: queued requests on
        a draining instance are still served)."""
        while self._queue.demand:
            if self._idle is None:
                self._idle = asyncio.Event()
            await self._idle.wait()
