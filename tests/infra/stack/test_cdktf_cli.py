"""The user's command: the real `cdktf synth` (cdktf-cli, installed by `make cdktf-cli`) reads
cdktf.json and writes the same Terraform JSON as `make synth` (`python -m infra.main`).

The CDK Terrain CLI (cdktn-cli 0.24) needs node >= 22.19 and stops on node 20, so the test runs
the archived CDKTF CLI, which reads the same cdktf.json. One synth by each, in directories of
their own: the repository's cdktf.out is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.stack.naming import ENVIRONMENTS, environment_stack_name

from .conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CDKTF = REPO / "build" / "cdktf-cli" / "node_modules" / ".bin" / "cdktf"
SYNTH_TIMEOUT_S = 600


def workdir(tmp_path: Path, name: str) -> Path:
    """A directory holding the repository's cdktf.json as is, its .venv at the same place."""
    directory = tmp_path / name
    directory.mkdir()
    shutil.copy(REPO / "cdktf.json", directory / "cdktf.json")
    (directory / ".venv").symlink_to(REPO / ".venv")
    return directory


def synth_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINSIGHT_", "CDKTF_"))}
    env.update(
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        CHECKPOINT_DISABLE="1",
        CI="1",
        TF_CLI_CONFIG_FILE=str(REPO / "infra" / "terraform.rc"),
    )
    return env


def test_cdktf_synth_writes_what_make_synth_writes(tmp_path: Path) -> None:
    assert CDKTF.exists(), "run `make cdktf-cli` (make test does) to install the cdktf CLI"
    config = json.loads((REPO / "cdktf.json").read_text())
    assert config["language"] == "python"
    # The app the CLI runs is the one `make synth` runs.
    assert config["app"] == ".venv/bin/python -m infra.main"

    cli_dir = workdir(tmp_path, "cdktf-cli")
    started = time.monotonic()
    cli = subprocess.run(
        [str(CDKTF), "synth"],
        cwd=cli_dir,
        env=synth_environment(),
        capture_output=True,
        text=True,
        timeout=SYNTH_TIMEOUT_S,
    )
    elapsed = time.monotonic() - started
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    print(f"cdktf synth: {elapsed:.1f} s", file=sys.stderr)

    make_dir = workdir(tmp_path, "make-synth")
    python = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "infra.main"],
        cwd=make_dir,
        env=synth_environment(),
        capture_output=True,
        text=True,
        timeout=SYNTH_TIMEOUT_S,
    )
    assert python.returncode == 0, python.stderr[-3000:]

    cli_out, make_out = cli_dir / "cdktf.out", make_dir / "cdktf.out"
    assert json.loads((cli_out / "manifest.json").read_text()) == json.loads(
        (make_out / "manifest.json").read_text()
    )
    for environment in ENVIRONMENTS:
        stack = Path("stacks") / environment_stack_name(environment)
        cli_json = json.loads((cli_out / stack / "cdk.tf.json").read_text())
        assert cli_json == json.loads((make_out / stack / "cdk.tf.json").read_text())
        # The Lambda zip the JSON points at, byte for byte.
        cli_assets, make_assets = (
            files(cli_out / stack / "assets"),
            files(make_out / stack / "assets"),
        )
        assert cli_assets == make_assets
        assert any(name.suffix == ".zip" for name in cli_assets)


def files(root: Path) -> dict[Path, bytes]:
    return {path.relative_to(root): path.read_bytes() for path in root.rglob("*") if path.is_file()}
