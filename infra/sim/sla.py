"""The service-level objective every simulated config is judged against."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sla:
    """p99 targets for time to first token and end-to-end latency.

    3 s to the first token: an analyst sees the answer start within a breath, covering the
    prefill of the longest admitted prompt (6k tokens, ~2 s on an A10G with a full batch)
    plus about a second of queueing. 60 s end to end: the longest admitted answer (1,024
    tokens) streamed at ~17 tokens/s (a full batch, still faster than a person reads).
    """

    ttft_s: float = 3.0
    e2e_s: float = 60.0
    percentile: float = 99.0

    def __post_init__(self) -> None:
        if not self.ttft_s > 0:
            raise ValueError(f"ttft_s must be > 0, got {self.ttft_s}")
        if not self.e2e_s > 0:
            raise ValueError(f"e2e_s must be > 0, got {self.e2e_s}")
        if not 50 <= self.percentile < 100:
            raise ValueError(f"percentile must be in [50, 100), got {self.percentile}")

    @property
    def attainment_goal(self) -> float:
        """Share of requests that must be within both targets (0.99 for a p99 SLA)."""
        return self.percentile / 100

    def describe(self) -> str:
        p = f"p{self.percentile:g}"
        return f"{p} TTFT <= {self.ttft_s:g} s and {p} end-to-end <= {self.e2e_s:g} s"
