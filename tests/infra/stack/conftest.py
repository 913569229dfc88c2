"""Synthesize both stacks once per test session; tests read the JSON it wrote."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.main import build_app
from infra.stack.stack import FleetStack

REPO = Path(__file__).resolve().parents[3]


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
