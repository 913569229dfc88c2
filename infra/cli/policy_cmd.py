"""`fleet policy`: both configs, the gateway's queue, and the values the AWS compilation
derives from them."""

from __future__ import annotations

import argparse
from typing import Any

from infra.cli.common import add_policy_option, print_json, selected_policy
from infra.policy import FleetPolicy
from infra.policy.loader import policy_as_mapping

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
    }


def run(args: argparse.Namespace) -> int:
    policy = selected_policy(args)
    if args.json:
        print_json(
            {**policy_as_mapping(policy), "derived": derived(policy), "warnings": policy.warnings()}
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
    for key, value in derived(policy).items():
        print(f"{key:<36}{value}")
    for day in policy.special_days:
        print(
            f"special day {day.date} {day.start:%H:%M}-{day.end:%H:%M} min {day.min_replicas}"
            f" ({day.reason})"
        )
    for warning in policy.warnings():
        print(f"warning: {warning}")
    return 0


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("policy", help="show the scaling configs and derived values")
    add_policy_option(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)
