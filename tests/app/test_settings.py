"""Settings: defaults, the policy-derived cap, and refusals that name the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.settings import GatewaySettings, SettingsError, load_settings
from infra.policy import FLEET_POLICY
from infra.policy.aws_rules import METRICS_NAMESPACE
from infra.policy.config import DEFAULT


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(__import__("os").environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_TENANTS_FILE", "/etc/gateway/tenants.json")
    monkeypatch.setenv("GATEWAY_CLOUDWATCH_ENABLED", "false")
    monkeypatch.setenv("GATEWAY_LIFECYCLE_WATCH_ENABLED", "false")
    return monkeypatch


def test_defaults_follow_the_issue_and_the_policy(local_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.upstream_url == "http://127.0.0.1:8001"
    assert (settings.upstream_host, settings.upstream_port) == ("127.0.0.1", 8001)
    # The shipped policy's queue: what vLLM runs at once on an A10G runs, 16 more wait.
    queue = FLEET_POLICY.queue
    assert settings.max_running_sequences == queue.max_running == 12
    assert settings.max_queued_sequences == queue.max_queued == 16
    assert settings.tenant_max_queued_sequences == queue.tenant_max_queued == 8
    assert settings.max_queue_wait_s == queue.max_queue_wait_s == 30
    assert settings.queue_limits.max_running == 12
    assert settings.cloudwatch_interval_s == DEFAULT.metric_period_s
    # The namespace the stack's alarms read, from the same constant.
    assert settings.cloudwatch_namespace == METRICS_NAMESPACE == "FinsightServing"
    assert settings.probe_freshness_s == 10
    assert settings.probe_failures_to_unready == 2


def test_production_settings_read_from_the_environment(local_env: pytest.MonkeyPatch) -> None:
    local_env.setenv("GATEWAY_CLOUDWATCH_ENABLED", "true")
    local_env.setenv("GATEWAY_LIFECYCLE_WATCH_ENABLED", "true")
    local_env.setenv("GATEWAY_AUTOSCALING_GROUP_NAME", "finsight-prod")
    local_env.setenv("GATEWAY_LIFECYCLE_HOOK_NAME", "drain")
    local_env.setenv("GATEWAY_CLOUDWATCH_NAMESPACE", "FinSight/Prod")
    local_env.setenv("GATEWAY_AWS_REGION", "us-east-2")
    local_env.setenv("GATEWAY_DRAIN_DEADLINE_S", "300")
    local_env.setenv("GATEWAY_PROBE_INTERVAL_S", "2.5")
    settings = load_settings()
    assert settings.autoscaling_group_name == "finsight-prod"
    assert settings.lifecycle_hook_name == "drain"
    assert settings.cloudwatch_namespace == "FinSight/Prod"
    assert settings.aws_region == "us-east-2"
    assert settings.drain_deadline_s == 300
    assert settings.probe_interval_s == 2.5


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("GATEWAY_PROBE_INTERVAL_S", "0", "GATEWAY_PROBE_INTERVAL_S"),
        ("GATEWAY_PROBE_INTERVAL_S", "soon", "GATEWAY_PROBE_INTERVAL_S"),
        ("GATEWAY_MAX_RUNNING_SEQUENCES", "0", "GATEWAY_MAX_RUNNING_SEQUENCES"),
        ("GATEWAY_MAX_QUEUED_SEQUENCES", "-1", "GATEWAY_MAX_QUEUED_SEQUENCES"),
        ("GATEWAY_TENANT_MAX_QUEUED_SEQUENCES", "-1", "GATEWAY_TENANT_MAX_QUEUED_SEQUENCES"),
        ("GATEWAY_TENANT_MAX_QUEUED_SEQUENCES", "33", "cannot exceed GATEWAY_MAX_QUEUED"),
        ("GATEWAY_MAX_QUEUE_WAIT_S", "0", "GATEWAY_MAX_QUEUE_WAIT_S"),
        ("GATEWAY_MAX_QUEUE_WAIT_S", "3600", "GATEWAY_MAX_QUEUE_WAIT_S"),
        ("GATEWAY_MAX_BODY_BYTES", "10", "GATEWAY_MAX_BODY_BYTES"),
        ("GATEWAY_DRAIN_DEADLINE_S", "-1", "GATEWAY_DRAIN_DEADLINE_S"),
        ("GATEWAY_MAX_N", "1000", "GATEWAY_MAX_N"),
        ("GATEWAY_STREAM_STALL_TIMEOUT_S", "0", "GATEWAY_STREAM_STALL_TIMEOUT_S"),
        ("GATEWAY_MAX_PROMPTS", "0", "GATEWAY_MAX_PROMPTS"),
        ("GATEWAY_BODY_TIMEOUT_S", "0", "GATEWAY_BODY_TIMEOUT_S"),
        ("GATEWAY_MAX_CONNECTIONS", "0", "GATEWAY_MAX_CONNECTIONS"),
        ("GATEWAY_UPSTREAM_URL", "https://vllm:8001", "GATEWAY_UPSTREAM_URL"),
        ("GATEWAY_UPSTREAM_URL", "http://127.0.0.1:8001/v1", "GATEWAY_UPSTREAM_URL"),
        ("GATEWAY_UPSTREAM_URL", "http://127.0.0.1:99999", "GATEWAY_UPSTREAM_URL"),
        ("GATEWAY_CLOUDWATCH_ENABLED", "true", "GATEWAY_AUTOSCALING_GROUP_NAME is required"),
        ("GATEWAY_LIFECYCLE_WATCH_ENABLED", "true", "GATEWAY_LIFECYCLE_HOOK_NAME are required"),
        ("GATEWAY_TENANTS_SECRET_ID", "tenants", "exactly one of GATEWAY_TENANTS_FILE"),
        ("GATEWAY_LOG_LEVEL", "loud", "GATEWAY_LOG_LEVEL"),
        ("GATEWAY_SLO_TTFT_S", "0", "GATEWAY_SLO_TTFT_S"),
        ("GATEWAY_SLO_TTFT_S", "601", "GATEWAY_SLO_TTFT_S"),
        ("GATEWAY_SLO_E2E_S", "3601", "GATEWAY_SLO_E2E_S"),
        ("GATEWAY_SLO_E2E_S", "4", "GATEWAY_SLO_TTFT_S (5) cannot exceed GATEWAY_SLO_E2E_S"),
        ("GATEWAY_SLO_TENANT_TARGETS", "acme=3", "<tenant>=<ttft_s>:<e2e_s>"),
        ("GATEWAY_SLO_TENANT_TARGETS", "acme=3:40,globex", "cannot read 'globex'"),
        ("GATEWAY_SLO_TENANT_TARGETS", "acme=fast:40", "GATEWAY_SLO_TENANT_TARGETS"),
        ("GATEWAY_SLO_TENANT_TARGETS", "acme=50:40", "'acme' has ttft_s (50) above e2e_s"),
        ("GATEWAY_SLO_TENANT_TARGETS", "acme=0:40", "0 < ttft_s <= 600"),
        ("GATEWAY_SLO_TENANT_TARGETS", "acme=nan:40", "0 < ttft_s <= 600"),
        ("GATEWAY_SLO_TENANT_TARGETS", "acme=3:7200", "0 < e2e_s <= 3600"),
        ("GATEWAY_SLO_TENANT_TARGETS", "ac me=3:40", "is not a tenant id"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(
    local_env: pytest.MonkeyPatch, name: str, value: str, needle: str
) -> None:
    local_env.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert needle in str(refused.value)


def test_slo_targets_default_to_the_policys_and_read_per_tenant_ones(
    local_env: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert (settings.slo_ttft_s, settings.slo_e2e_s) == FLEET_POLICY.slo.targets()
    assert settings.slo_targets_by_tenant == {}
    local_env.setenv("GATEWAY_SLO_TENANT_TARGETS", "acme=3:40,globex=2.5:30")
    assert load_settings().slo_targets_by_tenant == {"acme": (3, 40), "globex": (2.5, 30)}


def test_no_tenants_source_is_refused(local_env: pytest.MonkeyPatch) -> None:
    local_env.delenv("GATEWAY_TENANTS_FILE")
    with pytest.raises(SettingsError, match="GATEWAY_TENANTS_SECRET_ID"):
        load_settings()


def test_settings_are_frozen(local_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    with pytest.raises(ValueError):
        settings.max_n = 9  # type: ignore[misc]
    assert isinstance(settings, GatewaySettings)


def test_every_setting_has_a_row_in_the_readmes_settings_table() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = set(re.findall(r"^\| `(GATEWAY_[A-Z0-9_]+)` \|", readme, re.MULTILINE))
    names = {f"GATEWAY_{field.upper()}" for field in GatewaySettings.model_fields}
    assert names - rows == set(), "settings missing from README's table"
    assert rows - names == set(), "README documents settings the gateway does not have"
