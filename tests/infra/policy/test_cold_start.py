"""The boot timeline and the ASG timings derived from it."""

from __future__ import annotations

from infra.policy.cold_start import (
    BOOT_TIMELINE,
    GRACE_MARGIN,
    health_check_grace_period_s,
    instance_warmup_s,
    time_to_ready_s,
)


def test_every_phase_has_a_range_and_a_source() -> None:
    for phase in BOOT_TIMELINE:
        assert 0 < phase.typical_s <= phase.worst_s, phase.name
        assert phase.source.strip(), phase.name
    assert len({phase.name for phase in BOOT_TIMELINE}) == len(BOOT_TIMELINE)


def test_model_load_phase_carries_the_seed_figures() -> None:
    weights = next(phase for phase in BOOT_TIMELINE if phase.name == "weights-load")
    assert (weights.typical_s, weights.worst_s) == (30, 90)


def test_grace_period_covers_the_worst_boot_with_margin() -> None:
    grace = health_check_grace_period_s()
    assert grace >= time_to_ready_s(worst=True) * GRACE_MARGIN
    assert grace % 10 == 0
    assert grace - time_to_ready_s(worst=True) * GRACE_MARGIN < 10


def test_warmup_is_a_typical_boot() -> None:
    warmup = instance_warmup_s()
    assert time_to_ready_s() <= warmup < time_to_ready_s() + 10
    assert warmup < health_check_grace_period_s()
