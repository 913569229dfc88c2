"""The gateway's admission as a pure model: a concurrency cap, a bounded queue, fair dequeue.

No I/O, no clock, no asyncio: the gateway (`app.admission`) wraps it with futures and
timers, and the fleet simulator (`infra.sim`) drives the same object from its event loop,
so the simulated gateway is the deployed one. Everything is counted in sequences (one per
prompt per choice `n`), the unit vLLM's batch is made of.

Rules, in order, for a request of `cost` sequences from a tenant allowed `cap` running:
- it runs at once when both the instance's `max_running` and the tenant's `cap` have room
  and nothing it would overtake is waiting (waiters of tenants held by their own caps do
  not count: they would be passed over);
- otherwise it waits, unless the queue would exceed `max_queued` (refused: `queue_full`) or
  the tenant's own queued sequences would exceed `tenant_max_queued` (`tenant_queue_full`);
- when sequences finish, waiters are dequeued round-robin by tenant: each tenant with
  waiters gets one request per turn, so a tenant's batch of 300 delays another tenant's
  single request by at most one request per other waiting tenant. A tenant at its own cap
  is passed over until one of its requests ends; the tenant whose turn it is keeps the
  freed room until enough is free for its request (no large request starves behind small
  ones).

Withdrawing a waiter (its deadline passed, its client left) frees its place at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

QUEUE_FULL = "queue_full"
TENANT_QUEUE_FULL = "tenant_queue_full"


@dataclass(frozen=True)
class QueueLimits:
    max_running: int
    max_queued: int
    tenant_max_queued: int

    def __post_init__(self) -> None:
        if self.max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {self.max_running}")
        if self.max_queued < 0 or self.tenant_max_queued < 0:
            raise ValueError("max_queued and tenant_max_queued must be >= 0")


class Entry(Generic[T]):
    """One request in the model: waiting, then running, then done (or withdrawn)."""

    __slots__ = ("cap", "cost", "item", "running", "tenant")

    def __init__(self, item: T, tenant: str, cost: int, cap: int) -> None:
        self.item = item
        self.tenant = tenant
        self.cost = cost
        self.cap = cap
        self.running = False


class FairQueue(Generic[T]):
    def __init__(self, limits: QueueLimits) -> None:
        self.limits = limits
        self.running = 0
        self.queued = 0
        self._tenant_running: dict[str, int] = {}
        self._tenant_queued: dict[str, int] = {}
        self._waiting: dict[str, deque[Entry[T]]] = {}
        self._turns: deque[str] = deque()  # tenants with waiters, whose turn is first

    @property
    def demand(self) -> int:
        """Sequences running plus waiting: the scaling signal (no cap hides it)."""
        return self.running + self.queued

    def tenant_running(self, tenant: str) -> int:
        return self._tenant_running.get(tenant, 0)

    def tenant_queued(self, tenant: str) -> int:
        return self._tenant_queued.get(tenant, 0)

    def offer(self, item: T, tenant: str, cost: int, cap: int) -> Entry[T] | str:
        """Admit a request: its entry (check `entry.running`), or the refusal's reason."""
        entry = Entry(item, tenant, cost, cap)
        if self._fits(entry) and (not self._turns or self._overtakes_nobody(tenant)):
            self._start(entry)
            return entry
        # Checked only for a request that must wait: a full queue of tenants at their own
        # caps must not shut out a tenant with room to run.
        if self.queued + cost > self.limits.max_queued:
            return QUEUE_FULL
        if self.tenant_queued(tenant) + cost > self.limits.tenant_max_queued:
            return TENANT_QUEUE_FULL
        waiting = self._waiting.get(tenant)
        if waiting is None:
            waiting = self._waiting[tenant] = deque()
            self._turns.append(tenant)
        waiting.append(entry)
        self.queued += cost
        self._tenant_queued[tenant] = self.tenant_queued(tenant) + cost
        return entry

    def finish(self, entry: Entry[T]) -> list[Entry[T]]:
        """A running request ended: free its sequences; the waiters that now run, in order."""
        if not entry.running:
            raise ValueError("finish() is for a running entry")
        entry.running = False
        self.running -= entry.cost
        left = self._tenant_running[entry.tenant] - entry.cost
        if left:
            self._tenant_running[entry.tenant] = left
        else:
            del self._tenant_running[entry.tenant]
        return self._dispatch()

    def withdraw(self, entry: Entry[T]) -> list[Entry[T]]:
        """A waiter leaves (deadline, client gone); the waiters that now run, in order.

        Its tenant may have been the one holding freed room for its turn, so others may run.
        """
        waiting = self._waiting.get(entry.tenant)
        if entry.running or waiting is None or entry not in waiting:
            raise ValueError("withdraw() is for a waiting entry")
        waiting.remove(entry)
        self._unqueue(entry)
        return self._dispatch()

    def _overtakes_nobody(self, tenant: str) -> bool:
        """True if a new request of `tenant` would pass no waiter entitled to go first: the
        tenant has none waiting, and every waiting tenant is held by its own cap (the
        dispatch would pass each of them over)."""
        if tenant in self._waiting:
            return False
        for waiting_tenant in self._turns:
            head = self._waiting[waiting_tenant][0]
            if self.tenant_running(waiting_tenant) + head.cost <= head.cap:
                return False
        return True

    def _fits(self, entry: Entry[T]) -> bool:
        return (
            self.running + entry.cost <= self.limits.max_running
            and self.tenant_running(entry.tenant) + entry.cost <= entry.cap
        )

    def _start(self, entry: Entry[T]) -> None:
        entry.running = True
        self.running += entry.cost
        self._tenant_running[entry.tenant] = self.tenant_running(entry.tenant) + entry.cost

    def _unqueue(self, entry: Entry[T]) -> None:
        self.queued -= entry.cost
        left = self._tenant_queued[entry.tenant] - entry.cost
        if left:
            self._tenant_queued[entry.tenant] = left
        else:
            del self._tenant_queued[entry.tenant]
            del self._waiting[entry.tenant]
            self._turns.remove(entry.tenant)

    def _dispatch(self) -> list[Entry[T]]:
        started: list[Entry[T]] = []
        turns = self._turns
        passed = 0  # tenants in a row passed over because they are at their own cap
        while turns and passed < len(turns):
            tenant = turns[0]
            head = self._waiting[tenant][0]
            if self.tenant_running(tenant) + head.cost > head.cap:
                turns.rotate(-1)
                passed += 1
                continue
            if self.running + head.cost > self.limits.max_running:
                break  # the tenant whose turn it is keeps the freed room
            self._waiting[tenant].popleft()
            self._unqueue(head)
            self._start(head)
            started.append(head)
            if turns and turns[0] == tenant:
                turns.rotate(-1)  # its turn is over; it keeps its place in the round
            passed = 0
        return started
