"""Recurring scheduled actions for the market-hours minimum, in the exchange's time zone.

Holidays and early closes are the calendar Lambda's: it adds one-off actions on top.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cdktn_provider_aws.autoscaling_schedule import AutoscalingSchedule
from constructs import Construct

from contract import CLOSE_ACTION as CLOSE_ACTION
from contract import PREWARM_ACTION as PREWARM_ACTION
from infra.policy.fleet import FleetPolicy

# A scheduled action leaves a size it is given as -1 unchanged.
UNCHANGED = -1


@dataclass(frozen=True)
class RecurringAction:
    name: str
    recurrence: str  # cron, minute hour day month weekday, in `time_zone`
    time_zone: str
    min_size: int


def recurring_actions(policy: FleetPolicy) -> tuple[RecurringAction, RecurringAction]:
    """The two weekly actions: the market-hours minimum at pre-warm, the default at close."""
    hours = policy.schedule
    # cron counts Sunday as 0, datetime.weekday() counts Monday as 0
    days = ",".join(str((day + 1) % 7) for day in sorted(hours.weekdays))

    def cron(at: dt.time) -> str:
        return f"{at.minute} {at.hour} * * {days}"

    return (
        RecurringAction(
            PREWARM_ACTION,
            cron(hours.prewarm_time),
            hours.time_zone,
            policy.market_hours.min_replicas,
        ),
        RecurringAction(
            CLOSE_ACTION, cron(hours.close_time), hours.time_zone, policy.default.min_replicas
        ),
    )


@dataclass(frozen=True)
class ScheduleProps:
    autoscaling_group_name: str
    policy: FleetPolicy


class Schedule(Construct):
    action_names: tuple[str, ...]

    def __init__(self, scope: Construct, id_: str, props: ScheduleProps) -> None:
        super().__init__(scope, id_)
        actions = recurring_actions(props.policy)
        for action in actions:
            AutoscalingSchedule(
                self,
                action.name,
                autoscaling_group_name=props.autoscaling_group_name,
                scheduled_action_name=action.name,
                recurrence=action.recurrence,
                time_zone=action.time_zone,
                min_size=action.min_size,
                max_size=UNCHANGED,
                desired_capacity=UNCHANGED,
            )
        self.action_names = tuple(action.name for action in actions)
