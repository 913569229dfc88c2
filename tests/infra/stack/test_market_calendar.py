"""The calendar function's wiring in the synthesized stack: code, roles, schedule, alarms.

`prod` and `synth` are the session's synth (conftest); `fixed_image` has the function off."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cdktn import App

from infra.main import TARGET_VERSIONS
from infra.policy import FLEET_POLICY, PolicyError, SpecialDay
from infra.policy.loader import policy_from_mapping
from infra.stack.market_calendar import policy_environment
from infra.stack.settings import load_settings
from infra.stack.stack import FleetStack, stack_name

from .conftest import Synth


def only(stack: dict[str, Any], kind: str, contains: str = "market-calendar") -> tuple[str, Any]:
    """The one resource of `kind` whose id contains `contains`, as (address, config)."""
    found = [
        (f"{kind}.{key}", value)
        for key, value in stack["resource"].get(kind, {}).items()
        if contains in key
    ]
    assert len(found) == 1, (kind, contains, [key for key, _ in found])
    return found[0]


def ref(address: str, attribute: str) -> str:
    return f"${{{address}.{attribute}}}"


def test_function_runs_the_packaged_handler_from_its_zip(
    prod: dict[str, Any], synth: Synth
) -> None:
    _, function = only(prod, "aws_lambda_function")
    assert function["runtime"] == "python3.12"
    assert function["handler"] == "lambdas.market_calendar.handler.lambda_handler"
    assert function["reserved_concurrent_executions"] == 1
    zip_bytes = (synth.stack_dir("prod") / function["filename"]).read_bytes()
    assert (
        function["source_code_hash"]
        == base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()
    )


def test_function_environment_names_the_group_and_carries_the_policy(
    prod: dict[str, Any],
) -> None:
    _, function = only(prod, "aws_lambda_function")
    group, _ = only(prod, "aws_autoscaling_group", contains="fleet")
    variables = function["environment"]["variables"]
    assert variables["ASG_NAME"] == ref(group, "name")
    assert variables["HORIZON_DAYS"] == "7"
    deployed = policy_from_mapping(json.loads(variables["FLEET_POLICY_JSON"]), FLEET_POLICY)
    assert deployed == FLEET_POLICY


def test_function_metrics_go_to_the_stacks_one_namespace(tmp_path: Path) -> None:
    # A namespace other than the default: equal defaults would hide a hard-coded one.
    app = App(outdir=str(tmp_path), context={"targetVersions": TARGET_VERSIONS})
    settings = load_settings("dev", cloudwatch_namespace="Finsight/Staging")
    FleetStack(app, settings)
    app.synth()
    document = json.loads((tmp_path / "stacks" / stack_name(settings) / "cdk.tf.json").read_text())
    _, function = only(document, "aws_lambda_function")
    namespace = function["environment"]["variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    assert namespace == "Finsight/Staging"


def test_function_role_writes_only_to_the_fleet_group(prod: dict[str, Any]) -> None:
    role, _ = only(prod, "aws_iam_role", contains="market-calendar_role")
    _, policy = only(prod, "aws_iam_role_policy", contains="market-calendar_permissions")
    group, _ = only(prod, "aws_autoscaling_group", contains="fleet")
    assert policy["role"] == ref(role, "id")
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    writes = statements["ManageOwnGroupScheduledActions"]
    assert writes["Resource"] == ref(group, "arn")
    assert sorted(writes["Action"]) == [
        "autoscaling:DeleteScheduledAction",
        "autoscaling:PutScheduledUpdateGroupAction",
    ]
    # Only the read-only Describe calls and the learned profile's metric read get "*",
    # and no action is a wildcard.
    wildcard = [s for s in statements.values() if s["Resource"] == "*"]
    assert [sorted(s["Action"]) for s in wildcard] == [
        ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeScheduledActions"],
        ["cloudwatch:GetMetricData"],
    ]
    actions = [
        a
        for s in statements.values()
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert not [a for a in actions if "*" in a]
    assert {s["Effect"] for s in statements.values()} == {"Allow"}


def test_daily_schedule_in_new_york_with_retries_and_an_encrypted_dead_letter_queue(
    prod: dict[str, Any],
) -> None:
    function, _ = only(prod, "aws_lambda_function")
    queue, queue_config = only(prod, "aws_sqs_queue")
    scheduler_role, _ = only(prod, "aws_iam_role", contains="scheduler-role")
    _, schedule = only(prod, "aws_scheduler_schedule")
    assert schedule["schedule_expression"] == "cron(0 5 * * ? *)"
    assert schedule["schedule_expression_timezone"] == "America/New_York"
    target = schedule["target"]
    assert target["arn"] == ref(function, "arn")
    assert target["role_arn"] == ref(scheduler_role, "arn")
    assert target["retry_policy"]["maximum_retry_attempts"] > 0
    assert target["dead_letter_config"]["arn"] == ref(queue, "arn")
    assert queue_config["sqs_managed_sse_enabled"] is True

    _, scheduler_policy = only(prod, "aws_iam_role_policy", contains="scheduler-permissions")
    granted = {
        (s["Action"], s["Resource"]) for s in json.loads(scheduler_policy["policy"])["Statement"]
    }
    assert granted == {
        ("lambda:InvokeFunction", ref(function, "arn")),
        ("sqs:SendMessage", ref(queue, "arn")),
    }
    _, function_config = only(prod, "aws_lambda_function")
    assert function_config["dead_letter_config"]["target_arn"] == ref(queue, "arn")


def test_log_group_exists_first_with_the_environment_retention(prod: dict[str, Any]) -> None:
    log_group, logs = only(prod, "aws_cloudwatch_log_group")
    _, function = only(prod, "aws_lambda_function")
    assert logs["name"] == "/aws/lambda/finsight-serving-prod-market-calendar"
    assert logs["retention_in_days"] == load_settings("prod").log_retention_days
    assert log_group in function["depends_on"]
    assert function["logging_config"]["log_group"] == ref(log_group, "name")


def test_error_alarm_pages_through_the_stack_topic(prod: dict[str, Any]) -> None:
    function, _ = only(prod, "aws_lambda_function")
    topic, _ = only(prod, "aws_sns_topic", contains="alarms")
    _, alarm = only(prod, "aws_cloudwatch_metric_alarm", contains="market-calendar_errors")
    assert (alarm["namespace"], alarm["metric_name"]) == ("AWS/Lambda", "Errors")
    assert alarm["dimensions"] == {"FunctionName": ref(function, "function_name")}
    assert alarm["alarm_actions"] == [ref(topic, "arn")]
    assert alarm["threshold"] == 1
    _, dead_letters = only(prod, "aws_cloudwatch_metric_alarm", contains="dead-letters")
    assert dead_letters["alarm_actions"] == [ref(topic, "arn")]


def test_switched_off_environment_has_no_calendar_resources(
    fixed_image: dict[str, Any],
) -> None:
    assert "aws_lambda_function" not in fixed_image["resource"]
    assert "aws_scheduler_schedule" not in fixed_image["resource"]


def test_policy_too_large_for_the_environment_is_refused() -> None:
    many = tuple(
        SpecialDay(
            dt.date(2027, 1, 4) + dt.timedelta(days=i), dt.time(10), dt.time(11), 2, "x" * 40
        )
        for i in range(60)
    )
    with pytest.raises(
        PolicyError, match=r"special_days: the policy takes \d+ bytes .*, over 3500"
    ):
        policy_environment(dataclasses.replace(FLEET_POLICY, special_days=many))
