"""The side-by-side report: a terminal table and its JSON form."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from infra.sim.metrics import ConfigReport
from infra.sim.runner import POLICY_CONFIG, Outcome
from infra.sim.sla import Sla
from infra.sim.trace import Trace


def _seconds(value: float) -> str:
    return "fail" if math.isinf(value) else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _header(trace: Trace, sla: Sla, seed: int) -> list[str]:
    first = dt.datetime.fromtimestamp(trace.start_s, dt.UTC)
    return [
        f"traffic: {len(trace):,} requests over {trace.days:g} day(s) from "
        f"{first:%Y-%m-%d %H:%M} UTC, {len(trace.tenants)} tenants, seed {seed}",
        f"SLA: {sla.describe()}",
    ]


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


def table(outcome: Outcome, trace: Trace, sla: Sla, seed: int) -> str:
    lines = _header(trace, sla, seed)
    lines.append("")
    columns = (
        f"{'config':<16}{'TTFT p50':>9}{'p99':>7}{'E2E p50':>9}{'p99':>7}{'in SLA':>8}"
        f"{'meets':>7}{'GPU-h':>8}{'USD':>8}{'shed':>7}{'shed%':>8}{'503/429':>11}"
        f"{'wait p50':>9}{'p99':>7}{'scale':>7}{'revers':>8}{'burst->cap p50/max':>20}"
    )
    lines.append(columns)
    lines.append("-" * len(columns))
    for report in outcome.reports:
        lines.append(_row(report))
    lines.append("")
    lines.append("per tenant: p99 TTFT s / share within SLA")
    tenants = list(outcome.reports[0].per_tenant) if outcome.reports else []
    lines.append(f"{'config':<16}" + "".join(f"{name:>17}" for name in tenants))
    for report in outcome.reports:
        cells = "".join(
            f"{_seconds(s.p99_ttft_s) + ' / ' + format(s.sla_attainment, '.1%'):>17}"
            for s in report.per_tenant.values()
        )
        lines.append(f"{report.config:<16}{cells}")
    for key, value in ratios(outcome).items():
        if value is not None:
            lines.append(f"{POLICY_CONFIG} {key.replace('_', ' ')}: {value:.2f}")
    lines.append(
        "shed: requests whose client got an error after its SDK retries (a miss of the SLA); "
        "503/429: refused attempts before retries; wait: first send to vLLM starting it; "
        "burst->cap: demand per instance above target to the added instance serving"
    )
    return "\n".join(lines)


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
        f"{latency.sla_attainment:>8.2%}{'yes' if latency.meets_sla else 'NO':>7}"
        f"{report.gpu_hours:>8.1f}{report.cost_usd:>8.0f}{sheds.requests:>7}"
        f"{sheds.share:>8.3%}{refused:>11}{_seconds(report.queue_wait_p50_s):>9}"
        f"{_seconds(report.queue_wait_p99_s):>7}{report.scale_events:>7}"
        f"{report.reversals:>8}{burst_cell(report):>20}"
    )


def as_json(outcome: Outcome, trace: Trace, sla: Sla, seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "requests": len(trace),
        "days": trace.days,
        "start_utc": dt.datetime.fromtimestamp(trace.start_s, dt.UTC).isoformat(),
        "sla": {"ttft_s": sla.ttft_s, "e2e_s": sla.e2e_s, "percentile": sla.percentile},
        "configs": [json_safe(report.as_json()) for report in outcome.reports],
        "ratios": ratios(outcome),
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
