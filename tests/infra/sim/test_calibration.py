"""The seed's headline, under the reference profile: one A10G meets the SLO at 500-1,000
queries a day and not at 10,000; 1-4 replicas carry 10,000."""

from __future__ import annotations

import datetime as dt

import pytest

from infra.policy import FLEET_POLICY
from infra.sim.runner import POLICY_CONFIG, Simulation, run_configs
from infra.sim.traffic import Scenario, generate

TUESDAY = dt.date(2026, 12, 1)


def meets(total_qpd: int, config: str, seed: int = 2) -> bool:
    scenario = Scenario(qpd_per_tenant=total_qpd // 5)
    trace = generate(scenario, FLEET_POLICY.schedule, TUESDAY, 1, seed)
    outcome = run_configs(trace, Simulation(FLEET_POLICY, seed=seed), configs=(config,))
    return outcome.reports[0].latency.meets_slo


@pytest.mark.parametrize("total_qpd", [500, 1_000])
def test_one_replica_meets_the_slo_at_500_to_1000_qpd(total_qpd: int) -> None:
    assert meets(total_qpd, "static-1")


def test_one_replica_misses_the_slo_at_10000_qpd() -> None:
    assert not meets(10_000, "static-1")


@pytest.mark.parametrize("config", ["static-4", POLICY_CONFIG])
def test_up_to_four_replicas_carry_10000_qpd(config: str) -> None:
    assert meets(10_000, config)
