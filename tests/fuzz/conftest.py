"""The fuzz tests report their case counts with the stress tests' figures."""

from __future__ import annotations

from typing import Any

from tests.stress.figures import print_summary


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_summary(terminalreporter)
