"""The SLO: its derived error budget and burn-rate thresholds, per-tenant targets, and the
`[slo]` section of a policy proposal (validation naming the field and its range)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infra.policy import FLEET_POLICY, PolicyError
from infra.policy.loader import load_policy, policy_from_mapping
from infra.policy.slo import Severity, Slo, TenantSlo


def test_99_percent_over_28_days_pages_at_13_44_and_tickets_at_5_6() -> None:
    slo = Slo()
    assert slo.error_budget == pytest.approx(0.01)
    assert slo.window_hours == 672
    fast, slow = slo.burn_rate_windows()
    # 2 % of a 672 h budget in 1 h: 0.02 x 672 / 1 = 13.44
    assert (fast.name, fast.severity, fast.long_window_s, fast.short_window_s) == (
        "fast", Severity.PAGE, 3600, 300,
    )  # fmt: skip
    assert fast.burn_rate == pytest.approx(13.44)
    assert fast.error_ratio(slo.error_budget) == pytest.approx(0.1344)
    # 5 % in 6 h: 0.05 x 672 / 6 = 5.6
    assert (slow.name, slow.severity, slow.long_window_s, slow.short_window_s) == (
        "slow", Severity.TICKET, 6 * 3600, 1800,
    )  # fmt: skip
    assert slow.burn_rate == pytest.approx(5.6)
    assert slow.error_ratio(slo.error_budget) == pytest.approx(0.056)


def test_the_thresholds_follow_the_window_and_the_objective() -> None:
    slo = Slo(objective=0.995, window_days=30)
    assert slo.error_budget == pytest.approx(0.005)
    assert slo.window("fast").burn_rate == pytest.approx(0.02 * 720)
    assert slo.window("slow").error_ratio(slo.error_budget) == pytest.approx(6.0 * 0.005)
    with pytest.raises(KeyError):
        slo.window("medium")


def test_a_tenant_with_its_own_targets_uses_them_and_others_the_default() -> None:
    slo = Slo(tenants=(TenantSlo("acme", ttft_s=2.5), TenantSlo("globex", ttft_s=3, e2e_s=30)))
    assert slo.targets("acme") == (2.5, 65.0)  # e2e_s left out: the default
    assert slo.targets("globex") == (3, 30)
    assert slo.targets("initech") == (5.0, 65.0)
    assert slo.targets() == (5.0, 65.0)
    assert slo.tenant_targets() == {"acme": (2.5, 65.0), "globex": (3, 30)}
    scoped = slo.for_tenant("globex")
    assert (scoped.ttft_s, scoped.e2e_s, scoped.tenants) == (3, 30, ())
    assert scoped.objective == slo.objective
    assert "TTFT 3 s and end-to-end 30 s" in slo.describe("globex")


def test_a_tenant_listed_only_for_its_alarms_has_no_targets_of_its_own() -> None:
    slo = Slo(tenants=(TenantSlo("acme"),))
    assert slo.targets("acme") == (5.0, 65.0)
    assert slo.tenant_targets() == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ttft_s": 0}, "ttft_s: must be in (0, 600] seconds, got 0"),
        ({"e2e_s": 4000}, "e2e_s: must be in (0, 3600] seconds, got 4000"),
        ({"ttft_s": 70.0}, "ttft_s: cannot exceed e2e_s (65), got 70"),
        ({"objective": 0.3}, "objective: must be in [0.5, 0.9999], got 0.3"),
        ({"objective": True}, "objective: must be a number, got True"),
        ({"window_days": 0}, "window_days: must be between 1 and 90, got 0"),
        ({"min_requests": 0}, "min_requests: must be between 1 and 100000, got 0"),
        # a 50 % budget: the page's threshold would need 672 % of requests to miss
        ({"objective": 0.5}, "objective: 0.5 leaves a 50.00% budget"),
    ],
)
def test_bad_values_name_the_field_and_its_range(fields: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        Slo(**fields)  # type: ignore[arg-type]
    assert str(raised.value).startswith(message)


def test_slo_section_overrides_only_what_it_lists(tmp_path: Path) -> None:
    proposal = tmp_path / "slo.toml"
    proposal.write_text(
        "[slo]\nttft_s = 4\nobjective = 0.995\n\n"
        '[[slo.tenants]]\ntenant = "acme"\nttft_s = 2.5\ne2e_s = 40\n\n'
        '[[slo.tenants]]\ntenant = "globex"\n'
    )
    slo = load_policy(proposal, FLEET_POLICY).slo
    assert (slo.ttft_s, slo.objective) == (4, 0.995)
    assert (slo.e2e_s, slo.window_days, slo.min_requests) == (65.0, 28, 20)  # the deployed
    assert slo.targets("acme") == (2.5, 40)
    assert slo.targets("globex") == (4, 65.0)
    assert slo.window("fast").burn_rate == pytest.approx(13.44)


def test_a_proposal_without_tenants_keeps_the_deployed_ones() -> None:
    base = dataclasses.replace(FLEET_POLICY, slo=Slo(tenants=(TenantSlo("acme", ttft_s=2),)))
    assert policy_from_mapping({"slo": {"ttft_s": 4}}, base).slo.tenants == base.slo.tenants
    assert policy_from_mapping({"slo": {"tenants": []}}, base).slo.tenants == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"slo": {"objective": 1.0}}, "slo.objective: must be in [0.5, 0.9999], got 1.0"),
        ({"slo": {"e2e_s": "65"}}, "slo.e2e_s: must be a number of seconds, got '65'"),
        ({"slo": {"target": 5}}, "slo.target: unknown field; allowed:"),
        ({"slo": {"tenants": {"acme": 1}}}, "slo.tenants: must be a list of tables"),
        ({"slo": {"tenants": ["acme"]}}, "slo.tenants[0]: must be a table, got 'acme'"),
        (
            {"slo": {"tenants": [{"tenant": "a b"}]}},
            "slo.tenants[0].tenant: must be a tenant id",
        ),
        (
            {"slo": {"tenants": [{"tenant": "acme", "ttft_s": -1}]}},
            "slo.tenants[0].ttft_s: must be in (0, 600] seconds, got -1",
        ),
        (
            {"slo": {"tenants": [{"tenant": "acme"}, {"tenant": "acme"}]}},
            "slo.tenants[1].tenant: 'acme' is listed twice",
        ),
        (
            {"slo": {"tenants": [{"tenant": "acme", "ttft_s": 80}]}},
            "slo.tenants[0]: ttft_s (80) cannot exceed e2e_s (65) for 'acme'",
        ),
    ],
)
def test_bad_slo_sections_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        policy_from_mapping(data, FLEET_POLICY)
    assert str(raised.value).startswith(message)
