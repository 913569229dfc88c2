"""The side-by-side report: a terminal table and its JSON form."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from infra.policy.slo import Slo
from infra.sim.burn_rate import AlarmReplay, span_text, window_json
from infra.sim.metrics import ConfigReport, LatencySummary
from infra.sim.runner import POLICY_CONFIG, Outcome
from infra.sim.trace import Trace


def _seconds(value: float) -> str:
    return "fail" if math.isinf(value) else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _header(trace: Trace, slo: Slo, seed: int) -> list[str]:
    first = dt.datetime.fromtimestamp(trace.start_s, dt.UTC)
    lines = [
        f"traffic: {len(trace):,} requests over {trace.days:g} day(s) from "
        f"{first:%Y-%m-%d %H:%M} UTC, {len(trace.tenants)} tenants, seed {seed}",
        f"SLO: {slo.describe()} (error budget {slo.error_budget:.2%})",
    ]
    for tenant, (ttft_s, e2e_s) in slo.tenant_targets().items():
        lines.append(f"  tenant {tenant}: TTFT {ttft_s:g} s, end-to-end {e2e_s:g} s")
    windows = "; ".join(
        f"{w.name} ({w.severity}) {span_text(w.long_window_s)} and {span_text(w.short_window_s)} "
        f"at >= {w.burn_rate:g}x the budget's rate"
        for w in slo.burn_rate_windows()
    )
    lines.append(f"burn-rate alarms: {windows}; each window needs >= {slo.min_requests} requests")
    return lines


def _alarm_cell(alarm: AlarmReplay | None) -> str:
    """Firings/minutes in alarm, or '-' when the alarm never fired."""
    if alarm is None or not alarm.firings:
        return "-"
    return f"{alarm.firings}/{alarm.minutes_in_alarm}m"


def ratios(outcome: Outcome) -> dict[str, float | None]:
    """The policy's GPU-hours relative to the clairvoyant bound and to static-4."""
    names = {r.config for r in outcome.reports}
    if POLICY_CONFIG not in names:
        return {}
    policy = outcome.report(POLICY_CONFIG).gpu_hours
    result: dict[str, float | None] = {}
    for other in ("clairvoyant", "static-4"):
        if other in names:
            hours = outcome.report(other).gpu_hours
            result[f"gpu_hours_vs_{other.replace('-', '_')}"] = policy / hours if hours else None
    return result


def table(outcome: Outcome, trace: Trace, slo: Slo, seed: int) -> str:
    lines = _header(trace, slo, seed)
    lines.append("")
    columns = (
        f"{'config':<16}{'TTFT p50':>9}{'p99':>7}{'E2E p50':>9}{'p99':>7}{'in SLO':>8}"
        f"{'meets':>7}{'burn':>7}{'page':>8}{'ticket':>8}{'GPU-h':>8}{'USD':>8}{'shed':>7}"
        f"{'shed%':>8}{'503/429':>11}{'wait p50':>9}{'p99':>7}{'scale':>7}{'revers':>8}"
        f"{'burst->cap p50/max':>20}"
    )
    lines.append(columns)
    lines.append("-" * len(columns))
    for report in outcome.reports:
        lines.append(_row(report))
    if any(report.per_tenant for report in outcome.reports):
        lines.append("")
        lines.append("SLO per tenant (each request against its tenant's targets)")
        header = (
            f"{'config':<16}{'tenant':<14}{'requests':>9}{'in SLO':>8}{'TTFT p50':>9}"
            f"{'p99 / target':>15}{'E2E p99 / target':>18}{'burn':>7}{'page':>8}{'ticket':>8}"
        )
        lines.append(header)
        lines.append("-" * len(header))
        for report in outcome.reports:
            for tenant, summary in report.per_tenant.items():
                lines.append(f"{report.config:<16}{tenant:<14}{_slo_cells(summary)}")
    lines += _after_lines(outcome)
    for key, value in ratios(outcome).items():
        if value is not None:
            lines.append(f"{POLICY_CONFIG} {key.replace('_', ' ')}: {value:.2f}")
    lines.append(
        "in SLO: share of requests within their tenant's targets (shed and failed ones are "
        "misses); burn: the miss ratio in multiples of the error budget (1.0 spends the "
        f"{slo.window_days}-day budget at exactly its even rate, 2.0 would spend it in half "
        "the window); page/ticket: the fast and slow burn-rate alarms the stack would have "
        "raised on this traffic, firings/minutes in alarm ('-': none)"
    )
    lines.append(
        "shed: requests whose client got an error after its SDK retries (a miss of the SLO); "
        "503/429: refused attempts before retries; wait: first send to vLLM starting it; "
        "burst->cap: demand per instance above target to the added instance serving"
    )
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _after_lines(outcome: Outcome) -> list[str]:
    """In SLO over the 15 minutes after each open and each market event, per config."""
    events = sorted({label for r in outcome.reports for label in r.event_attainment})
    if all(r.open_attainment is None for r in outcome.reports) and not events:
        return []
    lines = ["", "in SLO in the first 15 min after the opens and after each market event"]
    header = f"{'config':<22}{'opens':>9}" + "".join(f"  {label}" for label in events)
    lines.append(header)
    lines.append("-" * len(header))
    for report in outcome.reports:
        cells = "".join(
            f"  {_share(report.event_attainment.get(label)):>{len(label)}}" for label in events
        )
        lines.append(f"{report.config:<22}{_share(report.open_attainment):>9}{cells}")
    return lines


