"""The provisioning scripts: shellcheck-clean, strict, and executable."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ami.unitfile import AMI_DIR

SCRIPTS = sorted((AMI_DIR / "scripts").glob("*.sh"))
# Sourced by the others, never run on its own.
LIBRARIES = {"lib.sh"}


def test_there_are_scripts() -> None:
    assert len(SCRIPTS) >= 9


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is missing: run `make ami-tools`")
    # -x follows `source` into lib.sh, found beside the script (source-path=SCRIPTDIR).
    result = subprocess.run(
        ["shellcheck", "--external-sources", "--source-path=SCRIPTDIR", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    "script", [s for s in SCRIPTS if s.name not in LIBRARIES], ids=lambda p: p.name
)
def test_strict_mode_and_executable(script: Path) -> None:
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines[:8]
    assert script.stat().st_mode & 0o111


def test_shellcheck_harness_flags_a_bad_script(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is missing: run `make ami-tools`")
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nset -euo pipefail\nrm -rf $1/*\n")
    result = subprocess.run(["shellcheck", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "SC2086" in result.stdout
