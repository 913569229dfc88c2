"""The simulated gateway is the deployed one: the same FairQueue class, its round-robin
dequeue, the wait deadline, the SDK's retries, and metrics only from serving instances."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pytest

import app.fair_queue
from app.fair_queue import Entry, FairQueue, QueueLimits
from app.settings import GatewaySettings
from infra.policy import FLEET_POLICY
from infra.sim import engine
from infra.sim.aws import AwsMechanics
from infra.sim.controllers import FleetView, Static
from infra.sim.engine import simulate
from infra.sim.gateway import (
    REFUSED_DEADLINE,
    REFUSED_NO_TARGET,
    REFUSED_QUEUE_FULL,
    GatewayModel,
    sdk_retry_delay_s,
)
from infra.sim.replica_model import A10G_VLLM, ReplicaModel
from tests.infra.sim.traces import CraftTrace

MECHANICS = AwsMechanics()
# 10 decode units per second whatever the batch, so a request alone with 100 prompt
# tokens (1 unit) and `o` output tokens takes exactly (1 + o) / 10 seconds.
PLAIN = ReplicaModel(decode_tokens_per_s=10.0, batch_slowdown=0.0, prefill_speedup=100.0)
ONE_AT_A_TIME = GatewayModel(
    limits=QueueLimits(max_running=1, max_queued=32, tenant_max_queued=16),
    max_queue_wait_s=30.0,
)
T0 = 3600.0  # a tick falls on it: the period after it holds only what arrives at T0


def output_lasting(seconds: float) -> int:
    return round(seconds * PLAIN.decode_tokens_per_s) - 1


def test_the_gateways_defaults_are_the_apps() -> None:
    fields = GatewaySettings.model_fields
    model = GatewayModel.from_policy(FLEET_POLICY)
    assert model.retry_after_s == fields["retry_after_s"].default == 1
    assert model.tenant_max_running == fields["default_tenant_max_concurrent_requests"].default
    assert model.limits.max_running == FLEET_POLICY.queue.max_running
    assert model.limits.max_queued == FLEET_POLICY.queue.max_queued
    assert model.limits.tenant_max_queued == FLEET_POLICY.queue.tenant_max_queued
    assert model.max_queue_wait_s == FLEET_POLICY.queue.max_queue_wait_s


def test_sdk_delay_honours_retry_after_up_to_a_minute_else_backs_off_with_jitter() -> None:
    draws = iter([0.0, 1.0, 0.5, 0.0, 0.0])

    def draw() -> float:
        return next(draws)

    assert sdk_retry_delay_s(0, 1.0, draw) == 1.0
    assert sdk_retry_delay_s(1, 60.0, draw) == 60.0
    assert sdk_retry_delay_s(0, None, draw) == 0.5  # jitter 1 - 0.25 * 0
    assert sdk_retry_delay_s(1, 61.0, draw) == 1.0 * 0.75  # too long a Retry-After: ignored
    assert sdk_retry_delay_s(2, 0.0, draw) == 2.0 * (1 - 0.25 * 0.5)
    assert sdk_retry_delay_s(4, None, draw) == 8.0  # 0.5 * 2**4 = 8, the cap
    assert sdk_retry_delay_s(9, None, draw) == 8.0


class _Recording(FairQueue[int]):
    """The deployed class, logging each call and its answer for a replay."""

    log: ClassVar[list[tuple[str, Any, Any]]] = []

    def offer(self, item: int, tenant: str, cost: int, cap: int) -> Entry[int] | str:
        admitted = super().offer(item, tenant, cost, cap)
        answer = admitted if isinstance(admitted, str) else admitted.running
        self.log.append(("offer", (item, tenant, cost, cap), answer))
        return admitted

    def finish(self, entry: Entry[int]) -> list[Entry[int]]:
        started = super().finish(entry)
        self.log.append(("finish", entry.item, [e.item for e in started]))
        return started

    def withdraw(self, entry: Entry[int]) -> list[Entry[int]]:
        started = super().withdraw(entry)
        self.log.append(("withdraw", entry.item, [e.item for e in started]))
        return started


def test_the_engine_admits_through_the_gateways_fair_queue_itself(
    crafted: CraftTrace, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert engine.FairQueue is app.fair_queue.FairQueue
    # GIVEN a burst of three tenants into one instance that runs 2 and queues 4, one
    # tenant at most 2, with waits past the deadline
    monkeypatch.setattr(engine, "FairQueue", _Recording)
    _Recording.log = []
    gateway = GatewayModel(QueueLimits(2, 4, 2), max_queue_wait_s=5.0, tenant_max_running=1)
    names = ["a", "a", "a", "b", "b", "c", "a", "c", "b"]
    trace = crafted(
        [T0 + 0.1 * i for i in range(len(names))],
        tenants=names,
        outputs=[output_lasting(4.0)] * len(names),
    )
    simulate(trace, Static(1), PLAIN, MECHANICS, seed=0, gateway=gateway)
    log = _Recording.log
    assert {op for op, _, _ in log} == {"offer", "finish", "withdraw"}
    # WHEN the same calls go straight to a fresh FairQueue THEN it answers the same
    queue: FairQueue[int] = FairQueue(gateway.limits)
    live: dict[int, Entry[int]] = {}
    for op, argument, answer in log:
        if op == "offer":
            admitted = queue.offer(*argument)
            if isinstance(admitted, str):
                assert admitted == answer
                continue
            assert admitted.running == answer
            live[argument[0]] = admitted
        else:
            method = queue.finish if op == "finish" else queue.withdraw
            started = method(live.pop(argument))
            assert [e.item for e in started] == answer
    assert queue.demand == 0


def test_queued_requests_are_served_round_robin_by_tenant(crafted: CraftTrace) -> None:
    # GIVEN one instance that runs one request at a time and a burst a a a a b b c
    names = ["a", "a", "a", "a", "b", "b", "c"]
    trace = crafted(
        [T0 + 0.001 * i for i in range(len(names))],
        tenants=names,
        outputs=[output_lasting(1.0)] * len(names),
    )
    result = simulate(trace, Static(1), PLAIN, MECHANICS, seed=0, gateway=ONE_AT_A_TIME)
    # THEN after the first, each tenant with waiters gets one turn in its round
    order = np.argsort(trace.arrival_s + result.queue_wait_s, kind="stable")
    assert [names[i] for i in order] == ["a", "a", "b", "c", "a", "b", "a"]
    assert np.all(np.isfinite(result.e2e_s))
    assert sum(result.refusals.values()) == 0


@pytest.mark.parametrize(
    ("first_lasts_s", "second_waits_s", "sheds"), [(29.9, 29.9, 0), (30.1, 31.0, 1)]
)
def test_a_queued_request_is_shed_at_exactly_the_wait_deadline_and_retried_after_retry_after(
    crafted: CraftTrace, first_lasts_s: float, second_waits_s: float, sheds: int
) -> None:
    # GIVEN one slot taken by a request lasting just under or just over the 30 s deadline
    trace = crafted([T0, T0], tenants=["a", "b"], outputs=[output_lasting(first_lasts_s), 9])
    result = simulate(trace, Static(1), PLAIN, MECHANICS, seed=0, gateway=ONE_AT_A_TIME)
    # THEN the second starts when the slot frees, or, shed at 30 s with Retry-After: 1,
    # when its client sends again 1 s later
    assert result.queue_wait_s[1] == pytest.approx(second_waits_s)
    assert result.refusals["503_queue_wait"] == sheds
    assert result.retries == sheds
    assert result.refused.tolist() == [0, 0]
    assert result.ttft_s[1] == pytest.approx(second_waits_s + 0.1)


def test_a_deadline_after_its_request_started_and_ended_between_ticks_sheds_nothing(
    crafted: CraftTrace,
) -> None:
    # GIVEN one slot taken until 30.2 s after a tick, a request queued 1 s after that tick
    # (its deadline at 31 s) that runs for half a second once the slot frees: it starts
    # and ends between the tick at 30 s and its deadline, while the replica is not updated
    trace = crafted(
        [T0, T0 + 1.0],
        tenants=["a", "b"],
        outputs=[output_lasting(30.2), output_lasting(0.5)],
    )
    result = simulate(trace, Static(1), PLAIN, MECHANICS, seed=0, gateway=ONE_AT_A_TIME)
    # THEN its deadline finds it served, not waiting: no shed, no retry
    assert result.refusals["503_queue_wait"] == 0
    assert result.retries == 0
    assert result.queue_wait_s[1] == pytest.approx(29.2, abs=0.01)
    assert np.isfinite(result.e2e_s[1])


def test_after_the_sdks_two_retries_the_client_gets_the_503(crafted: CraftTrace) -> None:
    # GIVEN a slot taken for 100 s: the other request is shed at 30, 61 and 92 s
    trace = crafted([T0, T0], tenants=["a", "b"], outputs=[output_lasting(100.0), 9])
    result = simulate(trace, Static(1), PLAIN, MECHANICS, seed=0, gateway=ONE_AT_A_TIME)
    assert result.refusals["503_queue_wait"] == 3
    assert result.retries == 2
    assert result.refused.tolist() == [0, REFUSED_DEADLINE]
    assert np.isinf(result.ttft_s[1]) and np.isinf(result.queue_wait_s[1])


def test_a_full_queue_and_a_tenants_share_refuse_at_once(crafted: CraftTrace) -> None:
    # GIVEN one slot, a queue of 2, one tenant at most 1 queued; a runs 1.5 s
    gateway = dataclasses.replace(ONE_AT_A_TIME, limits=QueueLimits(1, 2, 1))
    names = ["a", "b", "b", "c", "d"]
    outputs = [output_lasting(1.5)] + [9] * 4
    trace = crafted([T0 + 0.001 * i for i in range(5)], tenants=names, outputs=outputs)
    result = simulate(trace, Static(1), PLAIN, MECHANICS, seed=0, gateway=gateway)
    # THEN b's second is refused for its share (429) and comes back each second
    # (Retry-After: 1): at 1 s the queue (b, c) is full (503), at 2 s b has started and it
    # queues. d finds the queue full at 0, 1 and 2 s: after two retries its client gets
    # the 503.
    assert result.refusals["429_tenant_share"] == 1
    assert result.refusals["503_queue_full"] == 1 + 3
    assert result.refused.tolist() == [0, 0, 0, 0, REFUSED_QUEUE_FULL]
    assert result.queue_wait_s[2] >= 2.0
    assert np.isinf(result.ttft_s[4])


def test_without_a_target_the_load_balancers_503_is_retried_then_reaches_the_client(
    crafted: CraftTrace,
) -> None:
    trace = crafted([T0], tenants=["a"])
    result = simulate(trace, Static(0), PLAIN, MECHANICS, seed=3, gateway=ONE_AT_A_TIME)
    assert result.refusals["503_no_target"] == 1 + 2
    assert result.refused.tolist() == [REFUSED_NO_TARGET]
    assert np.isinf(result.ttft_s[0])


class _Watching:
    """Asks for capacity by a plan and keeps every view it is shown."""

    name = "watching"

    def __init__(self, plan: list[tuple[float, int]]) -> None:
        self.plan = plan
        self.views: list[FleetView] = []

    def initial(self, start_s: float) -> int:
        return self.plan[0][1]

    def desired(self, view: FleetView) -> int:
        self.views.append(view)
        return [n for at, n in self.plan if at <= view.now_s][-1]

    def quiet_until(self, now_s: float, desired: int) -> float:
        return now_s


def test_published_demand_counts_the_queue_beyond_the_concurrency_cap(
    crafted: CraftTrace,
) -> None:
    # GIVEN 25 long requests from 5 tenants at once into one deployed instance: the gateway
    # runs 12 (vLLM's concurrency on the A10G model, the policy's max_running) and queues
    # 13, within its bound of 16 and each tenant's 8
    queue = FLEET_POLICY.queue
    assert (queue.max_running, queue.max_queued, queue.tenant_max_queued) == (12, 16, 8)
    names = [f"t{i % 5}" for i in range(25)]
    trace = crafted([T0] * 25, tenants=names, output_tokens=2000)
    watching = _Watching([(0.0, 1)])
    gateway = GatewayModel.from_policy(FLEET_POLICY)
    simulate(trace, watching, A10G_VLLM, MECHANICS, seed=0, gateway=gateway)
    view = next(v for v in watching.views if v.now_s == trace.start_s + T0 + 10)
    # THEN the period's demand is all 25, above the cap of 12, and the queue depth 13
    assert view.ongoing_per_instance == [pytest.approx(25.0)]
    assert view.queue_per_instance == [pytest.approx(13.0)]


def test_booting_and_draining_instances_publish_nothing(crafted: CraftTrace) -> None:
    # GIVEN steady load on one instance, a second asked for at 01:05 and released at 01:30
    arrivals = np.arange(T0, T0 + 2400, 2.0).tolist()
    trace = crafted(arrivals, output_tokens=300, hours=2)
    start = trace.start_s
    watching = _Watching([(0.0, 1), (start + T0 + 300, 2), (start + T0 + 1800, 1)])
    result = simulate(trace, watching, A10G_VLLM, MECHANICS, seed=0)
    ready_s = next(at for at, count in result.in_service_changes if count == 2)
    launched_s = start + T0 + 300
    for view in watching.views:
        booting = launched_s <= view.now_s <= ready_s  # sampled before it joins at ready_s
        two = ready_s < view.now_s <= start + T0 + 1800
        assert len(view.ongoing_per_instance) == (2 if two else 1), view.now_s
        assert len(view.queue_per_instance) == len(view.ongoing_per_instance)
        if booting:
            assert view.ongoing_per_instance[0] > 0  # the serving one's load, not halved
    assert ready_s - launched_s > 60  # it did boot for a while


def test_the_gateway_sends_vllm_what_the_replica_model_runs_at_once() -> None:
    # One figure, two places: the policy's max_running is what one A10G replica runs at
    # once (its KV cache binds), so the simulated vLLM never queues behind the gateway's
    # fair queue, and neither does the real one on the reference traffic.
    assert FLEET_POLICY.queue.max_running == A10G_VLLM.max_num_seqs
    assert A10G_VLLM.max_num_seqs <= FLEET_POLICY.queue.engine_max_num_seqs
