"""`fleet policy`: both configs, the gateway's queue, the SLO, and the values the AWS
compilation derives from them (alarm windows, the SLO's burn-rate thresholds)."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from infra.cli.common import add_policy_option, print_json, selected_policy
from infra.policy import FleetPolicy, event_data_warning
from infra.policy.loader import policy_as_mapping
from infra.policy.slo import Slo
from infra.sim.burn_rate import span_text, window_json

# The queue section's rows: (label, attribute of GatewayQueue), in the order a reader
# follows a request: what runs, what may wait, for how long, and when it scales.
QUEUE_ROWS = (
    ("engine_max_num_seqs", "engine_max_num_seqs"),
    ("probe_reserve", "probe_reserve"),
    ("max_running", "max_running"),
    ("max_queued", "max_queued"),
    ("tenant_queue_share", "tenant_queue_share"),
    ("tenant_max_queued (derived)", "tenant_max_queued"),
    ("max_queue_wait_s", "max_queue_wait_s"),
    ("scale_out_queue_depth", "scale_out_queue_depth"),
)


def derived(policy: FleetPolicy) -> dict[str, Any]:
    config = policy.default
    hours = policy.schedule
    return {
        "alarm_period_s": config.metric_period_s,
        "scale_out_evaluation_periods": config.upscale_evaluation_periods,
        "scale_out_window_s": config.upscale_delay_s,
        "scale_in_evaluation_periods": config.downscale_evaluation_periods,
        "scale_in_window_s": config.downscale_delay_s,
        "scale_out_threshold_per_instance": config.target_ongoing_requests,
        "queue_tenant_max_queued": policy.queue.tenant_max_queued,
        "queue_depth_threshold_per_instance": policy.queue.scale_out_queue_depth,
        "queue_depth_window_s": config.upscale_delay_s,
        "market_hours_local": (
            f"{hours.prewarm_time:%H:%M}-{hours.close_time:%H:%M} {hours.time_zone} "
            f"(open {hours.open_time:%H:%M}, pre-warm {hours.prewarm_lead_s} s earlier; "
            f"early close {hours.early_close_time:%H:%M})"
        ),
        "slo_error_budget": policy.slo.error_budget,
        "slo_window_hours": policy.slo.window_hours,
        "slo_tenant_targets": {
            tenant: {"ttft_s": ttft_s, "e2e_s": e2e_s}
            for tenant, (ttft_s, e2e_s) in policy.slo.tenant_targets().items()
        },
        "slo_burn_rate_windows": {
            window.name: window_json(window, policy.slo.error_budget)
            for window in policy.slo.burn_rate_windows()
        },
    }


def slo_lines(slo: Slo) -> list[str]:
    """The SLO section of `fleet policy`: targets, objective and budget, tenants' own
    targets, and each burn-rate alarm with the error ratio its threshold means."""
    lines = [
        "slo (every request to an inference route counts: served, late, failed or shed)",
        f"  {'ttft_s':<30}{slo.ttft_s:>8g}",
        f"  {'e2e_s':<30}{slo.e2e_s:>8g}",
        f"  {'objective':<30}{slo.objective:>8.2%}",
        f"  {'window_days':<30}{slo.window_days:>8}",
        f"  {'error budget (derived)':<30}{slo.error_budget:>8.2%}",
        f"  {'min_requests':<30}{slo.min_requests:>8}",
    ]
    for entry in slo.tenants:
        ttft_s, e2e_s = slo.targets(entry.tenant)
        lines.append(f"  tenant {entry.tenant}: TTFT {ttft_s:g} s, end-to-end {e2e_s:g} s")
    for window in slo.burn_rate_windows():
        lines.append(
            f"  burn-rate {window.name} ({window.severity}): {span_text(window.long_window_s)}"
            f" and {span_text(window.short_window_s)} windows both at >= {window.burn_rate:g}x "
            f"the budget's rate ({window.error_ratio(slo.error_budget):.2%} of requests "
            f"missing; {window.budget_share:.0%} of the budget in "
            f"{span_text(window.long_window_s)})"
        )
    return lines


def warnings(policy: FleetPolicy, today: dt.date) -> list[str]:
    """The policy's own warnings plus the event calendar's (published dates running out)."""
    event_warning = event_data_warning(policy.events, today)
    return [*policy.warnings(), *([event_warning] if event_warning else [])]


def event_lines(policy: FleetPolicy, today: dt.date) -> list[str]:
    """Upcoming market events (from today), with their window, minimum and source."""
    cancelled = set(policy.cancelled_event_dates)
    lines = []
    for event in sorted(policy.events, key=lambda e: (e.date, e.start)):
        if event.date < today:
            continue
        state = "  CANCELLED" if event.date in cancelled else ""
        source = event.source or "added in the policy file"
        lines.append(
            f"event {event.date} {event.name} at {event.release:%H:%M}: "
            f"{event.start:%H:%M}-{event.end:%H:%M} min {event.min_replicas} ({source}){state}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    policy = selected_policy(args)
    today = dt.date.today()
    if args.json:
        print_json(
            {
                **policy_as_mapping(policy),
                "derived": derived(policy),
                "warnings": warnings(policy, today),
            }
        )
        return 0
    rows = [
        ("min_replicas", "min_replicas"),
        ("max_replicas", "max_replicas"),
        ("target_ongoing_requests", "target_ongoing_requests"),
        ("upscale_delay_s", "upscale_delay_s"),
        ("downscale_delay_s", "downscale_delay_s"),
        ("upscale smoothing", "upscale_factor"),
        ("downscale smoothing", "downscale_factor"),
        ("metric_period_s", "metric_period_s"),
    ]
    print(f"{'field':<26}{'DEFAULT':>10}{'MARKET_HOURS':>14}")
    for label, attribute in rows:
        default_value = getattr(policy.default, attribute)
        market_value = getattr(policy.market_hours, attribute)
        print(f"{label:<26}{default_value!s:>10}{market_value!s:>14}")
    print()
    print("queue (per instance; counts are sequences)")
    for label, attribute in QUEUE_ROWS:
        print(f"  {label:<30}{getattr(policy.queue, attribute)!s:>8}")
    print()
    for line in slo_lines(policy.slo):
        print(line)
    print()
    for key, value in derived(policy).items():
        if not key.startswith("slo_"):  # shown in the slo section above
            print(f"{key:<36}{value}")
    for day in policy.special_days:
        print(
            f"special day {day.date} {day.start:%H:%M}-{day.end:%H:%M} min {day.min_replicas}"
            f" ({day.reason})"
        )
    for line in event_lines(policy, today):
        print(line)
    for warning in warnings(policy, today):
        print(f"warning: {warning}")
    return 0


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "policy", help="show the scaling configs, the queue, the SLO and derived values"
    )
    add_policy_option(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)
