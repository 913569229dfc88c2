"""checkov over the synthesized JSON: no failed check; accepted ones listed in checkov.yaml."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from .conftest import REPO, Synth

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
CONFIG = REPO / "infra" / "stack" / "checkov.yaml"


def test_checkov_finds_no_failure(synth: Synth) -> None:
    assert CHECKOV.exists(), "run `make checkov-venv` (make test does) to install checkov"
    result = subprocess.run(
        [
            str(CHECKOV),
            "--config-file",
            str(CONFIG),
            "-d",
            str(synth.outdir / "stacks"),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    [report] = [r for r in reports if r["check_type"] == "terraform_json"]
    summary = report["summary"]
    failed = [
        (check["check_id"], check["resource"]) for check in report["results"]["failed_checks"]
    ]
    print(f"checkov: {summary}")
    assert summary["parsing_errors"] == 0
    assert failed == []
    assert summary["passed"] > 200
    # Every skip in the config carries a reason on the line above it.
    lines = CONFIG.read_text().splitlines()
    skips = yaml.safe_load(CONFIG.read_text())["skip-check"]
    for check in skips:
        index = lines.index(f"  - {check}")
        assert lines[index - 1].lstrip().startswith("# "), check
