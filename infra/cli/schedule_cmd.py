"""`fleet schedule`: the effective minimum-capacity changes over a date range."""

from __future__ import annotations

import argparse
import datetime as dt

from infra.cli.common import add_policy_option, iso_date, positive_int, print_json, selected_policy
from infra.policy import effective_schedule

MAX_DAYS = 3660  # ten years: the exchange calendar is not known further ahead


def run(args: argparse.Namespace) -> int:
    if args.days > MAX_DAYS:
        raise argparse.ArgumentTypeError(f"--days must be <= {MAX_DAYS}, got {args.days}")
    policy = selected_policy(args)
    changes = effective_schedule(policy, args.start, args.days)
    if args.json:
        print_json([change.as_json() for change in changes])
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
    return 0


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("schedule", help="show the effective market-hours schedule")
    parser.add_argument(
        "--start", type=iso_date, default=dt.date.today(), help="first local date (YYYY-MM-DD)"
    )
    parser.add_argument("--days", type=positive_int, default=7, help="number of days (> 0)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_policy_option(parser)
    parser.set_defaults(handler=run)
