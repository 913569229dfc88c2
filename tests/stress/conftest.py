"""Fixtures for the stress tests: a folder for process logs, and the figures to report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stress.figures import print_summary, record


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """What a test measured; printed at the end of the run and kept in build/evidence/."""
    found: dict[str, Any] = {}
    yield found
    if found:
        record(request.node.name, found)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_summary(terminalreporter)


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path
