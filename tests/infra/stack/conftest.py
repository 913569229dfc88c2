"""Synthesize both stacks once per test session, and one variant without the calendar;
tests read the JSON they wrote."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cdktn import App

from infra.main import TARGET_VERSIONS, build_app
from infra.policy import FLEET_POLICY, FleetPolicy
from infra.policy.slo import Slo, TenantSlo
from infra.stack.settings import StackSettings, load_settings
from infra.stack.stack import FleetStack

if TYPE_CHECKING:
    from .emulated import BackgroundCycle

REPO = Path(__file__).resolve().parents[3]
FIXED_IMAGE = "ami-0123456789abcdef0"
# Every setting a deploy needs, in an account of the tests' own (not an example default).
ACCOUNT = "111122223333"
DEPLOY_SETTINGS: dict[str, dict[str, object]] = {
    "dev": {
        "certificate_arn": f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/1111-2222",
        "tenants_secret_arn": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:tenants-AbCdEf",
        "model_location": f"s3://finsight-models-{ACCOUNT}/llama-3.1-8b-instruct/",
    },
}
DEPLOY_SETTINGS["prod"] = {
    **DEPLOY_SETTINGS["dev"],
    "state_bucket": f"finsight-terraform-state-{ACCOUNT}",
}
# The API's name in a hosted zone, no certificate given: the stack requests one.
NAMED_SETTINGS: dict[str, object] = {
    "tenants_secret_arn": DEPLOY_SETTINGS["dev"]["tenants_secret_arn"],
    "state_bucket": f"finsight-terraform-state-{ACCOUNT}",
    "api_domain": "api.finsight.example.com",
    "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
}


# The SLO naming tenants: one with targets of its own, one with the default's, and one with
# the longest id the gateway accepts (the longest alarm names).
LONGEST_TENANT = "t" * 63
TENANT_POLICY = replace(
    FLEET_POLICY,
    slo=Slo(
        tenants=(
            TenantSlo("acme", ttft_s=3, e2e_s=40),
            TenantSlo("globex"),
            TenantSlo(LONGEST_TENANT),
        )
    ),
)


@dataclass(frozen=True)
class Synth:
    outdir: Path
    stacks: dict[str, FleetStack]

    def stack_dir(self, environment: str) -> Path:
        return self.outdir / "stacks" / f"finsight-serving-{environment}"

    def json(self, environment: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(
            (self.stack_dir(environment) / "cdk.tf.json").read_text()
        )
        return document


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdktf.out")
    app = build_app(outdir=str(outdir))
    app.synth()
    stacks = {
        child.settings.environment: child
        for child in app.node.children
        if isinstance(child, FleetStack)
    }
    return Synth(outdir, stacks)


@pytest.fixture(scope="session")
def dev(synth: Synth) -> dict[str, Any]:
    return synth.json("dev")


@pytest.fixture(scope="session")
def prod(synth: Synth) -> dict[str, Any]:
    return synth.json("prod")


@pytest.fixture(scope="session")
def fixed_image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The dev stack given an AMI id instead of the parameter, and the calendar switched off."""
    outdir = tmp_path_factory.mktemp("fixed-image")
    app = App(outdir=str(outdir), context={"targetVersions": TARGET_VERSIONS})
    settings = load_settings(
        "dev", image_ssm_parameter=None, image_id=FIXED_IMAGE, market_calendar=False
    )
    FleetStack(app, settings)
    app.synth()
    document: dict[str, Any] = json.loads(
        (outdir / "stacks" / "finsight-serving-dev" / "cdk.tf.json").read_text()
    )
    return document


def synth_stacks(
    outdir: Path, *settings: StackSettings, policy: FleetPolicy = FLEET_POLICY
) -> dict[str, dict[str, Any]]:
    """One app with a stack per settings object; each stack's JSON by environment."""
    app = App(outdir=str(outdir), context={"targetVersions": TARGET_VERSIONS})
    for one_settings in settings:
        FleetStack(app, one_settings, policy)
    app.synth()
    return {
        one_settings.environment: json.loads(
            (
                outdir / "stacks" / f"finsight-serving-{one_settings.environment}" / "cdk.tf.json"
            ).read_text()
        )
        for one_settings in settings
    }


@pytest.fixture(scope="session")
def deployable_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both stacks with every setting a deploy needs (what the emulator applies)."""
    outdir = tmp_path_factory.mktemp("deployable")
    synth_stacks(
        outdir, *(load_settings(env, **overrides) for env, overrides in DEPLOY_SETTINGS.items())
    )
    return outdir


@pytest.fixture(scope="session")
def deployable(deployable_dir: Path) -> dict[str, dict[str, Any]]:
    return {
        environment: json.loads(
            (
                deployable_dir / "stacks" / f"finsight-serving-{environment}" / "cdk.tf.json"
            ).read_text()
        )
        for environment in DEPLOY_SETTINGS
    }


@pytest.fixture(scope="session")
def named(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The prod stack with an API domain in a hosted zone and no certificate ARN."""
    outdir = tmp_path_factory.mktemp("named")
    return synth_stacks(outdir, load_settings("prod", **NAMED_SETTINGS))["prod"]


@pytest.fixture(scope="session")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The prod stack with an SLO naming three tenants (`TENANT_POLICY`)."""
    outdir = tmp_path_factory.mktemp("tenants")
    return synth_stacks(outdir, load_settings("prod"), policy=TENANT_POLICY)["prod"]


# The emulator cycle of this session, when its tests were collected.
EMULATOR_CYCLE: pytest.StashKey[BackgroundCycle] = pytest.StashKey()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """When the emulator's tests are selected (after -m and -k), start its cycle now and
    run those tests last, so its minutes of provider polling overlap the other tests."""
    from .emulated import start

    emulated = [item for item in items if item.path.name == "test_emulator.py"]
    if not emulated:
        return
    items[:] = [item for item in items if item.path.name != "test_emulator.py"] + emulated
    workdir = Path(tempfile.mkdtemp(prefix="finsight-emulator-"))
    config.add_cleanup(lambda: shutil.rmtree(workdir, ignore_errors=True))
    cycle = start(workdir)
    config.stash[EMULATOR_CYCLE] = cycle
    config.add_cleanup(cycle.stop)
