"""Validation of ScalingConfig and FleetPolicy: each bad value is refused, naming its field."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from infra.policy import (
    DEFAULT,
    FLEET_POLICY,
    MARKET_HOURS,
    MarketHours,
    PolicyError,
    SpecialDay,
    coupling_warnings,
)


def test_seed_configs_are_the_adr_numbers() -> None:
    assert (DEFAULT.min_replicas, DEFAULT.max_replicas) == (1, 4)
    assert (MARKET_HOURS.min_replicas, MARKET_HOURS.max_replicas) == (2, 4)
    for config in (DEFAULT, MARKET_HOURS):
        assert config.target_ongoing_requests == 10
        assert (config.upscale_delay_s, config.downscale_delay_s) == (30, 300)
        assert config.smoothing_factor == 0.5
        assert config.metric_period_s == 10
    assert FLEET_POLICY.warnings() == []


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"min_replicas": 5}, "min_replicas", "must be <= max_replicas (4)"),
        ({"min_replicas": -1}, "min_replicas", "must be >= 0"),
        ({"max_replicas": 17}, "max_replicas", "between 1 and 16"),
        ({"max_replicas": 0, "min_replicas": 0}, "max_replicas", "between 1 and 16"),
        ({"smoothing_factor": 0.0}, "smoothing_factor", "(0, 1]"),
        ({"smoothing_factor": 1.5}, "smoothing_factor", "(0, 1]"),
        ({"upscale_smoothing_factor": -0.1}, "upscale_smoothing_factor", "(0, 1]"),
        ({"upscale_delay_s": 35}, "upscale_delay_s", "multiple of metric_period_s (10)"),
        ({"downscale_delay_s": 305}, "downscale_delay_s", "multiple of metric_period_s"),
        ({"upscale_delay_s": 5}, "upscale_delay_s", "between metric_period_s (10)"),
        ({"downscale_delay_s": 7200}, "downscale_delay_s", "and 3600"),
        ({"metric_period_s": 15}, "metric_period_s", "10, 20, 30 or a multiple of 60"),
        ({"target_ongoing_requests": 0}, "target_ongoing_requests", "must be > 0"),
        ({"min_replicas": 1.5}, "min_replicas", "whole number"),
    ],
)
def test_invalid_scaling_config_names_field_and_range(
    changes: dict[str, object], field: str, fragment: str
) -> None:
    with pytest.raises(PolicyError) as raised:
        dataclasses.replace(DEFAULT, **changes)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert fragment in str(raised.value)
    assert str(raised.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"close_time": dt.time(8, 0)}, "close_time", "must be after open_time (09:00)"),
        ({"time_zone": "America/New_Yrok"}, "time_zone", "unknown IANA time zone"),
        ({"time_zone": "../etc/passwd"}, "time_zone", "unknown IANA time zone"),
        ({"early_close_time": dt.time(17, 0)}, "early_close_time", "not after close_time"),
        ({"weekdays": (0, 7)}, "weekdays", "0 (Mon) .. 6 (Sun)"),
        ({"prewarm_lead_s": -1}, "prewarm_lead_s", "between 0 and 10800"),
        ({"exchange": "LSE"}, "exchange", "must be one of"),
    ],
)
def test_invalid_market_hours_names_field(
    changes: dict[str, object], field: str, fragment: str
) -> None:
    with pytest.raises(PolicyError) as raised:
        dataclasses.replace(MarketHours(), **changes)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert fragment in str(raised.value)


def test_market_hours_config_may_differ_only_in_minimum() -> None:
    with pytest.raises(PolicyError, match=r"market_hours\.target_ongoing_requests: must equal"):
        dataclasses.replace(
            FLEET_POLICY, market_hours=dataclasses.replace(MARKET_HOURS, target_ongoing_requests=5)
        )
    with pytest.raises(PolicyError, match=r"market_hours\.min_replicas: must be >= default"):
        dataclasses.replace(
            FLEET_POLICY,
            default=dataclasses.replace(DEFAULT, min_replicas=3),
            market_hours=dataclasses.replace(MARKET_HOURS, min_replicas=2),
        )


def test_special_days_are_validated() -> None:
    day = dt.date(2026, 12, 18)
    with pytest.raises(PolicyError, match=r"special_days\[0\]\.min_replicas: must be <= max"):
        dataclasses.replace(
            FLEET_POLICY,
            special_days=(SpecialDay(day, dt.time(9), dt.time(16), 5, "rebalance"),),
        )
    with pytest.raises(PolicyError, match=r"special_days\[1\]: window 12:00-17:00 .* overlaps"):
        dataclasses.replace(
            FLEET_POLICY,
            special_days=(
                SpecialDay(day, dt.time(9), dt.time(16), 3, "rebalance"),
                SpecialDay(day, dt.time(12), dt.time(17), 3, "earnings"),
            ),
        )
    with pytest.raises(PolicyError, match="end: must be after start"):
        SpecialDay(day, dt.time(16), dt.time(9), 3, "backwards")
    with pytest.raises(PolicyError, match="reason: must say why"):
        SpecialDay(day, dt.time(9), dt.time(16), 3, " ")


def test_coupling_warning_fires_when_target_drops_without_longer_up_delay() -> None:
    # GIVEN the seed's tuning, WHEN the target is lowered to 2 and the up delay left at 30 s
    retuned_target_only = dataclasses.replace(DEFAULT, target_ongoing_requests=2)
    warnings = coupling_warnings(retuned_target_only)
    # THEN the check asks for the delay that restores the seed's noise budget (2 x 15 = 30)
    assert len(warnings) == 1
    assert "raise upscale_delay_s to >= 150" in warnings[0]
    retuned_both = dataclasses.replace(
        retuned_target_only, upscale_delay_s=150, downscale_delay_s=750
    )
    assert coupling_warnings(retuned_both) == []


def test_coupling_warning_on_down_delay_too_close_to_up_delay() -> None:
    warnings = coupling_warnings(dataclasses.replace(DEFAULT, downscale_delay_s=60))
    assert any("reversals" in warning for warning in warnings)
