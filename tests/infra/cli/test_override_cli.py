"""`fleet override` and `fleet schedule --asg` against a moto Auto Scaling group."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.cli import override_cmd
from infra.cli.main import main
from infra.policy import FLEET_POLICY
from lambdas.market_calendar.plan import OneOffAction, overrides_from_actions, plan_day

REGION = "us-east-1"
GROUP = "finsight-fleet"
# A plain Wednesday, far enough ahead that the tests do not age into the past.
DAY = "2030-06-12"


@pytest.fixture
def autoscaling(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("FLEET_ASG_NAME", GROUP)
    with mock_aws():
        client = boto3.client("autoscaling", region_name=REGION)
        client.create_launch_configuration(
            LaunchConfigurationName="lc", ImageId="ami-12c6146b", InstanceType="g5.xlarge"
        )
        client.create_auto_scaling_group(
            AutoScalingGroupName=GROUP,
            LaunchConfigurationName="lc",
            MinSize=1,
            MaxSize=4,
            AvailabilityZones=[f"{REGION}a"],
        )
        yield client


def actions(client: Any) -> dict[str, tuple[str, int]]:
    items = client.describe_scheduled_actions(AutoScalingGroupName=GROUP)
    return {
        item["ScheduledActionName"]: (
            item["StartTime"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            item["MinSize"],
        )
        for item in items["ScheduledUpdateGroupActions"]
    }


def add(*extra: str, start: str = "10:00", end: str = "11:30", minimum: str = "3") -> list[str]:
    return [
        "override", "add", "--date", DAY, "--from", start, "--to", end,
        "--min", minimum, "--reason", "Index rebalance", *extra,
    ]  # fmt: skip


def test_add_writes_a_start_and_an_end_action(
    autoscaling: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(add()) == 0

    # 10:00 EDT is 14:00 UTC; at 11:30 the market-hours minimum (2) applies again.
    assert actions(autoscaling) == {
        "finsight-override-20300612-1000-index-rebalance-start": ("2030-06-12T14:00:00Z", 3),
        "finsight-override-20300612-1000-index-rebalance-end": ("2030-06-12T15:30:00Z", 2),
    }
    out = capsys.readouterr().out
    assert out.startswith("added override 20300612-1000-index-rebalance on finsight-fleet")


def test_override_after_the_close_ends_at_the_default_minimum(autoscaling: Any) -> None:
    assert main(add(start="17:00", end="19:00")) == 0
    assert actions(autoscaling)["finsight-override-20300612-1700-index-rebalance-end"][1] == 1


def test_list_then_remove_by_short_id(autoscaling: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(add()) == 0
    capsys.readouterr()

    assert main(["override", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed == {
        "id": "20300612-1000-index-rebalance",
        "start": "2030-06-12T10:00:00-04:00",
        "end": "2030-06-12T11:30:00-04:00",
        "min_replicas": 3,
        "end_min_replicas": 2,
        "reason": "index rebalance",
        "in_progress": False,
    }
    assert main(["override", "list"]) == 0
    assert "20300612-1000-index-rebalance" in capsys.readouterr().out

    assert main(["override", "remove", "20300612-1000"]) == 0
    assert actions(autoscaling) == {}
    assert main(["override", "list"]) == 0
    assert capsys.readouterr().out.endswith("no overrides on finsight-fleet\n")


def test_region_and_group_flags_win_over_the_environment(
    autoscaling: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_ASG_NAME", "other")
    monkeypatch.delenv("AWS_REGION")
    assert main(add("--asg", GROUP, "--region", REGION)) == 0
    assert len(actions(autoscaling)) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (add(minimum="5"), "--min 5 is above the group's maximum (4)"),
        (add(start="11:00", end="10:00"), "--to 10:00 must be after --from 11:00"),
        (add(start="08:50"), "--from 08:50 is when the recurring pre-open action runs"),
        (add(end="16:00"), "--to 16:00 is when the recurring close action runs"),
        (
            ["override", "add", "--date", "2020-06-10", "--from", "10:00", "--to", "11:00",
             "--min", "3", "--reason", "late"],
            "2020-06-10 10:00 America/New_York is in the past",
        ),
        (add("--asg", "finsight-flet"), "group 'finsight-flet' not found in us-east-1"),
        (
            ["override", "add", "--date", DAY, "--from", "10:00", "--to", "11:00", "--min", "3",
             "--reason", "!!!"],
            "--reason: must say why, in letters or digits",
        ),
        (["override", "remove", "20300612-0900"], "no override '20300612-0900' on finsight-fleet"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_changes_nothing(
    autoscaling: Any, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(add(start="12:00", end="12:30")) == 0  # an existing override to keep
    before = actions(autoscaling)
    capsys.readouterr()

    assert main(argv) == 2

    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1
    assert actions(autoscaling) == before


def test_overlapping_window_is_refused(
    autoscaling: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(add()) == 0
    before = actions(autoscaling)
    capsys.readouterr()

    assert main(add(start="11:00", end="12:00", minimum="4")) == 2

    err = capsys.readouterr().err
    assert "overlaps override 20300612-1000-index-rebalance (2030-06-12 10:00-11:30)" in err
    assert actions(autoscaling) == before


def test_adjacent_window_is_accepted(autoscaling: Any) -> None:
    assert main(add()) == 0
    assert main(add(start="11:30", end="12:00", minimum="4")) == 0
    assert len(actions(autoscaling)) == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["override", "add", "--date", DAY, "--from", "9", "--to", "10:00", "--min", "2",
          "--reason", "x"], "expected a time as HH:MM, got '9'"),
        (["override", "add", "--date", DAY, "--from", "09:00", "--to", "10:00", "--min", "0",
          "--reason", "x"], "must be > 0"),
    ],
)  # fmt: skip
def test_malformed_flags_are_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_group_and_region_are_clear(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FLEET_ASG_NAME", raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    assert main(["override", "list"]) == 2
    assert "no Auto Scaling group: pass --asg or set FLEET_ASG_NAME" in capsys.readouterr().err
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert main(["override", "list", "--asg", GROUP]) == 2
    assert "no AWS region: pass --region or set AWS_REGION" in capsys.readouterr().err


def test_started_override_cannot_be_removed(
    autoscaling: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Once the start action has run AWS deletes it; only the end action is left.
    autoscaling.put_scheduled_update_group_action(
        AutoScalingGroupName=GROUP,
        ScheduledActionName="finsight-override-20300612-1000-drill-end",
        StartTime="2030-06-12T15:30:00Z",
        MinSize=2,
    )
    assert main(["override", "remove", "20300612-1000-drill"]) == 2
    assert "has already started; it ends by itself at 11:30" in capsys.readouterr().err
    assert len(actions(autoscaling)) == 1


def test_calendar_function_reads_back_what_the_command_writes(
    autoscaling: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an override across the 16:00 recurring close
    assert main(add(start="15:00", end="17:00")) == 0
    assert "note: the recurring 16:00 close action falls inside the window" in (
        capsys.readouterr().out
    )
    written = [
        OneOffAction(dt.datetime.fromisoformat(at.replace("Z", "+00:00")), minimum, name)
        for name, (at, minimum) in actions(autoscaling).items()
    ]

    (override,) = overrides_from_actions(written)

    assert (override.override_id, override.min_replicas, override.end_min_replicas) == (
        "20300612-1500-index-rebalance",
        3,
        1,
    )
    # THEN the calendar restores the override's minimum after the close and adds nothing else
    planned = plan_day(FLEET_POLICY, dt.date(2030, 6, 12), [override])
    assert [(a.name, a.min_size) for a in planned] == [
        ("finsight-calendar-20300612-1605-override", 3)
    ]
    assert override_cmd.OVERRIDE_PREFIX == "finsight-override-"


def test_schedule_lists_live_actions_alongside_the_calendar(
    autoscaling: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(add()) == 0
    capsys.readouterr()

    assert main(["schedule", "--start", DAY, "--days", "1", "--asg", GROUP, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [c["reason"] for c in payload["schedule"]] == ["pre-open", "close"]
    assert payload["live_actions"] == [
        {
            "local_time": "2030-06-12T10:00:00-04:00",
            "utc_time": "2030-06-12T14:00:00Z",
            "min_replicas": 3,
            "name": "finsight-override-20300612-1000-index-rebalance-start",
            "reason": "override",
        },
        {
            "local_time": "2030-06-12T11:30:00-04:00",
            "utc_time": "2030-06-12T15:30:00Z",
            "min_replicas": 2,
            "name": "finsight-override-20300612-1000-index-rebalance-end",
            "reason": "override",
        },
    ]
    assert main(["schedule", "--start", DAY, "--days", "1", "--asg", GROUP]) == 0
    text = capsys.readouterr().out
    assert "live one-off actions on finsight-fleet:" in text
    assert "finsight-override-20300612-1000-index-rebalance-start" in text


def test_action_reason_names_the_calendar_prewarms() -> None:
    from infra.cli.override_cmd import action_reason, calendar_prewarms

    names = [
        "finsight-calendar-20261209-1350-event",
        "finsight-calendar-20261216-1350-profile",
        "finsight-calendar-20261126-0855-holiday",
        "finsight-override-20300612-1000-index-rebalance-start",
    ]
    assert [action_reason(n) for n in names] == ["event", "profile", "holiday", "override"]
    prewarms = calendar_prewarms([{"ScheduledActionName": n} for n in names])
    assert [p["ScheduledActionName"] for p in prewarms] == names[:2]
