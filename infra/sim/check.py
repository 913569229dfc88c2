"""The pre-deploy gate: does a proposed policy meet the SLA on the reference days, stay
calm, and cost no more than a margin over the reference policy? Pure verdicts on runs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from infra.policy.calendar import trading_day
from infra.policy.market_hours import MarketHours
from infra.sim.engine import RunResult
from infra.sim.metrics import count_reversals, latency_summary
from infra.sim.sla import Sla
from infra.sim.trace import Trace, local_midnight

# Thanksgiving week 2026: ordinary days, an exchange holiday (Thursday), an early close
# (Friday) and a weekend, so a schedule change is exercised on every kind of day.
REFERENCE_START = dt.date(2026, 11, 23)
REFERENCE_DAYS = 7


@dataclass(frozen=True)
class Limits:
    cost_margin: float = 0.10  # proposed GPU-hours may exceed the reference's by this share
    # Reversals (an opposite scale event within 10 min) per trading day. The ADR's policy
    # shows one or two on a bursty day (a burst's capacity is released 5 min later); a
    # mis-tuned target/delay pair shows dozens.
    max_reversals_per_trading_day: float = 3.0


@dataclass(frozen=True)
class Finding:
    check: str  # "sla", "oscillation" or "cost"
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.check}: {self.detail}"


def trading_dates(trace: Trace, hours: MarketHours) -> list[dt.date]:
    zone = hours.zone
    first = dt.datetime.fromtimestamp(trace.start_s, zone).date()
    last = dt.datetime.fromtimestamp(trace.end_s - 1, zone).date()
    dates = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    return [
        d
        for d in dates
        if d.weekday() in hours.weekdays and not trading_day(hours.exchange, d).is_holiday
    ]


def sla_finding(run: RunResult, trace: Trace, sla: Sla, hours: MarketHours) -> Finding:
    zone: ZoneInfo = hours.zone
    misses: list[str] = []
    worst: tuple[float, str] | None = None
    for date in trading_dates(trace, hours):
        begins = local_midnight(date, zone)
        ends = local_midnight(date + dt.timedelta(days=1), zone)
        mask = (trace.arrival_s >= begins) & (trace.arrival_s < ends)
        day = latency_summary(run.ttft_s[mask], run.e2e_s[mask], sla)
        over = max(day.p99_ttft_s / sla.ttft_s, day.p99_e2e_s / sla.e2e_s)
        text = (
            f"{date} p{sla.percentile:g} TTFT {day.p99_ttft_s:.2f} s, "
            f"E2E {day.p99_e2e_s:.1f} s, {day.sla_attainment:.2%} within"
        )
        if worst is None or over > worst[0]:
            worst = (over, text)
        if not day.meets_sla:
            misses.append(
                f"{text} (TTFT {_over(day.p99_ttft_s, sla.ttft_s)}, E2E "
                f"{_over(day.p99_e2e_s, sla.e2e_s)})"
            )
    if misses:
        return Finding("sla", False, f"misses {sla.describe()} on " + "; ".join(misses))
    summary = f"worst: {worst[1]}" if worst else "no trading day in the window"
    return Finding("sla", True, f"every trading day within {sla.describe()} ({summary})")


def _over(value: float, target: float) -> str:
    if not np.isfinite(value):
        return "requests failed"
    if value <= target:
        return "ok"
    return f"+{value - target:.2f} s over {target:g} s"


def oscillation_finding(run: RunResult, trading_days: int, limits: Limits) -> Finding:
    reversals = count_reversals(run.scale_events)
    allowed = limits.max_reversals_per_trading_day * max(trading_days, 1)
    detail = (
        f"{reversals} direction reversals within 10 min over {trading_days} trading day(s), "
        f"{reversals / max(trading_days, 1):.1f}/day (limit "
        f"{limits.max_reversals_per_trading_day:g}/day); {len(run.scale_events)} scale events"
    )
    return Finding("oscillation", reversals <= allowed, detail)


def cost_finding(proposed_hours: float, reference_hours: float, limits: Limits) -> Finding:
    ratio = proposed_hours / reference_hours - 1 if reference_hours else 0.0
    passed = proposed_hours <= reference_hours * (1 + limits.cost_margin)
    relation = "over" if ratio >= 0 else "under"
    return Finding(
        "cost",
        passed,
        f"{proposed_hours:.1f} GPU-hours, {abs(ratio):.1%} {relation} the reference's "
        f"{reference_hours:.1f} (margin {limits.cost_margin:.0%})",
    )


def evaluate(
    proposed: RunResult,
    reference: RunResult,
    trace: Trace,
    sla: Sla,
    hours: MarketHours,
    limits: Limits,
) -> list[Finding]:
    trading = len(trading_dates(trace, hours))
    return [
        sla_finding(proposed, trace, sla, hours),
        oscillation_finding(proposed, trading, limits),
        cost_finding(proposed.gpu_hours, reference.gpu_hours, limits),
    ]
