"""A moto Auto Scaling group set up as the stack leaves it: recurring pre-open/close actions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from lambdas.market_calendar import handler

REGION = "us-east-1"
GROUP = "finsight-fleet"
NEIGHBOUR = "someone-elses-group"
# Before every date the tests process, so no planned action counts as already past.
FROZEN_NOW = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "finsight-market-calendar"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:finsight-market-calendar"
    )
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def context() -> FakeLambdaContext:
    return FakeLambdaContext()


def make_group(name: str, action_prefix: str) -> None:
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchConfigurationName="finsight-lc",
        MinSize=1,
        MaxSize=4,
        AvailabilityZones=[f"{REGION}a"],
    )
    # The stack's recurring market-hours actions, as compiled from the policy.
    for action, recurrence, minimum in (
        ("pre-open", "50 8 * * 1-5", 2),
        ("close", "0 16 * * 1-5", 1),
    ):
        autoscaling.put_scheduled_update_group_action(
            AutoScalingGroupName=name,
            ScheduledActionName=f"{action_prefix}{action}",
            Recurrence=recurrence,
            TimeZone="America/New_York",
            MinSize=minimum,
        )


@pytest.fixture
def autoscaling(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A mocked account with the fleet's group and a neighbour group, env set as the stack does."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("ASG_NAME", GROUP)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "FinsightServing")
    monkeypatch.setattr(handler, "_utcnow", lambda: FROZEN_NOW)
    with mock_aws():
        client = boto3.client("autoscaling", region_name=REGION)
        client.create_launch_configuration(
            LaunchConfigurationName="finsight-lc",
            ImageId="ami-12c6146b",
            InstanceType="g5.xlarge",
        )
        make_group(GROUP, "finsight-market-")
        # moto keys scheduled actions by name across groups, so the neighbour's differ.
        make_group(NEIGHBOUR, "neighbour-")
        yield client
