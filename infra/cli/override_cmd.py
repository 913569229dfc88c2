"""`fleet override`: one-off minimum-capacity windows on the deployed group, live through boto3.

An override is a pair of one-off scheduled actions, `finsight-override-<id>-start` (sets
the minimum) and `-end` (sets it back to what the schedule wants then). The calendar Lambda
reads them back and plans around them, so the two never undo each other.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contract import CALENDAR_ACTION_PREFIX, OVERRIDE_ACTION_PREFIX
from infra.cli.common import CommandError, iso_date, positive_int, print_json
from infra.policy import FLEET_POLICY, FleetPolicy, minimum_at

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient

# Shared with lambdas/market_calendar/plan.py through `contract` (the name pattern too: a
# test checks that the function reads back what this command writes).
OVERRIDE_PREFIX = OVERRIDE_ACTION_PREFIX
ASG_ENV = "FLEET_ASG_NAME"
_NAME = re.compile(
    rf"^{re.escape(OVERRIDE_PREFIX)}(?P<id>\d{{8}}-\d{{4}}(?:-[a-z0-9-]+)?)"
    r"-(?P<edge>start|end)$"
)
_MAX_SLUG = 40
UTC = dt.UTC


@dataclass(frozen=True)
class LiveOverride:
    """An override as it stands on the group; `start` is None once the window has begun."""

    override_id: str
    start: dt.datetime | None
    end: dt.datetime | None
    min_replicas: int | None
    end_min_replicas: int | None

    @property
    def reason(self) -> str:
        return self.override_id[len("YYYYMMDD-HHMM-") :].replace("-", " ")

    def as_json(self, zone: dt.tzinfo) -> dict[str, object]:
        def local(at: dt.datetime | None) -> str | None:
            return at.astimezone(zone).isoformat() if at else None

        return {
            "id": self.override_id,
            "start": local(self.start),
            "end": local(self.end),
            "min_replicas": self.min_replicas,
            "end_min_replicas": self.end_min_replicas,
            "reason": self.reason,
            "in_progress": self.start is None,
        }


def hh_mm(text: str) -> dt.time:
    if re.fullmatch(r"\d{2}:\d{2}", text):
        with contextlib.suppress(ValueError):
            return dt.time.fromisoformat(text)
    raise argparse.ArgumentTypeError(f"expected a time as HH:MM, got {text!r}")


def slug(reason: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", reason.lower()).strip("-")
    return words[:_MAX_SLUG].rstrip("-")


@contextlib.contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """AWS and credential failures as one line; the traceback helps nobody at a terminal."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        detail = error.response.get("Error", {})
        raise CommandError(
            f"{action}: {detail.get('Code', 'error')}: {detail.get('Message', error)}"
        ) from None
    except BotoCoreError as error:
        raise CommandError(f"{action}: {error}") from None


def target(args: argparse.Namespace) -> tuple[str, str]:
    """The region and group from the flags, else the environment, else a clear error."""
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise CommandError("no AWS region: pass --region or set AWS_REGION")
    asg = args.asg or os.environ.get(ASG_ENV, "")
    if not asg.strip():
        raise CommandError(f"no Auto Scaling group: pass --asg or set {ASG_ENV}")
    return region, asg.strip()


def autoscaling_client(region: str) -> AutoScalingClient:
    import boto3

    return boto3.client("autoscaling", region_name=region)


def group_max_size(client: AutoScalingClient, region: str, asg: str) -> int:
    with aws_errors("describe the group"):
        groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=[asg])
    if not groups["AutoScalingGroups"]:
        raise CommandError(f"Auto Scaling group {asg!r} not found in {region}")
    return groups["AutoScalingGroups"][0]["MaxSize"]


def connect(args: argparse.Namespace) -> tuple[AutoScalingClient, str, int]:
    """A client, the group's name and its maximum; a missing group is a clear error."""
    region, asg = target(args)
    client = autoscaling_client(region)
    return client, asg, group_max_size(client, region, asg)


def one_off_actions(client: AutoScalingClient, asg: str) -> list[dict[str, Any]]:
    """The group's scheduled actions that have a start time and no recurrence."""
    actions: list[dict[str, Any]] = []
    with aws_errors("list scheduled actions"):
        for page in client.get_paginator("describe_scheduled_actions").paginate(
            AutoScalingGroupName=asg
        ):
            actions += [
                dict(item)
                for item in page["ScheduledUpdateGroupActions"]
                if "StartTime" in item and not item.get("Recurrence")
            ]
    return sorted(actions, key=lambda item: (item["StartTime"], item["ScheduledActionName"]))


