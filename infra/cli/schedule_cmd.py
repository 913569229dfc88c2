"""`fleet schedule`: the effective minimum-capacity changes over a date range."""

from __future__ import annotations

import argparse
import datetime as dt

from infra.cli.common import add_policy_option, iso_date, positive_int, print_json, selected_policy
from infra.cli.override_cmd import live_actions_for_schedule
from infra.policy import effective_schedule

MAX_DAYS = 3660  # ten years: the exchange calendar is not known further ahead


def run(args: argparse.Namespace) -> int:
    if args.days > MAX_DAYS:
        raise argparse.ArgumentTypeError(f"--days must be <= {MAX_DAYS}, got {args.days}")
    policy = selected_policy(args)
    changes = effective_schedule(policy, args.start, args.days)
    # With --asg, the group's live one-off actions (overrides, calendar) are shown alongside.
    live = live_actions_for_schedule(args, args.start, args.days) if args.asg else None
    if args.json:
        schedule = [change.as_json() for change in changes]
        print_json(schedule if live is None else {"schedule": schedule, "live_actions": live})
        return 0
    print(f"{'local time':<27}{'UTC':<22}{'min':>4}  reason")
    for change in changes:
        note = f"  ({change.note})" if change.note else ""
        print(
            f"{change.local_time.isoformat():<27}{change.as_json()['utc_time']!s:<22}"
            f"{change.min_replicas:>4}  {change.reason}{note}"
        )
    if not changes:
        print("no changes of the minimum in this range")
    if live is not None:
        print(f"\nlive one-off actions on {args.asg}:")
        for action in live:
            print(
                f"{action['local_time']!s:<27}{action['utc_time']!s:<22}"
                f"{action['min_replicas']!s:>4}  {action['reason']}  ({action['name']})"
            )
        if not live:
            print("none in this range")
    return 0


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("schedule", help="show the effective market-hours schedule")
    parser.add_argument(
        "--start", type=iso_date, default=dt.date.today(), help="first local date (YYYY-MM-DD)"
    )
    parser.add_argument("--days", type=positive_int, default=7, help="number of days (> 0)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_policy_option(parser)
    parser.add_argument("--region", help="AWS region of --asg (default: AWS_REGION)")
    parser.add_argument("--asg", help="also list this deployed group's one-off actions (overrides)")
    parser.set_defaults(handler=run)
