"""The synthesized stacks, made once per test process in a private folder and parsed.

Synthesis runs in a child interpreter (`infra.main.build_app`), so the jsii node runtime
lives and dies with it and the tests only read Terraform JSON.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.processes import REPO

SYNTH_TIMEOUT_S = 300


@functools.cache
def synth_dir() -> Path:
    """The folder one synthesis of every stack was written to (once per process)."""
    outdir = Path(tempfile.mkdtemp(prefix="finsight-synth-"))
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from infra.main import build_app; build_app(sys.argv[1]).synth()",
            str(outdir),
        ],
        cwd=REPO,
        check=True,
        timeout=SYNTH_TIMEOUT_S,
        capture_output=True,
    )
    return outdir


def synthesized_stacks() -> dict[str, dict[str, Any]]:
    """Stack name -> parsed cdk.tf.json, for every environment the app defines."""
    stacks = {
        path.parent.name: json.loads(path.read_text())
        for path in sorted((synth_dir() / "stacks").glob("*/cdk.tf.json"))
    }
    if not stacks:
        raise RuntimeError(f"synthesis wrote no stack under {synth_dir()}")
    return stacks


def synthesized_files() -> list[Path]:
    """Every file synthesis wrote (stack JSON, manifest, assets), for a scan of raw bytes."""
    return sorted(p for p in synth_dir().rglob("*") if p.is_file())


def resources(stack: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = stack.get("resource", {}).get(kind, {})
    return found