def live_overrides(actions: list[dict[str, Any]]) -> list[LiveOverride]:
    halves: dict[str, dict[str, dict[str, Any]]] = {}
    for item in actions:
        match = _NAME.match(item["ScheduledActionName"])
        if match:
            halves.setdefault(match["id"], {})[match["edge"]] = item
    overrides = []
    for override_id, edges in sorted(halves.items()):
        start, end = edges.get("start"), edges.get("end")
        overrides.append(
            LiveOverride(
                override_id=override_id,
                start=start["StartTime"].astimezone(UTC) if start else None,
                end=end["StartTime"].astimezone(UTC) if end else None,
                min_replicas=start.get("MinSize") if start else None,
                end_min_replicas=end.get("MinSize") if end else None,
            )
        )
    return overrides


def recurring_times(policy: FleetPolicy, date: dt.date) -> dict[dt.time, str]:
    hours = policy.schedule
    if date.weekday() not in hours.weekdays:
        return {}
    return {hours.prewarm_time: "pre-open", hours.close_time: "close"}


def now_utc() -> dt.datetime:
    return dt.datetime.now(UTC)


def run_add(args: argparse.Namespace) -> int:
    policy = FLEET_POLICY
    zone = policy.schedule.zone
    start = dt.datetime.combine(args.date, args.start, zone)
    end = dt.datetime.combine(args.date, args.end, zone)
    reason_slug = slug(args.reason)
    if not reason_slug:
        raise CommandError("--reason: must say why, in letters or digits")
    if end <= start:
        raise CommandError(f"--to {args.end:%H:%M} must be after --from {args.start:%H:%M}")
    if start <= now_utc():
        raise CommandError(
            f"{args.date} {args.start:%H:%M} {policy.schedule.time_zone} is in the past"
        )
    for edge, at in (("--from", args.start), ("--to", args.end)):
        clash = recurring_times(policy, args.date).get(at)
        if clash:
            # Two actions at one instant run in no guaranteed order.
            raise CommandError(
                f"{edge} {at:%H:%M} is when the recurring {clash} action runs; "
                "pick a minute before or after"
            )
    client, asg, maximum = connect(args)
    if args.min > maximum:
        raise CommandError(f"--min {args.min} is above the group's maximum ({maximum})")
    for other in live_overrides(one_off_actions(client, asg)):
        other_start = other.start or now_utc()
        if other.end and other_start < end and start < other.end:
            raise CommandError(
                f"overlaps override {other.override_id} "
                f"({other_start.astimezone(zone):%Y-%m-%d %H:%M}-"
                f"{other.end.astimezone(zone):%H:%M}); remove it first or pick another window"
            )
    override_id = f"{args.date:%Y%m%d}-{args.start:%H%M}-{reason_slug}"
    # Back to what the schedule wants when the window ends (2 inside market hours, else 1).
    end_minimum = minimum_at(policy, end)
    with aws_errors("create the override"):
        for edge, at, minimum in (("start", start, args.min), ("end", end, end_minimum)):
            client.put_scheduled_update_group_action(
                AutoScalingGroupName=asg,
                ScheduledActionName=f"{OVERRIDE_PREFIX}{override_id}-{edge}",
                StartTime=at.astimezone(UTC),
                MinSize=minimum,
            )
    print(
        f"added override {override_id} on {asg}: {args.date} {args.start:%H:%M}-"
        f"{args.end:%H:%M} {policy.schedule.time_zone}, min {args.min}, "
        f"then {end_minimum} from {args.end:%H:%M}"
    )
    inside = [
        f"{at:%H:%M} {name}"
        for at, name in recurring_times(policy, args.date).items()
        if args.start < at < args.end
    ]
    if inside:
        print(
            f"note: the recurring {', '.join(inside)} action falls inside the window; the "
            "calendar function restores the override's minimum 5 minutes later on its next "
            "run (daily, or invoke it now)"
        )
    return 0


def run_list(args: argparse.Namespace) -> int:
    zone = FLEET_POLICY.schedule.zone
    client, asg, _ = connect(args)
    actions = one_off_actions(client, asg)
    overrides = live_overrides(actions)
    prewarms = calendar_prewarms(actions)
    if args.json:
        print_json([override.as_json(zone) for override in overrides])
        return 0
    if prewarms:
        print(f"calendar pre-warms on {asg} (cancel a day with `cancel_events` in the policy):")
        for item in prewarms:
            print(
                f"  {item['StartTime'].astimezone(zone):%Y-%m-%d %H:%M}  min "
                f"{item.get('MinSize')}  {action_reason(item['ScheduledActionName'])}"
            )
    if not overrides:
        print(f"no overrides on {asg}")
        return 0
    print(f"{'id':<44}{'window (' + FLEET_POLICY.schedule.time_zone + ')':<36}{'min':>4}  then")
    for override in overrides:
        start = (
            f"{override.start.astimezone(zone):%Y-%m-%d %H:%M}" if override.start else "in progress"
        )
        end = f"{override.end.astimezone(zone):%H:%M}" if override.end else "?"
        minimum = "" if override.min_replicas is None else str(override.min_replicas)
        print(
            f"{override.override_id:<44}{start + '-' + end:<36}{minimum:>4}  "
            f"{override.end_min_replicas}"
        )
    return 0


