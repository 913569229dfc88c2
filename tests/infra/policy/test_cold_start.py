"""The boot timelines, the figures behind them, and the ASG timings derived from them."""

from __future__ import annotations

import pytest

from infra.policy.cold_start import (
    BAKED_EBS_TIMELINE,
    BOOT_TIMELINE,
    EBS_BURST_BPS,
    GRACE_MARGIN,
    MODEL_BYTES,
    NETWORK_BASELINE_BPS,
    NETWORK_BURST_BPS,
    WARM_POOL_RUNNING_TIMELINE,
    WARM_POOL_TIMELINE,
    WeightPath,
    boot_timeline,
    health_check_grace_period_s,
    instance_warmup_s,
    time_to_ready_quantile_s,
    time_to_ready_s,
    transfer_s,
)

ALL_TIMELINES = [boot_timeline(path, warm) for path in WeightPath for warm in (False, True)]
# g5.xlarge, from the EC2 instance-type documentation: network "up to 10 Gbps" (2.5 Gbps
# baseline), EBS "up to 3.5 Gbps", one 250 GB NVMe instance-store volume, 16 GiB of memory.
G5_XLARGE_NETWORK_GBPS = (10, 2.5)
G5_XLARGE_EBS_BURST_GBPS = 3.5
G5_XLARGE_INSTANCE_STORE_GB = 250


def _phase(timeline: tuple, name: str):  # type: ignore[no-untyped-def]
    return next(phase for phase in timeline if phase.name == name)


@pytest.mark.parametrize("timeline", ALL_TIMELINES)
def test_every_phase_has_a_range_and_a_source(timeline: tuple) -> None:  # type: ignore[type-arg]
    for phase in timeline:
        assert 0 < phase.typical_s <= phase.worst_s, phase.name
        assert phase.source.strip(), phase.name
    assert len({phase.name for phase in timeline}) == len(timeline)


def test_the_baked_timeline_keeps_the_seed_figures() -> None:
    weights = _phase(BAKED_EBS_TIMELINE, "weights-load")
    assert (weights.typical_s, weights.worst_s) == (30, 90)
    assert boot_timeline(WeightPath.BAKED) == BAKED_EBS_TIMELINE


def test_the_rates_are_the_instance_types_documented_ones() -> None:
    assert tuple(gbps * 1e9 / 8 for gbps in G5_XLARGE_NETWORK_GBPS) == (
        NETWORK_BURST_BPS,
        NETWORK_BASELINE_BPS,
    )
    assert EBS_BURST_BPS == G5_XLARGE_EBS_BURST_GBPS * 1e9 / 8
    # The download path's copy fits the instance store with room to spare.
    assert MODEL_BYTES < G5_XLARGE_INSTANCE_STORE_GB * 1e9 / 2


def test_streaming_cannot_beat_the_network_and_its_worst_covers_the_baseline() -> None:
    weights = _phase(BOOT_TIMELINE, "weights-load")
    assert weights.typical_s >= transfer_s(MODEL_BYTES, NETWORK_BURST_BPS)
    assert weights.worst_s >= transfer_s(MODEL_BYTES, NETWORK_BASELINE_BPS)


def test_baked_weights_from_a_warm_volume_cannot_beat_the_ebs_bandwidth() -> None:
    weights = _phase(boot_timeline(WeightPath.BAKED, warm_pool=True), "weights-load")
    assert weights.typical_s >= transfer_s(MODEL_BYTES, EBS_BURST_BPS)
    # Slower than streaming the same bytes from S3: why the warm pool streams too.
    assert weights.typical_s > _phase(WARM_POOL_TIMELINE, "weights-load").typical_s


@pytest.mark.parametrize("path", list(WeightPath))
def test_the_warm_pool_is_never_slower_phase_by_phase(path: WeightPath) -> None:
    fresh, warm = boot_timeline(path), boot_timeline(path, warm_pool=True)
    assert [p.name for p in fresh] == [p.name for p in warm]
    for cold, hot in zip(fresh, warm, strict=True):
        assert hot.worst_s <= cold.worst_s, cold.name
    assert time_to_ready_s(timeline=warm) < time_to_ready_s(timeline=fresh)


def test_the_seeds_typical_baked_load_is_below_what_ebs_allows() -> None:
    # The ADR's 30 s cannot come from EBS at the g5.xlarge's bandwidth (37 s for 16.1 GB):
    # it was a warm page cache or a smaller model. One more reason not to keep that path.
    assert _phase(BAKED_EBS_TIMELINE, "weights-load").typical_s < transfer_s(
        MODEL_BYTES, EBS_BURST_BPS
    )


def test_streaming_is_the_fastest_path_from_nothing() -> None:
    stream = time_to_ready_quantile_s(0.95, boot_timeline(WeightPath.STREAM))
    for path in (WeightPath.BAKED, WeightPath.DOWNLOAD):
        assert stream < time_to_ready_quantile_s(0.95, boot_timeline(path))


def test_only_a_running_pool_reaches_the_45_s_target() -> None:
    # The targets, p95: 45 s from the warm pool, 120 s from nothing. A Stopped pool
    # misses 45 s on these figures (EC2 and the OS alone take 25-60 s); a Running one makes it.
    assert time_to_ready_quantile_s(0.95, WARM_POOL_RUNNING_TIMELINE) < 45
    assert time_to_ready_quantile_s(0.95, WARM_POOL_TIMELINE) > 45


def test_the_quantile_is_a_quantile() -> None:
    assert time_to_ready_s() * 0.8 < time_to_ready_quantile_s(0.01) < time_to_ready_quantile_s(0.5)
    assert time_to_ready_quantile_s(0.5) < time_to_ready_quantile_s(0.95) <= time_to_ready_s(True)


@pytest.mark.parametrize("path", list(WeightPath))
def test_grace_period_covers_the_worst_boot_with_margin(path: WeightPath) -> None:
    grace = health_check_grace_period_s(path)
    worst = time_to_ready_s(worst=True, timeline=boot_timeline(path))
    assert grace >= worst * GRACE_MARGIN
    assert grace % 10 == 0
    assert grace - worst * GRACE_MARGIN < 10


@pytest.mark.parametrize("path", list(WeightPath))
def test_warmup_is_a_typical_boot(path: WeightPath) -> None:
    warmup = instance_warmup_s(path)
    typical = time_to_ready_s(timeline=boot_timeline(path))
    assert typical <= warmup < typical + 10
    assert warmup < health_check_grace_period_s(path)
