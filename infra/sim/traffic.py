"""The reference traffic: the ADR's 5 tenants x 2,000 queries a day, in market hours.

Each trading day has an open peak and a close peak on a market-hours plateau, a few news
bursts (every tenant's rate jumps, then decays) and per-tenant batch bursts (one tenant
submits a block of requests within a minute). Weekends and exchange holidays carry a small
share of a weekday's volume; early-close days end the plateau at the early close.
On a market event's date (FOMC statement, a data release) every tenant's rate jumps at the
release minute for `event_burst_min` minutes, then decays; that volume comes on top of the
day's. Arrivals are drawn per 10 s bin with numpy; a day is seeded by (seed, date), so a day's
traffic is the same whichever range it is generated in.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from infra.policy.calendar import trading_day
from infra.policy.events import MarketEvent
from infra.policy.market_hours import MarketHours
from infra.sim.trace import IntArray, Trace, local_midnight

BIN_S = 10.0


@dataclass(frozen=True)
class Scenario:
    """The knobs of the reference day; defaults are the ADR's scenario."""

    tenants: int = 5
    qpd_per_tenant: int = 2_000
    # Intraday shape, relative to the market-hours plateau (1.0).
    night_level: float = 0.03
    open_peak: float = 2.0  # extra rate at the open peak
    open_peak_after_open_min: float = 35.0
    open_peak_width_min: float = 20.0
    close_peak: float = 1.5
    close_peak_before_close_min: float = 20.0
    close_peak_width_min: float = 15.0
    # News: every tenant's rate rises by `news_burst_extra` x the plateau, decaying with
    # `news_burst_decay_min`; bursts start uniformly within market hours.
    news_bursts_per_day: float = 3.0
    news_burst_extra: float = 3.0
    news_burst_decay_min: float = 8.0
    # Batch jobs: a tenant submits `batch_burst_requests` within `batch_burst_window_s`.
    batch_bursts_per_tenant_day: float = 1.5
    batch_burst_share: float = 0.015  # of the tenant's daily volume: 30 requests at 2,000 qpd
    batch_burst_window_s: float = 60.0
    # Market events: `event_burst_extra` x the plateau from the release minute for
    # `event_burst_min` minutes (FOMC statement 14:00-14:30), decaying over
    # `event_burst_decay_min` after it.
    event_burst_extra: float = 4.0
    event_burst_min: float = 30.0
    event_burst_decay_min: float = 5.0
    quiet_day_share: float = 0.04  # weekend / holiday volume relative to a trading day
    early_close_share: float = 0.6
    # Tokens: log-normal around a median, clipped to what the gateway admits. Financial
    # analytics sends retrieved filings and news (long prompts) for a few-paragraph answer.
    prompt_median: float = 2_500.0
    prompt_sigma: float = 0.5
    prompt_range: tuple[int, int] = (64, 6_144)
    output_median: float = 300.0
    output_sigma: float = 0.5
    output_range: tuple[int, int] = (16, 1_024)

    def __post_init__(self) -> None:
        if self.tenants < 1:
            raise ValueError(f"tenants must be >= 1, got {self.tenants}")
        if self.qpd_per_tenant < 0:
            raise ValueError(f"qpd_per_tenant must be >= 0, got {self.qpd_per_tenant}")

    @property
    def qpd(self) -> int:
        return self.tenants * self.qpd_per_tenant


@dataclass
class _Day:
    arrival_s: list[np.ndarray]
    tenant: list[np.ndarray]
    prompt_tokens: list[np.ndarray]
    output_tokens: list[np.ndarray]
    bursts: list[float]


def _gaussian(x: np.ndarray, centre: float, width: float) -> np.ndarray:
    result: np.ndarray = np.exp(-0.5 * ((x - centre) / width) ** 2)
    return result


def _intensity(
    scenario: Scenario, minutes: np.ndarray, open_min: float, close_min: float
) -> np.ndarray:
    """Relative arrival rate per bin (local wall-clock minutes) on a trading day."""
    ramp_in = np.clip((minutes - (open_min - 120)) / 120, 0, 1)
    ramp_out = np.clip(1 - (minutes - close_min) / 60, 0, 1)
    plateau = np.minimum(ramp_in, ramp_out)
    rate = scenario.night_level + (1 - scenario.night_level) * plateau
    rate = rate + scenario.open_peak * _gaussian(
        minutes, open_min + scenario.open_peak_after_open_min, scenario.open_peak_width_min
    )
    rate = rate + scenario.close_peak * _gaussian(
        minutes, close_min - scenario.close_peak_before_close_min, scenario.close_peak_width_min
    )
    result: np.ndarray = rate
    return result


def _tokens(
    rng: np.random.Generator, median: float, sigma: float, bounds: tuple[int, int], size: int
) -> np.ndarray:
    drawn = rng.lognormal(math.log(median), sigma, size)
    result: np.ndarray = np.clip(np.rint(drawn), bounds[0], bounds[1]).astype(np.int64)
    return result