def run_remove(args: argparse.Namespace) -> int:
    client, asg, _ = connect(args)
    overrides = live_overrides(one_off_actions(client, asg))
    matches = [
        o for o in overrides if o.override_id == args.id or o.override_id.startswith(f"{args.id}-")
    ]
    if not matches:
        raise CommandError(f"no override {args.id!r} on {asg}; `fleet override list` shows them")
    if len(matches) > 1:
        raise CommandError(
            f"{args.id!r} matches {len(matches)} overrides; give the full id "
            f"({', '.join(o.override_id for o in matches)})"
        )
    (override,) = matches
    if override.start is None:
        # Deleting only the end action would leave the raised minimum in place for good.
        raise CommandError(
            f"override {override.override_id} has already started; it ends by itself at "
            f"{override.end.astimezone(FLEET_POLICY.schedule.zone):%H:%M}"
            if override.end
            else f"override {override.override_id} has no end action; set the minimum by hand"
        )
    with aws_errors("remove the override"):
        for edge in ("start", "end") if override.end else ("start",):
            client.delete_scheduled_action(
                AutoScalingGroupName=asg,
                ScheduledActionName=f"{OVERRIDE_PREFIX}{override.override_id}-{edge}",
            )
    print(f"removed override {override.override_id} from {asg}")
    return 0


def action_reason(name: str) -> str:
    """Why a one-off action exists: `override`, or the calendar's reason from its name
    (`finsight-calendar-YYYYMMDD-HHMM-<reason>`: holiday, event, profile, ...)."""
    if name.startswith(OVERRIDE_PREFIX):
        return "override"
    if name.startswith(CALENDAR_ACTION_PREFIX):
        return name[len(CALENDAR_ACTION_PREFIX) + len("YYYYMMDD-HHMM-") :]
    return "other"


def calendar_prewarms(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calendar function's pre-warm actions (market events, learned profile)."""
    return [
        item
        for item in actions
        if action_reason(item["ScheduledActionName"]).startswith(("event", "profile"))
    ]


def live_actions_for_schedule(
    args: argparse.Namespace, start: dt.date, days: int
) -> list[dict[str, object]]:
    """The group's one-off actions (overrides and the calendar's) in the schedule's range."""
    zone = FLEET_POLICY.schedule.zone
    client, asg, _ = connect(args)
    first = dt.datetime.combine(start, dt.time(0), zone)
    last = first + dt.timedelta(days=days)
    return [
        {
            "local_time": item["StartTime"].astimezone(zone).isoformat(),
            "utc_time": item["StartTime"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "min_replicas": item.get("MinSize"),
            "name": item["ScheduledActionName"],
            "reason": action_reason(item["ScheduledActionName"]),
        }
        for item in one_off_actions(client, asg)
        if first <= item["StartTime"] < last
    ]


def add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="AWS region (default: AWS_REGION)")
    parser.add_argument("--asg", help=f"Auto Scaling group name (default: {ASG_ENV})")


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "override", help="add, list or remove one-off minimum-capacity windows on the group"
    )
    actions = parser.add_subparsers(dest="override_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="raise the minimum for a window on one date")
    add.add_argument("--date", type=iso_date, required=True, help="local date (YYYY-MM-DD)")
    add.add_argument(
        "--from", dest="start", type=hh_mm, required=True, help="start, exchange time (HH:MM)"
    )
    add.add_argument("--to", dest="end", type=hh_mm, required=True, help="end (HH:MM)")
    add.add_argument("--min", type=positive_int, required=True, help="minimum replicas (> 0)")
    add.add_argument("--reason", required=True, help="why (becomes part of the id)")
    add_target_options(add)
    add.set_defaults(handler=run_add)

    listing = actions.add_parser("list", help="the group's overrides")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    add_target_options(listing)
    listing.set_defaults(handler=run_list)

    remove = actions.add_parser("remove", help="remove an override that has not started")
    remove.add_argument("id", help="the override's id (or its YYYYMMDD-HHMM start)")
    add_target_options(remove)
    remove.set_defaults(handler=run_remove)
