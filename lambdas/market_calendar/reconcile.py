"""Make the group's calendar-owned one-off actions equal the plan, through the Auto Scaling API.

Only names under `CALENDAR_PREFIX`, only on the configured group, only inside the processed
window: the stack's recurring actions, people's overrides and other groups are read at most.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lambdas.market_calendar.plan import CALENDAR_PREFIX, OneOffAction, overrides_from_actions
from lambdas.market_calendar.plan import plan_actions as plan_calendar_actions
from lambdas.market_calendar.settings import CalendarRequest, CalendarSettings

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient

UTC = dt.UTC


class GroupNotFoundError(LookupError):
    """The configured Auto Scaling group does not exist in this account and region."""


@dataclass
class Summary:
    """What one run changed (or, in a dry run, would change)."""

    group: str
    start: dt.date
    days: int
    dry_run: bool
    created: list[OneOffAction] = field(default_factory=list)
    updated: list[OneOffAction] = field(default_factory=list)
    deleted: list[OneOffAction] = field(default_factory=list)
    unchanged: list[OneOffAction] = field(default_factory=list)
    skipped_past: list[OneOffAction] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        def names(actions: list[OneOffAction]) -> list[dict[str, object]]:
            return [action.as_json() for action in actions]

        return {
            "group": self.group,
            "start": self.start.isoformat(),
            "days": self.days,
            "dry_run": self.dry_run,
            "created": names(self.created),
            "updated": names(self.updated),
            "deleted": names(self.deleted),
            "unchanged": len(self.unchanged),
            "skipped_past": names(self.skipped_past),
        }


def one_off_actions(client: AutoScalingClient, group: str) -> list[OneOffAction]:
    """The group's one-off scheduled actions (recurring ones have no fixed start time)."""
    actions: list[OneOffAction] = []
    paginator = client.get_paginator("describe_scheduled_actions")
    for page in paginator.paginate(AutoScalingGroupName=group):
        for item in page["ScheduledUpdateGroupActions"]:
            if item.get("Recurrence") or "StartTime" not in item or "MinSize" not in item:
                continue
            actions.append(
                OneOffAction(
                    start_time=item["StartTime"].astimezone(UTC),
                    min_size=item["MinSize"],
                    name=item["ScheduledActionName"],
                )
            )
    return actions


def require_group(client: AutoScalingClient, group: str) -> None:
    # Describing another group's scheduled actions returns an empty list, and putting one
    # may not fail before it is too late: check the group exists before planning anything.
    found = client.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    if not found["AutoScalingGroups"]:
        raise GroupNotFoundError(
            f"Auto Scaling group {group!r} not found in this account and region; "
            "check ASG_NAME (nothing was changed)"
        )


def reconcile(
    client: AutoScalingClient,
    settings: CalendarSettings,
    request: CalendarRequest,
    now: dt.datetime,
) -> Summary:
    """Create, update and delete calendar-owned actions so they match the plan; idempotent."""
    policy = settings.policy
    zone = policy.schedule.zone
    start = request.date or now.astimezone(zone).date()
    summary = Summary(settings.asg_name, start, settings.horizon_days, request.dry_run)
    require_group(client, settings.asg_name)

    existing = one_off_actions(client, settings.asg_name)
    overrides = overrides_from_actions(existing)
    wanted = plan_calendar_actions(policy, start, settings.horizon_days, overrides)
    window_start = dt.datetime.combine(start, dt.time(0), zone)
    window_end = dt.datetime.combine(
        start + dt.timedelta(days=settings.horizon_days), dt.time(0), zone
    )
    owned = {
        action.name: action
        for action in existing
        if action.name.startswith(CALENDAR_PREFIX)
        and window_start <= action.start_time < window_end
    }

    for action in wanted:
        current = owned.get(action.name)
        if action.start_time <= now:
            # AWS refuses start times in the past; that part of the day is already history.
            summary.skipped_past.append(action)
        elif current == action:
            summary.unchanged.append(action)
        elif current is not None:
            summary.updated.append(action)
        else:
            summary.created.append(action)
    wanted_names = {action.name for action in wanted}
    summary.deleted = sorted(
        action
        for name, action in owned.items()
        if name not in wanted_names and action.start_time > now
    )

    if not request.dry_run:
        for action in (*summary.created, *summary.updated):
            # A put with an existing name replaces that action, so an update is one call.
            client.put_scheduled_update_group_action(
                AutoScalingGroupName=settings.asg_name,
                ScheduledActionName=action.name,
                StartTime=action.start_time,
                MinSize=action.min_size,
            )
        for action in summary.deleted:
            client.delete_scheduled_action(
                AutoScalingGroupName=settings.asg_name, ScheduledActionName=action.name
            )
    return summary
