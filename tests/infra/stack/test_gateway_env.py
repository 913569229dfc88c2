"""What the stack writes into gateway.env reaches the gateway: every line is read by the
gateway's settings or by gateway.service's command line, policy edits change it, and the
gateway's keep-alive outlasts the load balancer's idle timeout for every allowed setting."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cdktn import App

from app.settings import GatewaySettings
from contract import GATEWAY_ENV_PATH, GATEWAY_ENV_PREFIX, GATEWAY_KEEP_ALIVE_ENV
from infra.main import TARGET_VERSIONS
from infra.policy import FLEET_POLICY
from infra.policy.gateway import gateway_policy_settings
from infra.policy.loader import policy_from_mapping
from infra.stack import fleet, load_balancer
from infra.stack.settings import StackSettings, load_settings
from infra.stack.stack import FleetStack
from tests.ami.unitfile import (
    UNITS_DIR,
    Unit,
    exec_start_argv,
    option,
    parse_unit,
    unit_assignments,
    unit_environment,
)

from .conftest import DEPLOY_SETTINGS

# A policy proposal that raises the target, lengthens the metric period (the upscale delay
# follows, as `fleet policy` asks) and gives the gateway's queue more room and less time.
RAISED_TARGET = 25
CHANGED_PERIOD_S = 30
CHANGED_MAX_QUEUED = 48
CHANGED_MAX_QUEUE_WAIT_S = 20
LONGEST_REQUEST_S = 1800


def _bound(field: str, name: str) -> int:
    return next(
        int(getattr(item, name))
        for item in StackSettings.model_fields[field].metadata
        if getattr(item, name, None) is not None
    )


ALLOWED_LONGEST_REQUEST_S = range(
    _bound("longest_request_s", "ge"), _bound("longest_request_s", "le") + 1
)


@dataclass(frozen=True)
class Deployed:
    """One synthesized stack: its JSON and the gateway env its user data writes."""

    stack: dict[str, Any]

    @property
    def gateway_env(self) -> dict[str, str]:
        [template] = self.stack["resource"]["aws_launch_template"].values()
        user_data = base64.b64decode(template["user_data"]).decode()
        files = json.loads(user_data.split("\n", 1)[1])["write_files"]
        [content] = [f["content"] for f in files if f["path"] == GATEWAY_ENV_PATH]
        return dict(line.split("=", 1) for line in content.splitlines())

    @property
    def alb_idle_timeout_s(self) -> int:
        [balancer] = self.stack["resource"]["aws_lb"].values()
        return int(balancer["idle_timeout"])


@pytest.fixture(scope="module")
def changed(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """The dev stack with a changed policy and a longer longest request."""
    policy = policy_from_mapping(
        {
            "default": {
                "target_ongoing_requests": RAISED_TARGET,
                "metric_period_s": CHANGED_PERIOD_S,
                "upscale_delay_s": 3 * CHANGED_PERIOD_S,
            },
            "queue": {
                "max_queued": CHANGED_MAX_QUEUED,
                "max_queue_wait_s": CHANGED_MAX_QUEUE_WAIT_S,
            },
        },
        FLEET_POLICY,
    )
    outdir = tmp_path_factory.mktemp("changed-policy")
    app = App(outdir=str(outdir), context={"targetVersions": TARGET_VERSIONS})
    settings = load_settings("dev", **DEPLOY_SETTINGS["dev"], longest_request_s=LONGEST_REQUEST_S)
    FleetStack(app, settings, policy)
    app.synth()
    path = outdir / "stacks" / "finsight-serving-dev" / "cdk.tf.json"
    return Deployed(json.loads(path.read_text()))


@pytest.fixture(params=["dev", "prod"])
def deployed(request: pytest.FixtureRequest, deployable: dict[str, dict[str, Any]]) -> Deployed:
    # With every deploy setting: a review synth names no tenants secret, so its env file
    # could not start a gateway (its plan stops on a precondition first).
    return Deployed(deployable[request.param])


@pytest.fixture(scope="module")
def gateway_unit() -> Unit:
    return parse_unit(UNITS_DIR / "gateway.service")


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> GatewaySettings:
    """The gateway's settings as it loads them from exactly this environment."""
    for key in list(os.environ):
        if key.startswith(GATEWAY_ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return GatewaySettings()


def _keep_alive_s(unit: Unit, gateway_env: dict[str, str], tmp_path: Path) -> int:
    """--timeout-keep-alive on gateway.service's command line, given this gateway.env."""
    env_file = tmp_path / "gateway.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in gateway_env.items()))
    env = unit_environment(unit, {GATEWAY_ENV_PATH: env_file})
    return int(option(exec_start_argv(unit, env), "--timeout-keep-alive"))


# --- policy edits reach the gateways ---------------------------------------------------


def test_a_policy_change_changes_the_written_env(
    changed: Deployed, deployable: dict[str, dict[str, Any]]
) -> None:
    before = Deployed(deployable["dev"]).gateway_env
    after = changed.gateway_env
    assert before["GATEWAY_MAX_RUNNING_SEQUENCES"] == after["GATEWAY_MAX_RUNNING_SEQUENCES"] == "12"
    assert before["GATEWAY_MAX_QUEUED_SEQUENCES"] == "16"
    assert after["GATEWAY_MAX_QUEUED_SEQUENCES"] == str(CHANGED_MAX_QUEUED)
    assert before["GATEWAY_TENANT_MAX_QUEUED_SEQUENCES"] == "8"
    assert after["GATEWAY_TENANT_MAX_QUEUED_SEQUENCES"] == str(CHANGED_MAX_QUEUED // 2)
    assert before["GATEWAY_MAX_QUEUE_WAIT_S"] == "30"
    assert after["GATEWAY_MAX_QUEUE_WAIT_S"] == str(CHANGED_MAX_QUEUE_WAIT_S)
    assert before["GATEWAY_CLOUDWATCH_INTERVAL_S"] == "10"
    assert after["GATEWAY_CLOUDWATCH_INTERVAL_S"] == str(CHANGED_PERIOD_S)


def test_the_changed_env_loads_with_the_new_values(
    changed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings_from(changed.gateway_env, monkeypatch)
    assert settings.max_queued_sequences == CHANGED_MAX_QUEUED
    assert settings.tenant_max_queued_sequences == CHANGED_MAX_QUEUED // 2
    assert settings.max_queue_wait_s == CHANGED_MAX_QUEUE_WAIT_S
    assert settings.cloudwatch_interval_s == CHANGED_PERIOD_S


def test_every_gateway_variable_written_is_a_setting_and_loads(
    deployed: Deployed, gateway_unit: Unit, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = deployed.gateway_env
    fields = set(GatewaySettings.model_fields)
    for key in env:
        if key.startswith(GATEWAY_ENV_PREFIX):
            assert key.removeprefix(GATEWAY_ENV_PREFIX).lower() in fields, key
    # Anything else is read by the unit's command line, not ignored.
    others = {key for key in env if not key.startswith(GATEWAY_ENV_PREFIX)}
    assert others == {GATEWAY_KEEP_ALIVE_ENV}
    command = dict(gateway_unit["Service"])["ExecStart"]
    assert f"${{{GATEWAY_KEEP_ALIVE_ENV}}}" in command
    # The whole file loads, and says what the stack meant.
    settings = _settings_from(env, monkeypatch)
    for key, value in env.items():
        if key.startswith(GATEWAY_ENV_PREFIX):
            loaded = getattr(settings, key.removeprefix(GATEWAY_ENV_PREFIX).lower())
            assert str(loaded) == value or float(loaded) == float(value), key


def test_every_policy_derived_setting_is_written(deployed: Deployed) -> None:
    derived = gateway_policy_settings(FLEET_POLICY).env()
    assert derived.items() <= deployed.gateway_env.items()


def test_the_gateways_local_defaults_are_the_shipped_policys() -> None:
    # make serve and the tests run without the stack; they see what a default deploy writes.
    derived = gateway_policy_settings(FLEET_POLICY)
    defaults = GatewaySettings.model_fields
    for name in (
        "max_running_sequences",
        "max_queued_sequences",
        "tenant_max_queued_sequences",
        "max_queue_wait_s",
        "slo_ttft_s",
        "slo_e2e_s",
        "slo_tenant_targets",
    ):
        assert defaults[name].default == getattr(derived, name), name
    assert defaults["cloudwatch_interval_s"].default == derived.cloudwatch_interval_s


# --- keep-alive against the load balancer's idle timeout -------------------------------


def test_synthesized_alb_idle_timeout_is_below_the_units_keep_alive(
    deployed: Deployed, changed: Deployed, gateway_unit: Unit, tmp_path: Path
) -> None:
    for stack in (deployed, changed):
        keep_alive_s = _keep_alive_s(gateway_unit, stack.gateway_env, tmp_path)
        assert keep_alive_s > stack.alb_idle_timeout_s
    # One setting moves both.
    assert changed.alb_idle_timeout_s == LONGEST_REQUEST_S
    assert _keep_alive_s(gateway_unit, changed.gateway_env, tmp_path) > LONGEST_REQUEST_S


def test_keep_alive_outlasts_the_idle_timeout_for_every_allowed_longest_request(
    gateway_unit: Unit, tmp_path: Path
) -> None:
    policy = gateway_policy_settings(FLEET_POLICY)
    for longest_request_s in ALLOWED_LONGEST_REQUEST_S:
        env = fleet.GatewayEnv(
            tenants_secret_id="finsight/tenants",
            cloudwatch_namespace="FinsightServing",
            autoscaling_group_name="finsight-serving-prod",
            lifecycle_hook_name="finsight-serving-prod-drain",
            region="us-east-1",
            drain_deadline_s=longest_request_s,
            policy=policy,
            keep_alive_s=load_balancer.backend_keep_alive_s(longest_request_s),
        ).values()
        keep_alive_s = int(
            option(
                exec_start_argv(gateway_unit, {**unit_assignments(gateway_unit), **env}),
                "--timeout-keep-alive",
            )
        )
        assert keep_alive_s > load_balancer.idle_timeout_s(longest_request_s), longest_request_s


def test_the_units_fallback_keep_alive_outlasts_any_idle_timeout(gateway_unit: Unit) -> None:
    # An env file from a stack older than the image has no keep-alive line.
    fallback = int(unit_assignments(gateway_unit)[GATEWAY_KEEP_ALIVE_ENV])
    assert fallback > load_balancer.idle_timeout_s(ALLOWED_LONGEST_REQUEST_S[-1])
