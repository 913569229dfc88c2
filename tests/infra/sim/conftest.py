"""Fixtures of the simulator tests."""

from __future__ import annotations

import pytest

from tests.infra.sim.traces import CraftTrace, craft_trace


@pytest.fixture
def crafted() -> CraftTrace:
    return craft_trace
