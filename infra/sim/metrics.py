"""Summaries of one run: latency percentiles and SLO attainment per tenant, the error
budget's burn and the burn-rate alarms it would raise, sheds, queue waits, cost, scaling
behaviour."""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import statistics
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from infra.policy.slo import Slo
from infra.sim.burn_rate import AlarmReplay, budget_burn, per_minute, replay
from infra.sim.engine import RunResult, Timeline
from infra.sim.gateway import REFUSED_TENANT_SHARE
from infra.sim.trace import FloatArray, Trace

REVERSAL_WINDOW_S = 600.0  # an opposite scale event within 10 minutes counts as a reversal
BURST_RESPONSE_WINDOW_S = 1800.0  # capacity added later than this is not the burst's doing


@dataclass(frozen=True)
class LatencySummary:
    """Requests judged against the SLO: a tenant's, or the fleet's (each request against
    its own tenant's targets; the targets shown are then the default)."""

    requests: int  # counted against the SLO: served, late, failed or shed alike
    misses: int  # late (TTFT or end to end over target), failed or shed
    p50_ttft_s: float
    p99_ttft_s: float
    p50_e2e_s: float
    p99_e2e_s: float
    ttft_target_s: float
    e2e_target_s: float
    slo_attainment: float  # share within the targets
    meets_slo: bool  # attainment >= the objective
    # The miss ratio in multiples of the error budget (`burn_rate.budget_burn`).
    budget_burn: float
    # The burn-rate alarms the stack would have raised on this traffic, by window name.
    alarms: dict[str, AlarmReplay] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        fields = {k: v for k, v in vars(self).items() if k != "alarms"}
        return {**fields, "alarms": {name: a.as_json() for name, a in self.alarms.items()}}


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
    # SLO attainment over requests arriving in the 15 minutes after each open, and after
    # each market event's release (`after_moments`), None where no request arrived.
    open_attainment: float | None = None
    event_attainment: dict[str, float | None] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "config": self.config,
            "open_15min_attainment": self.open_attainment,
            "event_15min_attainment": self.event_attainment,
            **self.latency.as_json(),
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
            "per_tenant": {name: summary.as_json() for name, summary in self.per_tenant.items()},
        }


def _percentile(values: FloatArray, q: float) -> float:
    if values.size == 0:
        return 0.0
    # "higher" never interpolates, so failed requests (inf) give inf rather than nan.
    return float(np.percentile(values, q, method="higher"))


def request_targets(trace: Trace, slo: Slo) -> tuple[FloatArray, FloatArray]:
    """Each request's (TTFT, end-to-end) targets: its tenant's, else the SLO's default."""
    if not trace.tenants:
        return np.zeros(0), np.zeros(0)
    pairs = np.array([slo.targets(name) for name in trace.tenants], dtype=np.float64)
    return pairs[trace.tenant, 0], pairs[trace.tenant, 1]


def within_slo(result: RunResult, trace: Trace, slo: Slo) -> npt.NDArray[np.bool_]:
    """Per request, whether it met its tenant's targets (a failed or shed one never does:
    its latencies are infinite)."""
    ttft_target, e2e_target = request_targets(trace, slo)
    within: npt.NDArray[np.bool_] = (result.ttft_s <= ttft_target) & (result.e2e_s <= e2e_target)
    return within


AFTER_WINDOW_S = 900.0  # "the first 15 minutes after the open / the event"


def attainment_after(
    within: npt.NDArray[np.bool_],
    arrival_s: FloatArray,
    moments_s: list[float] | tuple[float, ...],
    window_s: float = AFTER_WINDOW_S,
) -> float | None:
    """The share within the SLO of requests arriving in [moment, moment + window) for any
    of `moments_s`; None when no request arrived in those windows."""
    chosen = np.zeros(arrival_s.size, dtype=bool)
    for moment in moments_s:
        chosen |= (arrival_s >= moment) & (arrival_s < moment + window_s)
    if not chosen.any():
        return None
    return float(within[chosen].mean())


def latency_summary(
    ttft_s: FloatArray,
    e2e_s: FloatArray,
    slo: Slo,
    tenant: str | None = None,
    within: npt.NDArray[np.bool_] | None = None,
) -> LatencySummary:
    """Requests judged against `tenant`'s targets, or against `within` (each request's own
    verdict) when given; the summary shows `tenant`'s targets (None: the default)."""
    ttft_target, e2e_target = slo.targets(tenant)
    if within is None:
        within = (ttft_s <= ttft_target) & (e2e_s <= e2e_target)
    requests = int(ttft_s.size)
    misses = requests - int(np.count_nonzero(within))
    attainment = 1 - misses / requests if requests else 1.0
    return LatencySummary(
        requests=requests,
        misses=misses,
        p50_ttft_s=_percentile(ttft_s, 50),
        p99_ttft_s=_percentile(ttft_s, 99),
        p50_e2e_s=_percentile(e2e_s, 50),
        p99_e2e_s=_percentile(e2e_s, 99),
        ttft_target_s=ttft_target,
        e2e_target_s=e2e_target,
        slo_attainment=attainment,
        meets_slo=attainment >= slo.objective,
        budget_burn=budget_burn(misses, requests, slo.error_budget),
    )


def slo_summary(
    result: RunResult,
    trace: Trace,
    slo: Slo,
    within: npt.NDArray[np.bool_],
    tenant: str | None = None,
) -> LatencySummary:
    """`latency_summary` of a tenant's requests (None: all), with the burn-rate alarms
    replayed on them. A request lost with a failed instance never settles; it is counted
    once it has outlasted its end-to-end target, when its client knows it is late."""
    mask = (
        np.ones(len(trace), dtype=bool)
        if tenant is None
        else (trace.tenant == trace.tenants.index(tenant))
    )
    _, e2e_target = request_targets(trace, slo)
    settled = result.settled_s[mask]
    settled = np.where(np.isfinite(settled), settled, trace.arrival_s[mask] + e2e_target[mask])
    counted, misses = per_minute(settled, ~within[mask], trace.start_s, trace.end_s)
    summary = latency_summary(result.ttft_s[mask], result.e2e_s[mask], slo, tenant, within[mask])
    return dataclasses.replace(summary, alarms=replay(counted, misses, slo))


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
    slo: Slo,
    hourly_usd: float,
    target: float,
    per_tenant: bool = True,
    reactive: bool = True,
) -> ConfigReport:
    """`target` is the demand per instance the policy scales to; `reactive` is False for
    fleets that do not respond to load (static, clairvoyant): their burst-to-capacity time
    is not defined."""
    within = within_slo(result, trace, slo)
    tenants: dict[str, LatencySummary] = {}
    if per_tenant:
        for name in trace.tenants:
            tenants[name] = slo_summary(result, trace, slo, within, name)
    if reactive:
        delays, missed = scale_out_episodes(result.timeline, result.scale_events, target)
    else:
        delays, missed = [], 0
    waits = result.queue_wait_s[np.isfinite(result.queue_wait_s)]
    return ConfigReport(
        config=result.config,
        latency=slo_summary(result, trace, slo, within),
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
        queue_wait_p99_s=_percentile(waits, 99),
        per_tenant=tenants,
    )
