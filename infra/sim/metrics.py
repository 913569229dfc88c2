"""Summaries of one run: latency percentiles, SLA attainment, sheds, queue waits, cost,
scaling behaviour."""

from __future__ import annotations

import bisect
import itertools
import statistics
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from infra.sim.engine import RunResult, Timeline
from infra.sim.gateway import REFUSED_TENANT_SHARE
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
class Sheds:
    """Requests the client finally got an error for, and refusals before retries."""

    requests: int  # client-visible errors: the last attempt refused (5xx or 429)
    share: float  # of all requests
    server_errors: int  # of `requests`, those whose last answer was a 5xx
    refused_503: int  # every 503 attempt, retried or not
    refused_429: int
    retries: int


@dataclass(frozen=True)
class ConfigReport:
    """One config's row of the report (JSON keys are these field names)."""

    config: str
    latency: LatencySummary
    gpu_hours: float
    cost_usd: float
    scale_events: int
    reversals: int
    # Scale-out episodes (see `scale_out_episodes`): median and max seconds from demand
    # above target to the added instance serving, and episodes that got no capacity.
    burst_to_capacity_s: float | None
    burst_to_capacity_max_s: float | None
    scale_out_episodes: int
    episodes_without_added_capacity: int
    failed_requests: int  # never completed: shed, or lost with a failed instance
    sheds: Sheds
    queue_wait_p50_s: float  # first send to vLLM starting it, over requests that started
    queue_wait_p99_s: float
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
            "burst_to_capacity_max_s": self.burst_to_capacity_max_s,
            "scale_out_episodes": self.scale_out_episodes,
            "episodes_without_added_capacity": self.episodes_without_added_capacity,
            "failed_requests": self.failed_requests,
            "shed_requests": self.sheds.requests,
            "shed_share": self.sheds.share,
            "shed_server_errors": self.sheds.server_errors,
            "refused_503_before_retries": self.sheds.refused_503,
            "refused_429_before_retries": self.sheds.refused_429,
            "retries": self.sheds.retries,
            "queue_wait_p50_s": self.queue_wait_p50_s,
            "queue_wait_p99_s": self.queue_wait_p99_s,
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


def scale_out_episodes(
    timeline: Timeline, scale_events: list[tuple[float, int, int]], target: float
) -> tuple[list[float], int]:
    """Burst-to-capacity: for each scale-out episode, the seconds it took.

    An episode is a run of consecutive control ticks whose published demand per instance
    (the period's mean, as the alarms see it) is above `target` and during which the
    controller raised the desired capacity. It lasts from the first tick of the run (the
    end of the first period above target) to the first tick at which more instances serve
    than did at that first tick. Episodes with no such tick within 30 minutes of the start
    are counted as without added capacity. Runs above target that never triggered a scale
    out (a short spike, a fleet at its maximum) are no episode.
    """
    times = timeline.time_s
    demand = timeline.ongoing_per_instance
    serving = timeline.in_service
    outs = [at for at, old, new in scale_events if new > old]
    delays: list[float] = []
    missed = 0
    ticks = len(times)
    i = 0
    while i < ticks:
        if demand[i] <= target:
            i += 1
            continue
        first = i
        while i < ticks and demand[i] > target:
            i += 1
        begins, ends = times[first], times[i - 1]
        # The decision may land on the tick after the run: that tick's datapoint is back
        # under target, but the alarm's window still holds the breaching ones.
        limit = times[i] if i < ticks else ends
        decision = bisect.bisect_left(outs, begins)
        if decision >= len(outs) or outs[decision] > limit:
            continue
        before = serving[first]
        for j in range(first, ticks):
            if times[j] - begins > BURST_RESPONSE_WINDOW_S:
                missed += 1
                break
            if serving[j] > before:
                delays.append(times[j] - begins)
                break
        else:
            missed += 1
    return delays, missed


def shed_summary(result: RunResult) -> Sheds:
    refused = result.refused
    requests = int(np.count_nonzero(refused))
    errors_429 = int(np.count_nonzero(refused == REFUSED_TENANT_SHARE))
    refused_429 = result.refusals.get("429_tenant_share", 0)
    return Sheds(
        requests=requests,
        share=requests / refused.size if refused.size else 0.0,
        server_errors=requests - errors_429,
        refused_503=sum(result.refusals.values()) - refused_429,
        refused_429=refused_429,
        retries=result.retries,
    )


def summarize(
    result: RunResult,
    trace: Trace,
    sla: Sla,
    hourly_usd: float,
    target: float,
    per_tenant: bool = True,
    reactive: bool = True,
) -> ConfigReport:
    """`target` is the demand per instance the policy scales to; `reactive` is False for
    fleets that do not respond to load (static, clairvoyant): their burst-to-capacity time
    is not defined."""
    tenants: dict[str, LatencySummary] = {}
    if per_tenant:
        for index, name in enumerate(trace.tenants):
            mask = trace.tenant == index
            tenants[name] = latency_summary(result.ttft_s[mask], result.e2e_s[mask], sla)
    if reactive:
        delays, missed = scale_out_episodes(result.timeline, result.scale_events, target)
    else:
        delays, missed = [], 0
    waits = result.queue_wait_s[np.isfinite(result.queue_wait_s)]
    return ConfigReport(
        config=result.config,
        latency=latency_summary(result.ttft_s, result.e2e_s, sla),
        gpu_hours=result.gpu_hours,
        cost_usd=result.gpu_hours * hourly_usd,
        scale_events=len(result.scale_events),
        reversals=count_reversals(result.scale_events),
        burst_to_capacity_s=statistics.median(delays) if delays else None,
        burst_to_capacity_max_s=max(delays) if delays else None,
        scale_out_episodes=len(delays) + missed,
        episodes_without_added_capacity=missed,
        failed_requests=int(np.count_nonzero(~np.isfinite(result.e2e_s))),
        sheds=shed_summary(result),
        queue_wait_p50_s=_percentile(waits, 50),
        queue_wait_p99_s=_percentile(waits, sla.percentile),
        per_tenant=tenants,
    )
