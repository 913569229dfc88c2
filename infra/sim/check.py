"""The pre-deploy gate: does a proposed policy meet its SLO on the reference days (every
trading day, fleet-wide and for every tenant), stay calm, and cost no more than a margin
over the reference policy? Pure verdicts on runs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from infra.policy.calendar import trading_day
from infra.policy.market_hours import MarketHours
from infra.policy.slo import Slo
from infra.sim.engine import RunResult
from infra.sim.metrics import (
    LatencySummary,
    count_reversals,
    latency_summary,
    slo_summary,
    within_slo,
)
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
    check: str  # "slo", "oscillation" or "cost"
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


def slo_finding(run: RunResult, trace: Trace, slo: Slo, hours: MarketHours) -> Finding:
    """The SLO as it is operated. Fails when a trading day keeps fewer than the objective's
    share of requests within their tenant's targets fleet-wide (a shed or failed request is
    a miss), or when a burn-rate alarm (page or ticket), fleet-wide or for any tenant, would
    have fired on the reference days. A tenant's day under the objective that raises no
    alarm is reported, not failed: it spends a day's budget a little fast (98.95 % is 1.05x
    its even rate, 1/27 of a 28-day budget), which one day cannot judge."""
    zone: ZoneInfo = hours.zone
    within = within_slo(run, trace, slo)
    misses: list[str] = []
    notes: list[str] = []
    worst: tuple[float, str] | None = None
    for date in trading_dates(trace, hours):
        begins = local_midnight(date, zone)
        ends = local_midnight(date + dt.timedelta(days=1), zone)
        day = (trace.arrival_s >= begins) & (trace.arrival_s < ends)
        groups: list[tuple[str | None, np.ndarray]] = [(None, day)]
        groups += [(name, day & (trace.tenant == i)) for i, name in enumerate(trace.tenants)]
        for tenant, mask in groups:
            if not mask.any():
                continue
            summary = latency_summary(run.ttft_s[mask], run.e2e_s[mask], slo, tenant, within[mask])
            text = _day_text(date, tenant, summary)
            if worst is None or summary.slo_attainment < worst[0]:
                worst = (summary.slo_attainment, text)
            if summary.meets_slo:
                continue
            if tenant is None:
                misses.append(
                    f"{text} (p99 TTFT {_over(summary.p99_ttft_s, summary.ttft_target_s)}, "
                    f"p99 E2E {_over(summary.p99_e2e_s, summary.e2e_target_s)})"
                )
            else:
                notes.append(
                    f"{date} tenant {tenant} {summary.slo_attainment:.2%} "
                    f"(burn {summary.budget_burn:.2f})"
                )
    for tenant in (None, *trace.tenants):
        alarms = slo_summary(run, trace, slo, within, tenant).alarms
        for alarm in alarms.values():
            if alarm.firings:
                who = "fleet-wide" if tenant is None else f"for tenant {tenant}"
                misses.append(
                    f"the {alarm.window} burn-rate alarm ({alarm.severity}, >= "
                    f"{alarm.burn_rate:g}x the budget's rate) would fire {who}: "
                    f"{alarm.firings} time(s), {alarm.minutes_in_alarm} min in alarm"
                )
    goal = f"{slo.objective:.2%} of requests within their tenant's targets"
    noted = f"; under the objective without an alarm: {'; '.join(notes)}" if notes else ""
    if misses:
        return Finding("slo", False, f"misses {goal}: " + "; ".join(misses) + noted)
    summary_text = f"worst: {worst[1]}" if worst else "no trading day in the window"
    return Finding(
        "slo",
        True,
        f"every trading day keeps {goal} fleet-wide and no burn-rate alarm fires "
        f"({summary_text}{noted})",
    )


def _day_text(date: dt.date, tenant: str | None, summary: LatencySummary) -> str:
    who = "fleet" if tenant is None else f"tenant {tenant}"
    return (
        f"{date} {who}: {summary.slo_attainment:.2%} within TTFT "
        f"{summary.ttft_target_s:g} s / E2E {summary.e2e_target_s:g} s "
        f"({summary.misses} of {summary.requests} missed, p99 TTFT "
        f"{summary.p99_ttft_s:.2f} s, p99 E2E {summary.p99_e2e_s:.1f} s)"
    )


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
    slo: Slo,
    hours: MarketHours,
    limits: Limits,
) -> list[Finding]:
    trading = len(trading_dates(trace, hours))
    return [
        slo_finding(proposed, trace, slo, hours),
        oscillation_finding(proposed, trading, limits),
        cost_finding(proposed.gpu_hours, reference.gpu_hours, limits),
    ]