def _slo_cells(summary: LatencySummary) -> str:
    ttft = f"{_seconds(summary.p99_ttft_s)} / {summary.ttft_target_s:g}"
    e2e = f"{_seconds(summary.p99_e2e_s)} / {summary.e2e_target_s:g}"
    return (
        f"{summary.requests:>9}{summary.slo_attainment:>8.2%}{_seconds(summary.p50_ttft_s):>9}"
        f"{ttft:>15}{e2e:>18}{summary.budget_burn:>7.2f}"
        f"{_alarm_cell(summary.alarms.get('fast')):>8}"
        f"{_alarm_cell(summary.alarms.get('slow')):>8}"
    )


def burst_cell(report: ConfigReport) -> str:
    """Median/max burst-to-capacity seconds, and episodes that got no capacity."""
    if report.burst_to_capacity_s is None or report.burst_to_capacity_max_s is None:
        text = "n/a"
    else:
        text = f"{report.burst_to_capacity_s:.0f}/{report.burst_to_capacity_max_s:.0f} s"
    if report.episodes_without_added_capacity:
        text += f" +{report.episodes_without_added_capacity} none"
    return text


def _row(report: ConfigReport) -> str:
    latency = report.latency
    sheds = report.sheds
    refused = f"{sheds.refused_503}/{sheds.refused_429}"
    return (
        f"{report.config:<16}{_seconds(latency.p50_ttft_s):>9}{_seconds(latency.p99_ttft_s):>7}"
        f"{_seconds(latency.p50_e2e_s):>9}{_seconds(latency.p99_e2e_s):>7}"
        f"{latency.slo_attainment:>8.2%}{'yes' if latency.meets_slo else 'NO':>7}"
        f"{latency.budget_burn:>7.2f}{_alarm_cell(latency.alarms.get('fast')):>8}"
        f"{_alarm_cell(latency.alarms.get('slow')):>8}"
        f"{report.gpu_hours:>8.1f}{report.cost_usd:>8.0f}{sheds.requests:>7}"
        f"{sheds.share:>8.3%}{refused:>11}{_seconds(report.queue_wait_p50_s):>9}"
        f"{_seconds(report.queue_wait_p99_s):>7}{report.scale_events:>7}"
        f"{report.reversals:>8}{burst_cell(report):>20}"
    )


def as_json(outcome: Outcome, trace: Trace, slo: Slo, seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "requests": len(trace),
        "days": trace.days,
        "start_utc": dt.datetime.fromtimestamp(trace.start_s, dt.UTC).isoformat(),
        "slo": slo_json(slo),
        "configs": [json_safe(report.as_json()) for report in outcome.reports],
        "ratios": ratios(outcome),
    }


def slo_json(slo: Slo) -> dict[str, Any]:
    """What the run was judged against: the default and per-tenant targets, the objective
    and its error budget, and the burn-rate windows replayed."""
    return {
        "ttft_s": slo.ttft_s,
        "e2e_s": slo.e2e_s,
        "objective": slo.objective,
        "window_days": slo.window_days,
        "error_budget": slo.error_budget,
        "min_requests": slo.min_requests,
        "tenant_targets": {
            tenant: {"ttft_s": ttft_s, "e2e_s": e2e_s}
            for tenant, (ttft_s, e2e_s) in slo.tenant_targets().items()
        },
        "burn_rate_windows": {
            w.name: window_json(w, slo.error_budget) for w in slo.burn_rate_windows()
        },
    }


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float as None: JSON has no infinity, and a percentile
    over requests that never finished is infinite."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
