"""The event loop on crafted traces: processor sharing, queueing, eviction, draining."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from infra.policy import FLEET_POLICY
from infra.policy.cold_start import BOOT_TIMELINE
from infra.sim.aws import AwsMechanics, BootTimes, ScheduledMinimum
from infra.sim.controllers import FleetView, ProposedOnAws, Static
from infra.sim.engine import simulate
from infra.sim.gateway import GatewayModel
from infra.sim.replica_model import A10G_VLLM
from infra.sim.trace import Trace
from tests.infra.sim.traces import NEW_YORK, CraftTrace

MODEL = A10G_VLLM
MECHANICS = AwsMechanics()
GATEWAY = GatewayModel.from_policy(FLEET_POLICY)


def test_one_request_alone_takes_prefill_then_output_at_single_stream_speed(
    crafted: CraftTrace,
) -> None:
    trace = crafted([3600.0], prompt_tokens=100, output_tokens=200)
    result = simulate(trace, Static(1), MODEL, MECHANICS, seed=0)
    speed = MODEL.per_sequence_speed(1)
    assert result.ttft_s[0] == pytest.approx(1 / speed)  # 100 prompt tokens = 1 unit
    assert result.e2e_s[0] == pytest.approx(201 / speed)


def test_concurrent_requests_share_the_gpu_and_slow_each_other(crafted: CraftTrace) -> None:
    trace = crafted([3600.0, 3600.0], prompt_tokens=100, output_tokens=200)
    result = simulate(trace, Static(1), MODEL, MECHANICS, seed=0)
    speed = MODEL.per_sequence_speed(2)
    assert result.e2e_s.tolist() == pytest.approx([201 / speed] * 2)
    assert result.e2e_s[0] > 201 / MODEL.per_sequence_speed(1)


def test_requests_beyond_max_num_seqs_wait_for_a_slot(crafted: CraftTrace) -> None:
    # The gateway sends vLLM up to 30 sequences; the replica model runs 12 (its KV cache),
    # so vLLM queues the 13th itself. One tenant here: its own cap must not be what binds.
    count = MODEL.max_num_seqs + 1
    trace = crafted([3600.0] * count, prompt_tokens=100, output_tokens=200)
    gateway = dataclasses.replace(GATEWAY, tenant_max_running=count)
    result = simulate(trace, Static(1), MODEL, MECHANICS, seed=0, gateway=gateway)
    batch_done = 201 / MODEL.per_sequence_speed(MODEL.max_num_seqs)
    assert np.sort(result.ttft_s)[-1] == pytest.approx(batch_done + 1 / MODEL.per_sequence_speed(1))


def test_load_balancer_spreads_requests_over_instances(crafted: CraftTrace) -> None:
    trace = crafted([3600.0] * 8, prompt_tokens=100, output_tokens=200)
    result = simulate(trace, Static(4), MODEL, MECHANICS, seed=0)
    # Least outstanding requests: two per instance, so each runs at the speed of two.
    assert result.e2e_s.tolist() == pytest.approx([201 / MODEL.per_sequence_speed(2)] * 8)


def test_same_seed_gives_identical_runs(crafted: CraftTrace) -> None:
    trace = crafted(np.linspace(3600, 7200, 3000).tolist(), output_tokens=300)
    schedule = ScheduledMinimum(FLEET_POLICY, trace.start_s, trace.end_s, 120, seed=4)
    runs = [
        simulate(trace, ProposedOnAws(FLEET_POLICY, schedule), MODEL, MECHANICS, seed=4)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].e2e_s, runs[1].e2e_s)
    assert runs[0].scale_events == runs[1].scale_events
    assert runs[0].gpu_hours == runs[1].gpu_hours
    assert runs[0].scale_events  # the load was enough to scale


def test_static_fleet_is_billed_for_the_whole_window(crafted: CraftTrace) -> None:
    result = simulate(crafted([60.0], hours=6), Static(3), MODEL, MECHANICS, seed=0)
    assert result.gpu_hours == pytest.approx(18.0)


def test_a_hung_instance_is_evicted_and_replaced(crafted: CraftTrace) -> None:
    # GIVEN two instances, steady requests, and one instance hanging at 01:00:05
    arrivals = np.arange(3600.0, 3600.0 + 600, 2.0).tolist()
    trace = crafted(arrivals, output_tokens=50, hours=2)
    mechanics = dataclasses.replace(MECHANICS, instance_failures_s=(trace.start_s + 3605,))
    result = simulate(trace, Static(2), MODEL, mechanics, seed=0)
    # THEN its requests fail, the load balancer stops routing after the health checks,
    # and the group launches a replacement (2 -> 1 -> 2 in service)
    failed = ~np.isfinite(result.e2e_s)
    assert 0 < failed.sum() < 20
    eviction_s = trace.start_s + 3605 + mechanics.eviction_after_s
    assert np.all(trace.arrival_s[failed] <= eviction_s + 10)
    counts = [count for _, count in result.in_service_changes]
    assert counts[:3] == [2, 1, 2]
    # The replacement is launched, and billed, from the eviction on, boot included.
    assert result.gpu_hours == pytest.approx(2 * 2)


class _Scripted:
    """A controller that asks for a fixed capacity per time (to test the group's response)."""

    name = "scripted"

    def __init__(self, plan: list[tuple[float, int]]) -> None:
        self.plan = plan

    def initial(self, start_s: float) -> int:
        return self.plan[0][1]

    def desired(self, view: FleetView) -> int:
        return [n for at, n in self.plan if at <= view.now_s][-1]

    def quiet_until(self, now_s: float, desired: int) -> float:
        return now_s


def test_scale_in_drains_in_flight_requests(crafted: CraftTrace) -> None:
    trace: Trace = crafted([3600.0] * 4, prompt_tokens=100, output_tokens=600, hours=2)
    controller = _Scripted([(0.0, 2), (trace.start_s + 3605, 1)])
    result = simulate(trace, controller, MODEL, MECHANICS, seed=0)
    # Every request finishes: the removed instance stopped taking work but drained its own.
    assert np.all(np.isfinite(result.e2e_s))
    assert result.e2e_s.max() == pytest.approx(601 / MODEL.per_sequence_speed(2))
    assert result.scale_events == [(trace.start_s + 3610, 2, 1)]


def test_warm_pool_boots_are_shorter_and_boots_stay_within_the_timeline() -> None:
    cold = BootTimes(seed=1, warm_pool=False)
    warm = BootTimes(seed=1, warm_pool=True)
    cold_draws = [cold.draw() for _ in range(200)]
    warm_draws = [warm.draw() for _ in range(200)]
    assert np.mean(warm_draws) < np.mean(cold_draws)
    typical = sum(phase.typical_s for phase in BOOT_TIMELINE)
    assert 0.8 * typical <= min(cold_draws) and max(cold_draws) <= cold.worst_s


def test_scheduled_minimum_starts_late_by_at_most_two_minutes() -> None:
    start = dt.datetime(2026, 12, 1, tzinfo=NEW_YORK).timestamp()
    prewarm = dt.datetime(2026, 12, 1, 8, 50, tzinfo=NEW_YORK).timestamp()
    for seed in range(5):
        schedule = ScheduledMinimum(FLEET_POLICY, start, start + 86_400, 120, seed)
        assert schedule.at(prewarm - 1) == 1
        assert schedule.at(prewarm + 120) == 2
        assert prewarm <= schedule.next_change_s(prewarm - 1) <= prewarm + 120