def _one_day(
    scenario: Scenario,
    hours: MarketHours,
    date: dt.date,
    seed: int,
    events: Sequence[MarketEvent] = (),
) -> _Day:
    rng = np.random.default_rng((seed, date.toordinal()))
    zone = hours.zone
    start = local_midnight(date, zone)
    end = local_midnight(date + dt.timedelta(days=1), zone)
    bins = round((end - start) / BIN_S)
    elapsed_min = (np.arange(bins) * BIN_S + BIN_S / 2) / 60.0
    # Wall-clock minutes: DST switches on a whole hour, so one offset per elapsed hour.
    offset_start = _offset_s(start, zone)
    hourly = np.array(
        [_offset_s(start + h * 3600, zone) - offset_start for h in range(bins // 360 + 1)]
    )
    minutes = elapsed_min + hourly[(np.arange(bins) * BIN_S // 3600).astype(int)] / 60.0
    # Market hours lie after any DST switch (02:00), so the day's closing offset applies.
    market_shift_s = _offset_s(end - 1, zone) - offset_start

    day = trading_day(hours.exchange, date)
    trading = date.weekday() in hours.weekdays and not day.is_holiday
    open_min = hours.open_time.hour * 60 + hours.open_time.minute
    close = hours.early_close_time if day.is_early_close else hours.close_time
    close_min = close.hour * 60 + close.minute

    def epoch_of(wall_min: float) -> float:
        return start + wall_min * 60 - market_shift_s

    bursts: list[float] = []
    if not trading:
        weights = np.full(bins, 1.0)
        volume = scenario.qpd_per_tenant * scenario.quiet_day_share
    else:
        weights = _intensity(scenario, minutes, open_min, close_min)
        volume = scenario.qpd_per_tenant * (
            scenario.early_close_share if day.is_early_close else 1.0
        )
        for _ in range(rng.poisson(scenario.news_bursts_per_day)):
            begins = rng.uniform(open_min, close_min - 30)
            after = np.maximum(minutes - begins, 0)
            decay = np.where(minutes >= begins, np.exp(-after / scenario.news_burst_decay_min), 0)
            weights = weights + scenario.news_burst_extra * decay
            bursts.append(epoch_of(begins))
        ordinary = weights.sum()
        for event in events:
            if event.date != date:
                continue
            release = event.release.hour * 60 + event.release.minute
            after = minutes - release
            level = np.where(
                after < scenario.event_burst_min,
                1.0,
                np.exp(-(after - scenario.event_burst_min) / scenario.event_burst_decay_min),
            )
            weights = weights + scenario.event_burst_extra * np.where(after >= 0, level, 0)
            bursts.append(epoch_of(release))
        # The event's requests come on top of the day's rather than out of it.
        volume *= weights.sum() / ordinary
    probabilities = weights / weights.sum()
    day_parts = _Day([], [], [], [], bursts)
    for tenant in range(scenario.tenants):
        blocks: list[np.ndarray] = []
        if trading:
            for _ in range(rng.poisson(scenario.batch_bursts_per_tenant_day)):
                begins_s = epoch_of(rng.uniform(open_min, close_min - 5))
                size = round(scenario.batch_burst_share * volume)
                if size == 0:
                    continue  # too little traffic for a batch job
                offsets = rng.random(size) * scenario.batch_burst_window_s
                blocks.append(begins_s + offsets)
                bursts.append(begins_s)
        count = max(round(volume) - sum(block.size for block in blocks), 0)
        per_bin = rng.multinomial(count, probabilities)
        spread = np.repeat(np.arange(bins) * BIN_S, per_bin) + rng.random(count) * BIN_S
        times = np.concatenate([start + spread, *blocks])
        day_parts.arrival_s.append(times)
        day_parts.tenant.append(np.full(times.size, tenant, dtype=np.int64))
        day_parts.prompt_tokens.append(
            _tokens(
                rng,
                scenario.prompt_median,
                scenario.prompt_sigma,
                scenario.prompt_range,
                times.size,
            )
        )
        day_parts.output_tokens.append(
            _tokens(
                rng,
                scenario.output_median,
                scenario.output_sigma,
                scenario.output_range,
                times.size,
            )
        )
    return day_parts


def _offset_s(epoch: float, zone: ZoneInfo) -> float:
    offset = dt.datetime.fromtimestamp(epoch, zone).utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def generate(
    scenario: Scenario,
    hours: MarketHours,
    start: dt.date,
    days: int,
    seed: int,
    events: Sequence[MarketEvent] = (),
) -> Trace:
    """The reference traffic for `days` local days from `start`, deterministic for `seed`;
    `events` add their bursts on their dates."""
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    parts = [
        _one_day(scenario, hours, start + dt.timedelta(days=i), seed, events) for i in range(days)
    ]
    arrival_s = np.concatenate([a for part in parts for a in part.arrival_s])
    order = np.argsort(arrival_s, kind="stable")

    def joined(arrays: list[np.ndarray]) -> IntArray:
        result: IntArray = np.concatenate(arrays)[order]
        return result

    zone = hours.zone
    return Trace(
        arrival_s=arrival_s[order],
        tenant=joined([t for part in parts for t in part.tenant]),
        prompt_tokens=joined([p for part in parts for p in part.prompt_tokens]),
        output_tokens=joined([o for part in parts for o in part.output_tokens]),
        tenants=tuple(f"tenant-{i + 1}" for i in range(scenario.tenants)),
        start_s=local_midnight(start, zone),
        end_s=local_midnight(start + dt.timedelta(days=days), zone),
        burst_starts_s=tuple(sorted(b for part in parts for b in part.bursts)),
    )
