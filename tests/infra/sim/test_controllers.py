"""Each baseline's reaction to a step in load, on a crafted trace (GIVEN a quiet Saturday
with one instance, WHEN 1 request/s arrives from noon on, THEN ...)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infra.policy import FLEET_POLICY
from infra.policy.cold_start import BOOT_TIMELINE
from infra.sim.engine import RunResult
from infra.sim.runner import POLICY_CONFIG, Outcome, Simulation, run_configs
from tests.infra.sim.traces import craft_trace

NOON_S = 12 * 3600.0
PERIOD_S = 10.0
WORST_BOOT_S = sum(phase.worst_s for phase in BOOT_TIMELINE)
UP_DELAY_S = FLEET_POLICY.default.upscale_delay_s


@pytest.fixture(scope="module")
def step_outcome() -> Outcome:
    arrivals = np.arange(NOON_S, NOON_S + 1200, 1.0).tolist()
    trace = craft_trace(
        arrivals, prompt_tokens=100, output_tokens=400, bursts_after_midnight_s=[NOON_S]
    )
    return run_configs(trace, Simulation(FLEET_POLICY, seed=1))


def first_scale_out_after_step(run: RunResult, step_s: float) -> float:
    return next(at - step_s for at, old, new in run.scale_events if new > old)


def first_capacity_after_step(run: RunResult, step_s: float) -> float:
    return next(at - step_s for at, count in run.in_service_changes[1:] if count > 1)


def step_time(outcome: Outcome) -> float:
    # Every run's first control tick is one period after the trace's (local) midnight.
    return float(outcome.run("static-1").timeline.time_s[0] - PERIOD_S + NOON_S)


def test_target_tracking_reacts_about_three_minutes_after_the_step(step_outcome: Outcome) -> None:
    run = step_outcome.run("target-tracking")
    delay = first_scale_out_after_step(run, step_time(step_outcome))
    assert 170 <= delay <= 240  # 3 one-minute datapoints, plus the minute being filled


def test_policy_on_aws_reacts_within_its_up_delay(step_outcome: Outcome) -> None:
    run = step_outcome.run(POLICY_CONFIG)
    delay = first_scale_out_after_step(run, step_time(step_outcome))
    # 3 breaching 10 s datapoints; the first period is partly below target while it ramps.
    assert UP_DELAY_S - PERIOD_S <= delay <= UP_DELAY_S + 2 * PERIOD_S
    serving = first_capacity_after_step(run, step_time(step_outcome))
    assert delay < serving <= delay + WORST_BOOT_S + PERIOD_S


def test_ray_serve_reacts_within_its_up_delay_plus_look_back(step_outcome: Outcome) -> None:
    run = step_outcome.run("ray-serve")
    delay = first_scale_out_after_step(run, step_time(step_outcome))
    assert UP_DELAY_S <= delay <= UP_DELAY_S + 30 + PERIOD_S


def test_burst_to_capacity_is_decision_plus_cold_start(step_outcome: Outcome) -> None:
    policy = step_outcome.report(POLICY_CONFIG).burst_to_capacity_s
    tracking = step_outcome.report("target-tracking").burst_to_capacity_s
    assert policy is not None and tracking is not None
    assert policy <= UP_DELAY_S + 2 * PERIOD_S + WORST_BOOT_S + PERIOD_S
    assert tracking > policy
    # The fixed 3-minute alarm costs about 2 minutes in deciding; the boot that follows is
    # a separate random draw per run, so the decisions are compared, not the totals.
    step_s = step_time(step_outcome)
    decided = first_scale_out_after_step(step_outcome.run(POLICY_CONFIG), step_s)
    assert first_scale_out_after_step(step_outcome.run("target-tracking"), step_s) > decided + 100


def test_static_fleets_never_scale(step_outcome: Outcome) -> None:
    for n in range(1, 5):
        report = step_outcome.report(f"static-{n}")
        assert report.scale_events == 0
        assert report.gpu_hours == pytest.approx(24 * n)


def test_clairvoyant_has_capacity_serving_before_the_step(step_outcome: Outcome) -> None:
    run = step_outcome.run("clairvoyant")
    assert first_capacity_after_step(run, step_time(step_outcome)) <= 0
    clairvoyant = step_outcome.report("clairvoyant")
    policy = step_outcome.report(POLICY_CONFIG)
    assert clairvoyant.latency.slo_attainment >= policy.latency.slo_attainment
    assert clairvoyant.gpu_hours < step_outcome.report("static-4").gpu_hours
    assert not math.isinf(clairvoyant.latency.p99_ttft_s)
