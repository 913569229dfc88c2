"""The calendar Lambda end to end against a moto Auto Scaling group: the issue's done-when cases."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from lambdas.market_calendar.handler import lambda_handler
from lambdas.market_calendar.reconcile import GroupNotFoundError
from lambdas.market_calendar.settings import ConfigError
from tests.lambdas.market_calendar.conftest import GROUP, NEIGHBOUR, FakeLambdaContext

Actions = dict[str, tuple[str, int]]


def scheduled(client: Any, group: str = GROUP) -> Actions:
    """Every scheduled action of the group: name -> (UTC start or recurrence, min size)."""
    items = client.describe_scheduled_actions(AutoScalingGroupName=group)
    result: Actions = {}
    for item in items["ScheduledUpdateGroupActions"]:
        when = item.get("Recurrence") or item["StartTime"].astimezone(dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        result[item["ScheduledActionName"]] = (when, item["MinSize"])
    return result


RECURRING: Actions = {
    "finsight-market-pre-open": ("50 8 * * 1-5", 2),
    "finsight-market-close": ("0 16 * * 1-5", 1),
}


def calendar_only(actions: Actions) -> Actions:
    return {name: value for name, value in actions.items() if name not in RECURRING}


def test_thanksgiving_week_2026_cancels_the_holiday_prewarm_and_drops_at_the_early_close(
    autoscaling: Any, context: FakeLambdaContext
) -> None:
    summary = lambda_handler({"date": "2026-11-23"}, context)

    # Thursday 11-26 is a holiday: the recurring 08:50 EST pre-warm is undone 5 min later;
    # Friday 11-27 closes at 13:00 EST (18:00 UTC) instead of 16:00.
    assert calendar_only(scheduled(autoscaling)) == {
        "finsight-calendar-20261126-0855-holiday": ("2026-11-26T13:55:00Z", 1),
        "finsight-calendar-20261127-1300-early-close": ("2026-11-27T18:00:00Z", 1),
    }
    assert {name: scheduled(autoscaling)[name] for name in RECURRING} == RECURRING
    assert [a["name"] for a in summary["created"]] == [
        "finsight-calendar-20261126-0855-holiday",
        "finsight-calendar-20261127-1300-early-close",
    ]
    assert summary["deleted"] == [] and summary["dry_run"] is False


def test_second_run_is_a_no_op(autoscaling: Any, context: FakeLambdaContext) -> None:
    lambda_handler({"date": "2026-11-23"}, context)
    before = scheduled(autoscaling)

    again = lambda_handler({"date": "2026-11-23"}, context)

    assert scheduled(autoscaling) == before
    assert (again["created"], again["updated"], again["deleted"]) == ([], [], [])
    assert again["unchanged"] == 2


def test_good_friday_2027_gets_only_the_holiday_correction(
    autoscaling: Any, context: FakeLambdaContext
) -> None:
    lambda_handler({"date": "2027-03-22"}, context)

    # 2027-03-26 is in daylight time: 08:55 EDT is 12:55 UTC.
    assert calendar_only(scheduled(autoscaling)) == {
        "finsight-calendar-20270326-0855-holiday": ("2027-03-26T12:55:00Z", 1),
    }


def special_days_env(monkeypatch: pytest.MonkeyPatch, *days: dict[str, object]) -> None:
    monkeypatch.setenv("FLEET_POLICY_JSON", json.dumps({"special_days": list(days)}))


def test_dst_week_keeps_local_times_across_the_change(
    autoscaling: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the same 10:00-12:00 special window on the Friday before and the Monday after
    # the 2026-03-08 change to daylight time
    window = {"start": "10:00", "end": "12:00", "min_replicas": 3, "reason": "earnings"}
    special_days_env(
        monkeypatch, {"date": "2026-03-06", **window}, {"date": "2026-03-09", **window}
    )

    lambda_handler({"date": "2026-03-05"}, context)

    # THEN the UTC start times move one hour earlier after the change; nothing else is added
    # (the recurring actions follow DST by themselves through their TimeZone).
    assert calendar_only(scheduled(autoscaling)) == {
        "finsight-calendar-20260306-1000-special": ("2026-03-06T15:00:00Z", 3),
        "finsight-calendar-20260306-1200-special-end": ("2026-03-06T17:00:00Z", 2),
        "finsight-calendar-20260309-1000-special": ("2026-03-09T14:00:00Z", 3),
        "finsight-calendar-20260309-1200-special-end": ("2026-03-09T16:00:00Z", 2),
    }


def test_special_day_across_the_close_survives_the_recurring_close(
    autoscaling: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    special_days_env(
        monkeypatch,
        {
            "date": "2026-12-18",
            "start": "15:00",
            "end": "17:00",
            "min_replicas": 3,
            "reason": "index rebalance",
        },
    )

    lambda_handler({"date": "2026-12-14"}, context)

    # The recurring 16:00 close would drop the minimum to 1 inside the window: restored at
    # 16:05, then the window ends at 17:00.
    assert calendar_only(scheduled(autoscaling)) == {
        "finsight-calendar-20261218-1500-special": ("2026-12-18T20:00:00Z", 3),
        "finsight-calendar-20261218-1605-special": ("2026-12-18T21:05:00Z", 3),
        "finsight-calendar-20261218-1700-special-end": ("2026-12-18T22:00:00Z", 1),
    }


def test_dry_run_reports_and_changes_nothing(autoscaling: Any, context: FakeLambdaContext) -> None:
    before = scheduled(autoscaling)

    summary = lambda_handler({"date": "2026-11-23", "dry_run": True}, context)

    assert scheduled(autoscaling) == before
    assert summary["dry_run"] is True
    assert len(summary["created"]) == 2


def test_wrong_group_name_is_a_clear_error_and_changes_nothing(
    autoscaling: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASG_NAME", "finsight-flet")
    before = {g: scheduled(autoscaling, g) for g in (GROUP, NEIGHBOUR)}

    with pytest.raises(GroupNotFoundError, match=r"'finsight-flet' not found.*ASG_NAME"):
        lambda_handler({"date": "2026-11-23"}, context)

    assert {g: scheduled(autoscaling, g) for g in (GROUP, NEIGHBOUR)} == before


def test_only_owned_actions_in_the_window_are_replaced(
    autoscaling: Any, context: FakeLambdaContext
) -> None:
    # GIVEN a stale calendar action (a special day since removed), an action of someone
    # else's, and a calendar action beyond the processed window
    for name, start in (
        ("finsight-calendar-20261124-1500-special", "2026-11-24T20:00:00Z"),
        ("manual-capacity-bump", "2026-11-24T21:00:00Z"),
        ("finsight-calendar-20261208-1500-special", "2026-12-08T20:00:00Z"),
    ):
        autoscaling.put_scheduled_update_group_action(
            AutoScalingGroupName=GROUP, ScheduledActionName=name, StartTime=start, MinSize=3
        )

    summary = lambda_handler({"date": "2026-11-23"}, context)

    actions = scheduled(autoscaling)
    assert "finsight-calendar-20261124-1500-special" not in actions
    assert actions["manual-capacity-bump"] == ("2026-11-24T21:00:00Z", 3)
    assert actions["finsight-calendar-20261208-1500-special"] == ("2026-12-08T20:00:00Z", 3)
    assert [a["name"] for a in summary["deleted"]] == ["finsight-calendar-20261124-1500-special"]
    assert scheduled(autoscaling, NEIGHBOUR) == {
        "neighbour-pre-open": ("50 8 * * 1-5", 2),
        "neighbour-close": ("0 16 * * 1-5", 1),
    }


def test_changed_policy_updates_the_owned_action_in_place(
    autoscaling: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    lambda_handler({"date": "2026-11-23"}, context)
    monkeypatch.setenv("FLEET_POLICY_JSON", json.dumps({"default": {"min_replicas": 0}}))

    summary = lambda_handler({"date": "2026-11-23"}, context)

    assert [a["name"] for a in summary["updated"]] == [
        "finsight-calendar-20261126-0855-holiday",
        "finsight-calendar-20261127-1300-early-close",
    ]
    assert calendar_only(scheduled(autoscaling)) == {
        "finsight-calendar-20261126-0855-holiday": ("2026-11-26T13:55:00Z", 0),
        "finsight-calendar-20261127-1300-early-close": ("2026-11-27T18:00:00Z", 0),
    }


def test_live_override_is_respected_not_duplicated(
    autoscaling: Any, context: FakeLambdaContext
) -> None:
    # GIVEN `fleet override` raised the minimum to 3 from 12:00 to 14:00 on the early close
    for name, start, minimum in (
        ("finsight-override-20261127-1200-start", "2026-11-27T17:00:00Z", 3),
        ("finsight-override-20261127-1200-end", "2026-11-27T19:00:00Z", 1),
    ):
        autoscaling.put_scheduled_update_group_action(
            AutoScalingGroupName=GROUP, ScheduledActionName=name, StartTime=start, MinSize=minimum
        )

    lambda_handler({"date": "2026-11-27", "dry_run": False}, context)

    # THEN no 13:00 early-close action cuts the override short: its own end action already
    # sets the post-close minimum.
    assert calendar_only(scheduled(autoscaling)) == {
        "finsight-override-20261127-1200-start": ("2026-11-27T17:00:00Z", 3),
        "finsight-override-20261127-1200-end": ("2026-11-27T19:00:00Z", 1),
    }


def test_actions_already_past_are_skipped(
    autoscaling: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An on-demand run at 14:00 EST on Thanksgiving: the 08:55 correction is history.
    from lambdas.market_calendar import handler

    now = dt.datetime(2026, 11, 26, 19, 0, tzinfo=dt.UTC)
    monkeypatch.setattr(handler, "_utcnow", lambda: now)

    summary = lambda_handler({}, context)

    assert summary["start"] == "2026-11-26"
    assert [a["name"] for a in summary["skipped_past"]] == [
        "finsight-calendar-20261126-0855-holiday"
    ]
    assert list(calendar_only(scheduled(autoscaling))) == [
        "finsight-calendar-20261127-1300-early-close"
    ]


def test_metrics_count_the_changes(
    autoscaling: Any, context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    lambda_handler({"date": "2026-11-23"}, context)

    emf = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    assert len(emf) == 1
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "FinsightServing"
    # EMF carries each metric as a list of the values added during the invocation.
    assert (emf[0]["ActionsCreated"], emf[0]["ActionsDeleted"], emf[0]["Errors"]) == (
        [2.0],
        [0.0],
        [0.0],
    )


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"date": "2026-02-30"}, "event.date: must be a date as YYYY-MM-DD"),
        ({"date": "20261123"}, "event.date: must be a date as YYYY-MM-DD"),
        ({"dry_run": "yes"}, "event.dry_run: must be true or false"),
        ({"dryrun": True}, "event.dryrun: unknown field"),
    ],
)
def test_bad_event_is_refused_and_counted_as_an_error(
    autoscaling: Any,
    context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
    event: dict[str, object],
    message: str,
) -> None:
    before = scheduled(autoscaling)

    with pytest.raises(ConfigError, match=message):
        lambda_handler(event, context)

    assert scheduled(autoscaling) == before
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [entry["Errors"] for entry in emf if "Errors" in entry] == [[1.0]]


def test_fomc_afternoon_gets_an_event_window_and_a_second_run_changes_nothing(
    autoscaling: Any, context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the week of the 2026-12-09 FOMC statement (14:00 EST = 19:00 UTC)
    first = lambda_handler({"date": "2026-12-07"}, context)

    assert calendar_only(scheduled(autoscaling)) == {
        "finsight-calendar-20261209-1350-event": ("2026-12-09T18:50:00Z", 3),
        "finsight-calendar-20261209-1445-event-end": ("2026-12-09T19:45:00Z", 2),
    }
    assert len(first["created"]) == 2
    again = lambda_handler({"date": "2026-12-07"}, context)
    assert (again["created"], again["updated"], again["deleted"]) == ([], [], [])
    emf = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    # The published dates reach 2028-01-26: 415 days after 2026-12-07.
    assert emf[-1]["EventDataDaysLeft"] == [415.0]


def test_a_cancelled_event_day_loses_its_window(
    autoscaling: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    lambda_handler({"date": "2026-12-07"}, context)
    monkeypatch.setenv("FLEET_POLICY_JSON", json.dumps({"cancel_events": ["2026-12-09"]}))

    summary = lambda_handler({"date": "2026-12-07"}, context)

    assert calendar_only(scheduled(autoscaling)) == {}
    assert [a["name"] for a in summary["deleted"]] == [
        "finsight-calendar-20261209-1350-event",
        "finsight-calendar-20261209-1445-event-end",
    ]


def put_demand(history: dict[dt.datetime, float]) -> None:
    """Publish per-minute fleet demand as the gateways would (Sum of 10 s datapoints)."""
    import boto3

    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    items = [
        {
            "MetricName": "Demand",
            "Dimensions": [{"Name": "AutoScalingGroupName", "Value": GROUP}],
            "Timestamp": at,
            "Value": value * 6,  # six 10 s datapoints per minute
        }
        for at, value in history.items()
    ]
    for first in range(0, len(items), 500):
        cloudwatch.put_metric_data(
            Namespace="FinsightServing", MetricData=items[first : first + 500]
        )


def weekdays_with_wednesday_burst(first: dt.date, days: int) -> dict[dt.datetime, float]:
    zone = dt.timezone(dt.timedelta(hours=-5))  # EST in December
    history: dict[dt.datetime, float] = {}
    for offset in range(days):
        date = first + dt.timedelta(days=offset)
        if date.weekday() >= 5:
            continue
        history[dt.datetime.combine(date, dt.time(12, 0), zone)] = 5.0
        if date.weekday() == 2:
            for minute in range(30):
                history[dt.datetime.combine(date, dt.time(14, minute), zone)] = 35.0
    return history


def test_learned_profile_from_metric_history_prewarms_the_wednesday_burst(
    autoscaling: Any, context: FakeLambdaContext
) -> None:
    # GIVEN two weeks of demand with 35 in flight at 14:00-14:30 every Wednesday
    put_demand(weekdays_with_wednesday_burst(dt.date(2026, 11, 30), 14))

    first = lambda_handler({"date": "2026-12-14"}, context)

    assert calendar_only(scheduled(autoscaling)) == {
        "finsight-calendar-20261216-1350-profile": ("2026-12-16T18:50:00Z", 4),
        "finsight-calendar-20261216-1430-profile-end": ("2026-12-16T19:30:00Z", 2),
    }
    assert len(first["created"]) == 2
    again = lambda_handler({"date": "2026-12-14"}, context)
    assert (again["created"], again["updated"], again["deleted"]) == ([], [], [])


def test_short_history_skips_the_profile_with_a_log_line_and_a_metric(
    autoscaling: Any,
    context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    put_demand(weekdays_with_wednesday_burst(dt.date(2026, 12, 7), 7))

    lambda_handler({"date": "2026-12-14"}, context)

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf[-1]["ProfileSkipped"] == [1.0] and emf[-1]["ProfileWindows"] == [0.0]
    assert "learned profile skipped: 1 past Monday(s) of demand history, need 2" in caplog.text
    assert calendar_only(scheduled(autoscaling)) == {}
