"""Synthesize both stacks once per test session, and one variant without the calendar;
tests read the JSON they wrote."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cdktn import App

from infra.main import TARGET_VERSIONS, build_app
from infra.stack.settings import load_settings
from infra.stack.stack import FleetStack

REPO = Path(__file__).resolve().parents[3]
FIXED_IMAGE = "ami-0123456789abcdef0"


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
