"""The figures the evidence tests report: kept in build/evidence/ and printed after the run."""

from __future__ import annotations

import json
from typing import Any

from tests.processes import REPO

FIGURES_DIR = REPO / "build" / "evidence"
_recorded: dict[str, dict[str, Any]] = {}


def record(name: str, found: dict[str, Any]) -> None:
    _recorded[name] = found
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    (FIGURES_DIR / f"{name}.json").write_text(json.dumps(found, indent=2) + "\n")


def print_summary(terminalreporter: Any) -> None:
    """Print what was recorded once, whichever conftest's hook runs first."""
    if not _recorded:
        return
    terminalreporter.section("evidence figures")
    for name, found in _recorded.items():
        terminalreporter.write_line(f"{name}: {json.dumps(found)}")
    _recorded.clear()
