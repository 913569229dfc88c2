"""`fleet check`'s verdicts: the oscillation detector, the SLA per day, the cost margin."""

from __future__ import annotations

import datetime as dt

import pytest

from infra.policy import FLEET_POLICY, FleetPolicy
from infra.policy.loader import policy_from_mapping
from infra.sim.check import Limits, cost_finding, evaluate, oscillation_finding, trading_dates
from infra.sim.engine import RunResult
from infra.sim.runner import POLICY_CONFIG, Simulation, run_configs
from infra.sim.sla import Sla
from infra.sim.trace import Trace
from infra.sim.traffic import Scenario, generate

HOURS = FLEET_POLICY.schedule
# Target 3 with a 10 s up delay and a 30 s down delay: the seed's coupled-parameter trap.
MIS_TUNED = policy_from_mapping(
    {
        "default": {
            "target_ongoing_requests": 3,
            "upscale_delay_s": 10,
            "downscale_delay_s": 30,
            "smoothing_factor": 1.0,
        }
    },
    FLEET_POLICY,
)


@pytest.fixture(scope="module")
def two_days() -> Trace:
    return generate(Scenario(), HOURS, dt.date(2026, 12, 1), 2, seed=0)


def policy_run(trace: Trace, policy: FleetPolicy) -> RunResult:
    outcome = run_configs(trace, Simulation(policy, seed=0), configs=(POLICY_CONFIG,))
    return outcome.run(POLICY_CONFIG)


def test_oscillation_detector_fires_on_a_mis_tuned_policy_and_not_on_the_default(
    two_days: Trace,
) -> None:
    assert MIS_TUNED.warnings()  # the policy itself warns about this trap
    calm = oscillation_finding(policy_run(two_days, FLEET_POLICY), 2, Limits())
    flapping = oscillation_finding(policy_run(two_days, MIS_TUNED), 2, Limits())
    assert calm.passed, calm.detail
    assert not flapping.passed
    assert "direction reversals within 10 min" in flapping.detail


def test_default_policy_passes_the_whole_check_against_itself(two_days: Trace) -> None:
    run = policy_run(two_days, FLEET_POLICY)
    findings = evaluate(run, run, two_days, Sla(), HOURS, Limits())
    assert [f.check for f in findings] == ["sla", "oscillation", "cost"]
    assert all(f.passed for f in findings), [f.line() for f in findings]


def test_sla_finding_names_the_day_and_the_excess(two_days: Trace) -> None:
    run = policy_run(two_days, FLEET_POLICY)
    strict = Sla(ttft_s=0.5)
    finding = evaluate(run, run, two_days, strict, HOURS, Limits())[0]
    assert not finding.passed
    assert "2026-12-01" in finding.detail
    assert "s over 0.5 s" in finding.detail


def test_cost_finding_says_by_how_much() -> None:
    over = cost_finding(115.0, 100.0, Limits(cost_margin=0.10))
    assert not over.passed
    assert "15.0% over the reference's 100.0 (margin 10%)" in over.detail
    assert cost_finding(105.0, 100.0, Limits(cost_margin=0.10)).passed


def test_trading_dates_skip_weekends_and_holidays() -> None:
    week = generate(Scenario(qpd_per_tenant=10), HOURS, dt.date(2026, 11, 23), 7, seed=0)
    assert trading_dates(week, HOURS) == [
        dt.date(2026, 11, 23),
        dt.date(2026, 11, 24),
        dt.date(2026, 11, 25),
        dt.date(2026, 11, 27),
    ]
