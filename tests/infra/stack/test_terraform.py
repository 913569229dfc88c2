"""Terraform itself accepts the synthesized JSON, offline, through the project's CLI config."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, Synth

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def terraform_env() -> dict[str, str]:
    # The filesystem mirror at /opt/tf-plugins: no registry is contacted.
    return {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(REPO / "infra" / "terraform.rc"),
        "CHECKPOINT_DISABLE": "1",
    }


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_terraform_init_and_validate_offline(
    synth: Synth, environment: str, tmp_path: Path
) -> None:
    workdir = tmp_path / environment
    shutil.copytree(synth.stack_dir(environment), workdir)
    for command in (["init", "-backend=false"], ["validate"]):
        result = subprocess.run(
            [
                "terraform",
                *command,
                "-no-color",
                *(["-input=false"] if command[0] == "init" else []),
            ],
            cwd=workdir,
            env=terraform_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert "The configuration is valid" in result.stdout
