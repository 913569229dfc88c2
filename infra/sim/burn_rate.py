"""Replay the SLO's burn-rate alarms on a series of counted requests: would the deployed
stack have paged (fast window) or ticketed (slow window) on this traffic, and for how long?

The alarms evaluate every minute, as the stack's do: at the end of each minute, the error
ratio (misses / requests counted) over the long window and over the short window, each
sliding and ending at that minute; the alarm is in ALARM when both ratios are at least
`burn_rate x error_budget` and each window counted at least `min_requests` requests (a
window with fewer never alarms: one failure in three requests at night is no page).
A firing is a change from OK to ALARM. Pure functions on arrays; no simulator state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from infra.policy.slo import BurnRateWindow, Slo

EVALUATION_PERIOD_S = 60
# Ratios are compared as `misses >= threshold x counted`; this absorbs the float error of
# a threshold such as 13.44 x 0.01 so an exact hit of the threshold alarms.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class AlarmReplay:
    """One burn-rate window's alarm over a replayed span."""

    window: str  # "fast" or "slow"
    severity: str  # "page" or "ticket"
    burn_rate: float
    firings: int  # OK -> ALARM transitions
    minutes_in_alarm: int

    def as_json(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "burn_rate": self.burn_rate,
            "firings": self.firings,
            "minutes_in_alarm": self.minutes_in_alarm,
        }


def per_minute(
    settled_s: npt.NDArray[np.float64],
    missed: npt.NDArray[np.bool_],
    start_s: float,
    end_s: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Requests counted and misses per minute from `start_s`; a request counts in the
    minute it settled (its last token, or its final error). The span runs to `end_s` or the
    last settled request, whichever is later."""
    last = float(settled_s.max()) if settled_s.size else end_s
    minutes = max(1, math.ceil((max(end_s, last) - start_s) / EVALUATION_PERIOD_S))
    index = np.clip(((settled_s - start_s) // EVALUATION_PERIOD_S).astype(np.int64), 0, minutes - 1)
    counted = np.bincount(index, minlength=minutes).astype(np.int64)
    misses = np.bincount(index, weights=missed.astype(np.float64), minlength=minutes)
    return counted, misses.astype(np.int64)


def _window_sums(series: npt.NDArray[np.int64], minutes: int) -> npt.NDArray[np.int64]:
    """At each minute m, the sum of `series` over the `minutes` ending with m."""
    total = np.concatenate(([0], np.cumsum(series)))
    ends = np.arange(1, series.size + 1)
    starts = np.maximum(ends - minutes, 0)
    sums: npt.NDArray[np.int64] = total[ends] - total[starts]
    return sums


def in_alarm(
    counted: npt.NDArray[np.int64],
    misses: npt.NDArray[np.int64],
    window: BurnRateWindow,
    error_budget: float,
    min_requests: int,
) -> npt.NDArray[np.bool_]:
    """Per minute, whether the window's alarm is in ALARM at that minute's evaluation."""
    threshold = window.error_ratio(error_budget)
    state = np.ones(counted.size, dtype=bool)
    for seconds in (window.long_window_s, window.short_window_s):
        span = max(1, seconds // EVALUATION_PERIOD_S)
        n = _window_sums(counted, span)
        bad = _window_sums(misses, span)
        state &= (n >= min_requests) & (bad >= threshold * n - _TOLERANCE)
    return state


def replay(
    counted: npt.NDArray[np.int64], misses: npt.NDArray[np.int64], slo: Slo
) -> dict[str, AlarmReplay]:
    """Every burn-rate window of `slo` replayed on per-minute counts, by window name."""
    result: dict[str, AlarmReplay] = {}
    for window in slo.burn_rate_windows():
        state = in_alarm(counted, misses, window, slo.error_budget, slo.min_requests)
        rises = np.count_nonzero(state[1:] & ~state[:-1]) + int(state[:1].sum())
        result[window.name] = AlarmReplay(
            window=window.name,
            severity=str(window.severity),
            burn_rate=window.burn_rate,
            firings=int(rises),
            minutes_in_alarm=int(np.count_nonzero(state)),
        )
    return result


def span_text(seconds: int) -> str:
    """A window's length as people say it: "1 h", "5 min"."""
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min"


def window_json(window: BurnRateWindow, error_budget: float) -> dict[str, object]:
    """One burn-rate window as `fleet policy --json` and `fleet simulate --json` show it."""
    return {
        "severity": str(window.severity),
        "long_window_s": window.long_window_s,
        "short_window_s": window.short_window_s,
        "budget_share": window.budget_share,
        "burn_rate": window.burn_rate,
        "error_ratio": round(window.error_ratio(error_budget), 10),
    }


def budget_burn(misses: int, requests: int, error_budget: float) -> float:
    """The miss ratio in multiples of the error budget: 1.0 spends the budget exactly at
    its even rate over the SLO window; 2.0 would exhaust it in half the window."""
    if not requests:
        return 0.0
    return misses / requests / error_budget
