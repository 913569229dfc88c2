"""The Ray Serve-style decision function, driven on a fake clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Callable

import pytest

from infra.policy import FLEET_POLICY, DecisionState, FleetPolicy, Observation, decide

NEW_YORK = FLEET_POLICY.schedule.zone
SATURDAY_NOON = dt.datetime(2026, 11, 28, 12, 0, tzinfo=NEW_YORK)  # minimum is DEFAULT's 1
TUESDAY_10AM = dt.datetime(2026, 11, 24, 10, 0, tzinfo=NEW_YORK)  # market hours: minimum 2
TICK = dt.timedelta(seconds=1)


def run_clock(
    policy: FleetPolicy,
    start: dt.datetime,
    seconds: int,
    load: Callable[[int], float],
    replicas: int,
) -> list[tuple[int, int]]:
    """Drive decide() once a second; return (second, new replica count) at each change."""
    state = DecisionState()
    changes = []
    for second in range(seconds):
        desired, state = decide(
            policy, Observation(load(second), replicas), state, start + second * TICK
        )
        if desired != replicas:
            changes.append((second, desired))
            replicas = desired
    return changes


def test_burst_scales_up_after_the_up_delay_by_the_smoothed_amount() -> None:
    # GIVEN one replica and 30 ongoing requests (raw 3): smoothed by 0.5, 2 replicas
    changes = run_clock(FLEET_POLICY, SATURDAY_NOON, 40, lambda s: 30.0, replicas=1)
    # THEN nothing happens for 30 s, then exactly one step to 2
    assert changes == [(30, 2)]


@pytest.mark.parametrize("policy_up_delay", [10, 30, 60])
def test_up_delay_is_honoured_for_each_config(policy_up_delay: int) -> None:
    policy = dataclasses.replace(
        FLEET_POLICY,
        default=dataclasses.replace(FLEET_POLICY.default, upscale_delay_s=policy_up_delay),
        market_hours=dataclasses.replace(
            FLEET_POLICY.market_hours, upscale_delay_s=policy_up_delay
        ),
    )
    changes = run_clock(policy, SATURDAY_NOON, 200, lambda s: 80.0, replicas=1)
    assert changes[0][0] == policy_up_delay
    assert changes[-1][1] == 4  # bounded by max_replicas


def test_idle_scales_down_only_after_the_down_delay_and_not_below_the_minimum() -> None:
    changes = run_clock(FLEET_POLICY, SATURDAY_NOON, 1000, lambda s: 0.0, replicas=4)
    # 4 -> ceil(4 + 0.5 * (0 - 4)) = 2 after 300 s; the wait restarts on the next tick,
    # so 2 -> 1 comes 300 s after that
    assert changes == [(300, 2), (601, 1)]


def test_market_hours_minimum_holds_under_idle() -> None:
    changes = run_clock(FLEET_POLICY, TUESDAY_10AM, 1200, lambda s: 0.0, replicas=4)
    assert changes == [(300, 2)]


def test_schedule_minimum_applies_without_delay() -> None:
    pre_open = dt.datetime(2026, 11, 24, 8, 49, 50, tzinfo=NEW_YORK)
    changes = run_clock(FLEET_POLICY, pre_open, 20, lambda s: 0.0, replicas=1)
    assert changes == [(10, 2)]  # at 08:50:00 exactly


def test_an_interrupted_burst_restarts_the_up_delay() -> None:
    # 20 s over target, a 1 s dip to target, then load again: the count restarts at the dip
    changes = run_clock(
        FLEET_POLICY, SATURDAY_NOON, 80, lambda s: 10.0 if s == 20 else 30.0, replicas=1
    )
    assert changes == [(51, 2)]


def test_no_flapping_on_a_noisy_signal_at_the_target() -> None:
    rng = random.Random(7)
    # Two replicas at the target of 10 each, with +-20 % noise every second for two hours
    changes = run_clock(
        FLEET_POLICY, TUESDAY_10AM, 7200, lambda s: 20.0 * rng.uniform(0.8, 1.2), replicas=2
    )
    assert changes == []
