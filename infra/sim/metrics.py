"""Summaries of one run: latency percentiles, SLA attainment, cost, scaling behaviour."""

from __future__ import annotations

import bisect
import itertools
import statistics
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from infra.sim.engine import RunResult
from infra.sim.sla import Sla
from infra.sim.trace import FloatArray, Trace

REVERSAL_WINDOW_S = 600.0  # an opposite scale event within 10 minutes counts as a reversal
BURST_RESPONSE_WINDOW_S = 1800.0  # capacity added later than this is not the burst's doing


@dataclass(frozen=True)
class LatencySummary:
    requests: int
    p50_ttft_s: float
    p99_ttft_s: float
    p50_e2e_s: float
    p99_e2e_s: float
    sla_attainment: float
    meets_sla: bool


@dataclass(frozen=True)
class ConfigReport:
    """One config's row of the report (JSON keys are these field names)."""

    config: str
    latency: LatencySummary
    gpu_hours: float
    cost_usd: float
    scale_events: int
    reversals: int
    burst_to_capacity_s: float | None  # median over bursts that got added capacity
    bursts_without_added_capacity: int
    failed_requests: int
    per_tenant: dict[str, LatencySummary] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        latency = self.latency
        return {
            "config": self.config,
            "requests": latency.requests,
            "p50_ttft_s": latency.p50_ttft_s,
            "p99_ttft_s": latency.p99_ttft_s,
            "p50_e2e_s": latency.p50_e2e_s,
            "p99_e2e_s": latency.p99_e2e_s,
            "sla_attainment": latency.sla_attainment,
            "meets_sla": latency.meets_sla,
            "gpu_hours": self.gpu_hours,
            "cost_usd": self.cost_usd,
            "scale_events": self.scale_events,
            "reversals": self.reversals,
            "burst_to_capacity_s": self.burst_to_capacity_s,
            "bursts_without_added_capacity": self.bursts_without_added_capacity,
            "failed_requests": self.failed_requests,
            "per_tenant": {name: dict(vars(summary)) for name, summary in self.per_tenant.items()},
        }


def _percentile(values: FloatArray, q: float) -> float:
    if values.size == 0:
        return 0.0
    # "higher" never interpolates, so failed requests (inf) give inf rather than nan.
    return float(np.percentile(values, q, method="higher"))


def _within(ttft_s: FloatArray, e2e_s: FloatArray, sla: Sla) -> npt.NDArray[np.bool_]:
    within: npt.NDArray[np.bool_] = (ttft_s <= sla.ttft_s) & (e2e_s <= sla.e2e_s)
    return within


def within_sla(result: RunResult, sla: Sla) -> npt.NDArray[np.bool_]:
    return _within(result.ttft_s, result.e2e_s, sla)


def latency_summary(ttft_s: FloatArray, e2e_s: FloatArray, sla: Sla) -> LatencySummary:
    p99_ttft = _percentile(ttft_s, sla.percentile)
    p99_e2e = _percentile(e2e_s, sla.percentile)
    attainment = float(np.mean(_within(ttft_s, e2e_s, sla))) if ttft_s.size else 1.0
    return LatencySummary(
        requests=int(ttft_s.size),
        p50_ttft_s=_percentile(ttft_s, 50),
        p99_ttft_s=p99_ttft,
        p50_e2e_s=_percentile(e2e_s, 50),
        p99_e2e_s=p99_e2e,
        sla_attainment=attainment,
        meets_sla=p99_ttft <= sla.ttft_s and p99_e2e <= sla.e2e_s,
    )


def count_reversals(events: list[tuple[float, int, int]]) -> int:
    """Scale events that undo the previous one's direction within ten minutes."""
    reversals = 0
    for (previous_s, old, new), (now_s, old2, new2) in itertools.pairwise(events):
        if (new - old) * (new2 - old2) < 0 and now_s - previous_s <= REVERSAL_WINDOW_S:
            reversals += 1
    return reversals


def burst_response_s(
    burst_starts_s: tuple[float, ...], in_service_changes: list[tuple[float, int]]
) -> tuple[list[float], int]:
    """For each burst, seconds until more instances serve than at its start (or none)."""
    times = [t for t, _ in in_service_changes]
    delays: list[float] = []
    missed = 0
    for burst in burst_starts_s:
        index = bisect.bisect_right(times, burst) - 1
        before = in_service_changes[index][1] if index >= 0 else 0
        for at, serving in in_service_changes[index + 1 :]:
            if at - burst > BURST_RESPONSE_WINDOW_S:
                missed += 1
                break
            if serving > before:
                delays.append(at - burst)
                break
        else:
            missed += 1
    return delays, missed


def summarize(
    result: RunResult,
    trace: Trace,
    sla: Sla,
    hourly_usd: float,
    per_tenant: bool = True,
    reactive: bool = True,
) -> ConfigReport:
    """`reactive` is False for fleets that do not respond to load (static, clairvoyant):
    their burst-to-capacity time is not defined."""
    tenants: dict[str, LatencySummary] = {}
    if per_tenant:
        for index, name in enumerate(trace.tenants):
            mask = trace.tenant == index
            tenants[name] = latency_summary(result.ttft_s[mask], result.e2e_s[mask], sla)
    if reactive:
        delays, missed = burst_response_s(trace.burst_starts_s, result.in_service_changes)
    else:
        delays, missed = [], len(trace.burst_starts_s)
    return ConfigReport(
        config=result.config,
        latency=latency_summary(result.ttft_s, result.e2e_s, sla),
        gpu_hours=result.gpu_hours,
        cost_usd=result.gpu_hours * hourly_usd,
        scale_events=len(result.scale_events),
        reversals=count_reversals(result.scale_events),
        burst_to_capacity_s=statistics.median(delays) if delays else None,
        bursts_without_added_capacity=missed,
        failed_requests=int(np.count_nonzero(~np.isfinite(result.e2e_s))),
        per_tenant=tenants,
    )
