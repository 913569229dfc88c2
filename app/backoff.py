"""Exponential back-off for the background loops (CloudWatch publisher, IMDS watcher)."""

from __future__ import annotations

# 2.0**1024 overflows a float; past 2**62 every delay worth waiting is long since capped.
MAX_EXPONENT = 62


def backoff_delay_s(base_s: float, failures: int, max_s: float) -> float:
    """`base_s` doubled once per consecutive failure, never above `max_s`; any count is safe."""
    if failures <= 0:
        return base_s
    return min(base_s * 2.0 ** min(failures, MAX_EXPONENT), max_s)
