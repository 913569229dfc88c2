"""`fleet check`'s verdicts: the oscillation detector, the SLO per day and tenant, the cost
margin."""

from __future__ import annotations

import datetime as dt

import pytest

from infra.policy import FLEET_POLICY, FleetPolicy
from infra.policy.loader import policy_from_mapping
from infra.policy.slo import Slo, TenantSlo
from infra.sim.check import Limits, cost_finding, evaluate, oscillation_finding, trading_dates
from infra.sim.engine import RunResult
from infra.sim.runner import POLICY_CONFIG, Simulation, run_configs
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


@pytest.fixture(scope="module")
def default_run(two_days: Trace) -> RunResult:
    """The deployed policy on the two days, shared: the verdicts only read it."""
    return policy_run(two_days, FLEET_POLICY)


def test_oscillation_detector_fires_on_a_mis_tuned_policy_and_not_on_the_default(
    two_days: Trace, default_run: RunResult
) -> None:
    assert MIS_TUNED.warnings()  # the policy itself warns about this trap
    calm = oscillation_finding(default_run, 2, Limits())
    flapping = oscillation_finding(policy_run(two_days, MIS_TUNED), 2, Limits())
    assert calm.passed, calm.detail
    assert not flapping.passed
    assert "direction reversals within 10 min" in flapping.detail


def test_default_policy_passes_the_whole_check_against_itself(
    two_days: Trace, default_run: RunResult
) -> None:
    run = default_run
    findings = evaluate(run, run, two_days, Slo(), HOURS, Limits())
    assert [f.check for f in findings] == ["slo", "oscillation", "cost"]
    assert all(f.passed for f in findings), [f.line() for f in findings]


def test_slo_finding_names_the_day_and_the_excess(two_days: Trace, default_run: RunResult) -> None:
    run = default_run
    strict = Slo(ttft_s=0.5)
    finding = evaluate(run, run, two_days, strict, HOURS, Limits())[0]
    assert not finding.passed
    assert "2026-12-01 fleet:" in finding.detail
    assert "s over 0.5 s" in finding.detail
    assert "99.00% of requests" in finding.detail
    assert "the fast burn-rate alarm (page, >= 13.44x the budget's rate) would fire" in (
        finding.detail
    )


def test_slo_finding_judges_a_tenant_by_its_own_targets(
    two_days: Trace, default_run: RunResult
) -> None:
    # GIVEN the deployed policy's run, judged so far by the default targets for everyone
    run = default_run
    tenant = two_days.tenants[0]
    # WHEN one tenant's contract asks for a first token within 0.5 s
    strict = Slo(tenants=(TenantSlo(tenant, ttft_s=0.5),))
    finding = evaluate(run, run, two_days, strict, HOURS, Limits())[0]
    # THEN that tenant pages, by name, judged against its own target; no other tenant does
    assert not finding.passed
    assert f"would fire for tenant {tenant}:" in finding.detail
    assert f"tenant {tenant} " in finding.detail
    others = [name for name in two_days.tenants[1:] if f"for tenant {name}:" in finding.detail]
    assert others == []


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
