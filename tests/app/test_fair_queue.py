"""The pure fair queue: bounds, round-robin fairness, withdrawal, caps, no starvation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.fair_queue import QUEUE_FULL, TENANT_QUEUE_FULL, Entry, FairQueue, QueueLimits

Queue = FairQueue[str]


def offered(queue: Queue, name: str, tenant: str, cost: int = 1, cap: int = 100) -> Entry[str]:
    entry = queue.offer(name, tenant, cost, cap)
    assert isinstance(entry, Entry), f"{name} was refused: {entry}"
    return entry


def test_a_batch_of_300_delays_another_tenants_request_by_one_per_other_waiting_tenant() -> None:
    # GIVEN one sequence may run; tenant "batch" sends 300 requests, all but one wait
    queue: Queue = FairQueue(QueueLimits(max_running=1, max_queued=1000, tenant_max_queued=1000))
    running = offered(queue, "batch-0", "batch")
    for i in range(1, 300):
        offered(queue, f"batch-{i}", "batch")
    # ... and 50 of them have been served before two other tenants send one request each
    for _ in range(50):
        (running,) = queue.finish(running)
    lone = offered(queue, "lone", "lone")
    other = offered(queue, "other", "other")
    # WHEN requests finish one at a time
    started_before: list[str] = []
    while not lone.running:
        (running,) = queue.finish(running)
        started_before.append(running.item)
    # THEN "lone" waited behind at most one request of each other waiting tenant
    assert started_before[:-1] == ["batch-51"] and started_before[-1] == "lone"
    (running,) = queue.finish(running)
    assert running is other
    # ... and the batch resumes, one per turn, once nobody else waits
    (running,) = queue.finish(running)
    assert running.item == "batch-52"


def test_a_lone_request_waits_at_most_one_turn_per_waiting_tenant_with_larger_running() -> None:
    # GIVEN 4 sequences may run and four tenants flood the queue
    queue: Queue = FairQueue(QueueLimits(max_running=4, max_queued=1000, tenant_max_queued=300))
    running = [offered(queue, f"t{t}-first", f"t{t}") for t in range(4)]
    for t in range(4):
        for i in range(100):
            offered(queue, f"t{t}-{i}", f"t{t}")
    lone = offered(queue, "lone", "lone")
    # WHEN running requests finish, oldest first
    starts_before = 0
    while not lone.running:
        started = queue.finish(running.pop(0))
        running.extend(started)
        starts_before += sum(1 for entry in started if entry is not lone)
    # THEN at most one request of each of the 4 other waiting tenants went first
    assert starts_before <= 4


def test_refusals_at_the_queue_bound_and_the_tenants_share_change_nothing() -> None:
    queue: Queue = FairQueue(QueueLimits(max_running=2, max_queued=5, tenant_max_queued=3))
    offered(queue, "a-run", "a", cost=2)
    offered(queue, "a-wait", "a", cost=3)  # the tenant's whole share
    assert queue.offer("a-more", "a", 1, 100) == TENANT_QUEUE_FULL
    offered(queue, "b-wait", "b", cost=2)  # 5 queued: the bound
    assert queue.offer("c-wait", "c", 1, 100) == QUEUE_FULL
    assert (queue.running, queue.queued, queue.demand) == (2, 5, 7)
    assert (queue.tenant_queued("a"), queue.tenant_queued("b"), queue.tenant_queued("c")) == (
        3,
        2,
        0,
    )


def test_the_queue_full_check_comes_before_the_tenants_share() -> None:
    queue: Queue = FairQueue(QueueLimits(max_running=1, max_queued=2, tenant_max_queued=1))
    offered(queue, "run", "a")
    offered(queue, "a-wait", "a")
    offered(queue, "b-wait", "b")
    assert queue.offer("a-more", "a", 1, 100) == QUEUE_FULL


def test_with_no_queue_a_request_runs_or_is_refused() -> None:
    queue: Queue = FairQueue(QueueLimits(max_running=1, max_queued=0, tenant_max_queued=0))
    first = offered(queue, "first", "a")
    assert first.running
    assert queue.offer("second", "b", 1, 100) == QUEUE_FULL


def test_withdrawing_a_waiter_frees_its_place_at_once_and_can_start_others() -> None:
    # GIVEN 4 may run, 2 do; a request of 3 has its turn and holds the 2 free for itself
    queue: Queue = FairQueue(QueueLimits(max_running=4, max_queued=4, tenant_max_queued=4))
    offered(queue, "x", "x", cost=2)
    blocked = queue.offer("big", "big", 3, 100)
    assert isinstance(blocked, Entry) and not blocked.running
    small = offered(queue, "small", "small", cost=1)
    assert not small.running  # the turn is big's: small does not overtake it
    assert queue.offer("full", "other", 1, 100) == QUEUE_FULL
    # WHEN big's client leaves
    started = queue.withdraw(blocked)
    # THEN its place is free at once and small runs in the room big was holding
    assert started == [small] and small.running
    assert (queue.running, queue.queued, queue.tenant_queued("big")) == (3, 0, 0)
    assert isinstance(queue.offer("now-fits", "other", 1, 100), Entry)


def test_a_tenant_at_its_own_cap_is_passed_over() -> None:
    # GIVEN tenant a may run 1 sequence and runs it, with another waiting
    queue: Queue = FairQueue(QueueLimits(max_running=4, max_queued=10, tenant_max_queued=10))
    a1 = offered(queue, "a1", "a", cap=1)
    a2 = offered(queue, "a2", "a", cap=1)
    assert a1.running and not a2.running
    # WHEN tenant b asks while a's request waits first in line
    b1 = offered(queue, "b1", "b", cap=4)
    # THEN b's runs at once: a waits for its own cap, not for the instance
    assert b1.running and not a2.running
    assert queue.finish(b1) == []
    assert queue.finish(a1) == [a2]
    assert queue.tenant_running("a") == 1


def test_a_full_queue_of_tenants_at_their_caps_does_not_shut_out_a_tenant_with_room() -> None:
    # GIVEN two tenants at their cap of 1, each with its whole share of the queue waiting
    queue: Queue = FairQueue(QueueLimits(max_running=4, max_queued=2, tenant_max_queued=1))
    for tenant in "ab":
        assert offered(queue, f"{tenant}-run", tenant, cap=1).running
        assert not offered(queue, f"{tenant}-wait", tenant, cap=1).running
    assert queue.offer("a-more", "a", 1, 1) == QUEUE_FULL
    # WHEN a third tenant asks, with room to run
    c = queue.offer("c-run", "c", 1, 4)
    # THEN it runs at once rather than being refused for the queue it never enters
    assert isinstance(c, Entry) and c.running
    assert (queue.running, queue.queued) == (3, 2)
    # ... and a request that must wait is still refused at the bound
    assert queue.offer("c-wait", "c", 2, 4) == QUEUE_FULL


def test_a_large_request_is_not_starved_by_a_stream_of_small_ones() -> None:
    # GIVEN 4 may run, all taken by small requests, and a request of 4 waiting
    queue: Queue = FairQueue(QueueLimits(max_running=4, max_queued=100, tenant_max_queued=50))
    running = [offered(queue, f"s{i}", "small") for i in range(4)]
    large = offered(queue, "large", "large", cost=4)
    # WHEN small requests keep arriving as fast as others finish
    for i in range(4, 40):
        offered(queue, f"s{i}", "small")
        if not running:
            break
        running.extend(queue.finish(running.pop(0)))
        if large.running:
            break
    # THEN the large request starts once the 4 running finish: no later small one overtakes
    assert large.running
    assert running == [large]
    assert queue.running == 4


def test_finish_and_withdraw_refuse_an_entry_in_the_wrong_state() -> None:
    queue: Queue = FairQueue(QueueLimits(max_running=1, max_queued=1, tenant_max_queued=1))
    running = offered(queue, "r", "a")
    waiting = offered(queue, "w", "b")
    with pytest.raises(ValueError, match="running"):
        queue.finish(waiting)
    with pytest.raises(ValueError, match="waiting"):
        queue.withdraw(running)


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_running"):
        QueueLimits(max_running=0, max_queued=1, tenant_max_queued=1)
    with pytest.raises(ValueError, match="max_queued"):
        QueueLimits(max_running=1, max_queued=-1, tenant_max_queued=0)


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["offer", "finish", "withdraw"]),
        st.sampled_from("abcd"),  # the tenant of an offer
        st.integers(1, 8),  # its cost, at most the tenant's cap
        st.integers(0, 1_000),  # which running or waiting entry to end
    ),
    max_size=150,
)


@settings(max_examples=200, deadline=None)
@given(
    max_running=st.integers(1, 8),
    max_queued=st.integers(0, 12),
    tenant_share=st.floats(0, 1),
    caps=st.lists(st.integers(1, 8), min_size=4, max_size=4),
    operations=OPERATIONS,
)
def test_invariants_hold_under_any_offers_finishes_and_withdrawals(
    max_running: int,
    max_queued: int,
    tenant_share: float,
    caps: list[int],
    operations: list[tuple[str, str, int, int]],
) -> None:
    limits = QueueLimits(max_running, max_queued, int(max_queued * tenant_share))
    queue: Queue = FairQueue(limits)
    # Validation never lets a request ask more than its tenant's cap or the instance's.
    cap_of = {t: min(cap, max_running) for t, cap in zip("abcd", caps, strict=True)}
    running: list[Entry[str]] = []
    waiting: list[Entry[str]] = []

    def moved(started: list[Entry[str]]) -> None:
        for entry in started:
            assert entry.running
            waiting.remove(entry)
            running.append(entry)

    for step, (action, tenant, cost, pick) in enumerate(operations):
        if action == "offer":
            cap = cap_of[tenant]
            before = (queue.running, queue.queued)
            outcome = queue.offer(f"{step}", tenant, min(cost, cap), cap)
            if isinstance(outcome, str):
                assert outcome in (QUEUE_FULL, TENANT_QUEUE_FULL)
                assert (queue.running, queue.queued) == before
            else:
                (running if outcome.running else waiting).append(outcome)
        elif action == "finish" and running:
            moved(queue.finish(running.pop(pick % len(running))))
        elif action == "withdraw" and waiting:
            moved(queue.withdraw(waiting.pop(pick % len(waiting))))
        # The bounds hold, the counters agree with the entries, demand is their sum.
        assert queue.running == sum(e.cost for e in running) <= limits.max_running
        assert queue.queued == sum(e.cost for e in waiting) <= limits.max_queued
        assert queue.demand == queue.running + queue.queued
        for name, cap in cap_of.items():
            assert queue.tenant_running(name) == sum(e.cost for e in running if e.tenant == name)
            assert queue.tenant_running(name) <= cap
            assert queue.tenant_queued(name) == sum(e.cost for e in waiting if e.tenant == name)
            assert queue.tenant_queued(name) <= limits.tenant_max_queued
        # Nothing waits on an idle instance: every request fits an empty one.
        assert queue.running or not queue.queued
