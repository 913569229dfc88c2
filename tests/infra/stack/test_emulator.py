"""The dev stack applied for real against moto_server in a private network namespace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.policy import FLEET_POLICY, cold_start
from infra.policy.slo import Severity
from infra.stack.market_calendar import CALENDAR_ALARMS
from infra.stack.observability import ALARMS, alarm_name
from infra.stack.settings import load_settings
from infra.stack.slo_alarms import burn_rate_alarms

from .conftest import EMULATOR_CYCLE, TENANT_POLICY
from .emulated import EMULATED_DOMAIN, EMULATED_SIZES, BackgroundCycle

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# Measured 120-220 s for init, plan, apply and destroy of the dev stack (69 resources) on
# 2 cores, plus 20-40 s for the rollout plan and two re-applies; the cycle starts when the
# session is collected and runs beside the other tests, so it is waited for up to this long
# from the moment its tests start: under pytest's own 900 s limit, so a hang fails with its
# output.
HARD_TIMEOUT_S = 800
# Resources moto reads back differently from what was applied, so every plan updates them.
EMULATOR_DRIFT = {"aws_autoscaling_policy", "aws_lambda_function"}
# What the emulated dev stack runs: the shared policy with its sizes.
DEV_POLICY = load_settings("dev", **EMULATED_SIZES).fleet_policy(FLEET_POLICY)


@pytest.fixture(scope="module")
def cycle(request: pytest.FixtureRequest) -> BackgroundCycle:
    """The cycle the collection started (tests/infra/stack/conftest.py)."""
    return request.config.stash[EMULATOR_CYCLE]


@pytest.fixture(scope="module")
def dev_dir(cycle: BackgroundCycle) -> Path:
    """The dev stack with every deploy setting given (a default one stops at plan), named
    in a hosted zone instead of given a certificate; the cycle creates the zone."""
    return cycle.dev_dir


@pytest.fixture(scope="module")
def report(cycle: BackgroundCycle) -> dict[str, Any]:
    status, output = cycle.wait(HARD_TIMEOUT_S)
    assert status == 0, output[-6000:]
    loaded: dict[str, Any] = json.loads(cycle.report_path.read_text())
    print(
        "emulator: "
        f"{loaded['state_resources']} resources, apply {loaded['apply_s']:.0f} s, "
        f"destroy {loaded['destroy_s']:.0f} s, re-applies "
        + ", ".join(f"{r['apply_s']:.0f}" for r in loaded["redeploys"])
        + " s"
    )
    return loaded


def test_every_resource_was_created_and_destroyed(report: dict[str, Any], dev_dir: Path) -> None:
    synthesized = json.loads((dev_dir / "cdk.tf.json").read_text())["resource"]
    assert report["state_resources"] == sum(len(v) for v in synthesized.values())
    assert report["after_destroy_groups"] == 0


def test_group_sizes_and_health_checks(report: dict[str, Any]) -> None:
    [group] = report["observed"]["groups"]
    # Created at the market-hours minimum: a first deploy may land in market hours.
    assert (group["MinSize"], group["MaxSize"]) == (
        DEV_POLICY.market_hours.min_replicas,
        DEV_POLICY.max_replicas,
    )
    assert group["HealthCheckType"] == "ELB"
    # The emulated stack streams its weights at boot: that path's grace period.
    assert group["HealthCheckGracePeriod"] == cold_start.health_check_grace_period_s(
        cold_start.WeightPath.STREAM
    )
    [target_group] = report["observed"]["target_groups"]
    assert group["TargetGroupARNs"] == [target_group["TargetGroupArn"]]
    assert target_group["HealthCheckPath"] == "/health/ready"
    assert target_group["HealthCheckTimeoutSeconds"] == 10
    assert target_group["UnhealthyThresholdCount"] == 2
    [hook] = report["observed"]["lifecycle_hooks"]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"


def test_the_group_runs_a_numbered_version_with_the_published_image(
    report: dict[str, Any],
) -> None:
    [group] = report["observed"]["groups"]
    version = group["LaunchTemplate"]["Version"]
    assert version.isdigit(), version
    [template] = [
        t
        for t in report["observed"]["launch_template_versions"]
        if str(t["VersionNumber"]) == version
    ]
    assert template["LaunchTemplateData"]["ImageId"] == report["image_id"]


def test_a_newly_published_image_changes_the_template_and_the_groups_version(
    report: dict[str, Any],
) -> None:
    changes = {c["type"]: c for c in report["rollout_changes"]}
    # The template gets a new version and the group moves to it, which is what makes the
    # provider start the instance refresh; nothing is replaced. Besides those two, only what
    # moto reads back differently from what was applied, image or no image.
    assert set(changes) - EMULATOR_DRIFT == {"aws_launch_template", "aws_autoscaling_group"}
    assert {tuple(c["actions"]) for c in report["rollout_changes"]} == {("update",)}
    template = changes["aws_launch_template"]
    assert template["actions"] == ["update"]
    assert (template["before"]["image_id"], template["after"]["image_id"]) == (
        report["image_id"],
        report["next_image_id"],
    )
    group = changes["aws_autoscaling_group"]
    assert group["actions"] == ["update"]
    assert group["after_unknown"]["launch_template"][0]["version"] is True


def test_a_deploy_leaves_the_minimum_the_schedule_or_an_override_set(
    report: dict[str, Any],
) -> None:
    # GIVEN the minimum as an override in market hours, then the 16:00 action leave it (the
    # group was created at the 08:50 action's 2, so that one cannot tell)
    # WHEN the stack is applied again THEN the minimum is still theirs, the maximum the stack's.
    redeploys = report["redeploys"]
    assert [r["reason"] for r in redeploys] == ["override", "close"]
    assert redeploys[0]["set_min"] == DEV_POLICY.max_replicas > DEV_POLICY.market_hours.min_replicas
    assert redeploys[1]["set_min"] == DEV_POLICY.default.min_replicas
    for redeploy in redeploys:
        assert redeploy["min_after_deploy"] == redeploy["set_min"], redeploy
        assert redeploy["max_after_deploy"] == DEV_POLICY.max_replicas, redeploy


def test_scheduled_actions_keep_their_time_zone(report: dict[str, Any]) -> None:
    actions = {
        a["ScheduledActionName"]: a
        for a in report["observed"]["scheduled_actions"]
        if a["ScheduledActionName"].startswith("market-hours-")
    }
    assert actions["market-hours-prewarm"]["Recurrence"] == "50 8 * * 1,2,3,4,5"
    assert actions["market-hours-prewarm"]["MinSize"] == DEV_POLICY.market_hours.min_replicas
    assert actions["market-hours-close"]["MinSize"] == DEV_POLICY.default.min_replicas
    assert {a["TimeZone"] for a in actions.values()} == {"America/New_York"}


def test_alarms_have_their_periods_and_real_actions(report: dict[str, Any]) -> None:
    alarms = {a["AlarmName"]: a for a in report["observed"]["alarms"]}
    burn = burn_rate_alarms(TENANT_POLICY.slo)
    inputs = [name for a in burn for name in (a.long_name, a.short_name)]
    assert set(alarms) == {
        alarm_name("finsight-serving-dev", alarm) for alarm in (*ALARMS, *CALENDAR_ALARMS, *inputs)
    }
    out = alarms["finsight-serving-dev-demand-high"]
    assert (out["Period"], out["EvaluationPeriods"]) == (10, 3)
    scale_in = alarms["finsight-serving-dev-demand-low"]
    assert (scale_in["Period"], scale_in["EvaluationPeriods"]) == (10, 30)
    queue = alarms["finsight-serving-dev-queue-depth-high"]
    assert (queue["MetricName"], queue["Period"], queue["EvaluationPeriods"]) == (
        "QueueDepth",
        10,
        3,
    )
    policies = {p["PolicyARN"]: p for p in report["observed"]["policies"]}
    for scaling in (out, queue):
        assert scaling["AlarmActions"][0] in policies
        assert policies[scaling["AlarmActions"][0]]["PolicyType"] == "StepScaling"
    assert out["AlarmActions"] != queue["AlarmActions"]
    topics = {t["TopicArn"] for t in report["observed"]["topics"]}
    assert alarms["finsight-serving-dev-no-healthy-hosts"]["AlarmActions"][0] in topics


def test_listener_routes_only_the_api_and_the_dashboard_exists(report: dict[str, Any]) -> None:
    patterns = [
        value
        for rule in report["observed"]["rules"]
        for condition in rule.get("Conditions", [])
        for value in condition.get("Values", [])
        + condition.get("PathPatternConfig", {}).get("Values", [])
    ]
    assert set(patterns) == {"/v1/*"}
    assert [d["DashboardName"] for d in report["observed"]["dashboards"]] == [
        "finsight-serving-dev"
    ]


def test_calendar_function_is_deployed(report: dict[str, Any]) -> None:
    names = [f["FunctionName"] for f in report["observed"]["functions"]]
    assert any("calendar" in name for name in names), names


def test_the_burn_rate_composites_page_and_ticket_over_their_inputs(
    report: dict[str, Any],
) -> None:
    # moto 5.2 lacks PutCompositeAlarm: the cycle's moto_server routes it to the handler that
    # stores it (emulator_cycle.MOTO_SERVER); Terraform then creates, reads back and destroys
    # the composites like any resource.
    composites = {a["AlarmName"]: a for a in report["observed"]["composite_alarms"]}
    metric = {a["AlarmName"] for a in report["observed"]["alarms"]}
    topics = {t["TopicArn"].rsplit(":", 1)[1]: t["TopicArn"] for t in report["observed"]["topics"]}
    fleet = "finsight-serving-dev"
    burn = burn_rate_alarms(TENANT_POLICY.slo)
    assert set(composites) == {alarm_name(fleet, alarm.name) for alarm in burn}
    for alarm in burn:
        composite = composites[alarm_name(fleet, alarm.name)]
        long_name, short_name = (
            alarm_name(fleet, alarm.long_name),
            alarm_name(fleet, alarm.short_name),
        )
        assert composite["AlarmRule"] == f'ALARM("{long_name}") AND ALARM("{short_name}")'
        assert {long_name, short_name} <= metric
        topic = topics[
            f"{fleet}-alarms" if alarm.window.severity is Severity.PAGE else f"{fleet}-tickets"
        ]
        assert composite["AlarmActions"] == composite["OKActions"] == [topic]


def test_the_dashboard_arrives_with_its_dynamic_labels_and_the_groups_name(
    report: dict[str, Any],
) -> None:
    [body] = report["observed"]["dashboard_bodies"]
    [group] = report["observed"]["groups"]
    # Terraform turned the stack's `$${` into CloudWatch's own `${` and filled in the group
    assert "$${" not in body
    lines = [
        line[0]
        for widget in json.loads(body)["widgets"]
        for line in widget["properties"].get("metrics", [])
        if isinstance(line[0], dict)
    ]
    assert "${PROP('Dim.tenant')} p99" in {line.get("label") for line in lines}
    pinned = f'AutoScalingGroupName="{group["AutoScalingGroupName"]}"'
    assert all(pinned in line["expression"] for line in lines if "SEARCH(" in line["expression"])


def test_the_alarm_topics_are_encrypted_with_the_stacks_rotated_key(report: dict[str, Any]) -> None:
    topics = report["observed"]["topic_attributes"]
    assert len(topics) == 2  # pages and tickets
    # Both topics' key is one the stack made (not an AWS-managed one moto lists as well).
    [key] = [
        k
        for k in report["observed"]["keys"]
        if {t["KmsMasterKeyId"] for t in topics} <= {k["KeyId"], k["Arn"]}
    ]
    assert key["Rotation"] is True
    statements = {s["Sid"]: s for s in json.loads(key["Policy"])["Statement"]}
    publish = statements["CloudWatchAlarmsPublish"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Condition"]["StringEquals"]["aws:SourceAccount"] == key["Arn"].split(":")[4]


def test_the_api_name_points_at_the_load_balancer_with_an_issued_certificate(
    report: dict[str, Any],
) -> None:
    records = {(r["Name"].rstrip("."), r["Type"]): r for r in report["observed"]["records"]}
    alias = records[(EMULATED_DOMAIN, "A")]["AliasTarget"]
    [balancer] = report["observed"]["load_balancers"]
    assert alias["DNSName"].rstrip(".").lower() == balancer["DNSName"].lower()
    [certificate] = report["observed"]["certificates"]
    assert (certificate["DomainName"], certificate["Status"]) == (EMULATED_DOMAIN, "ISSUED")
    [validation] = certificate["DomainValidationOptions"]
    record = validation["ResourceRecord"]
    assert (record["Name"].rstrip("."), record["Type"]) in records
    [listener] = report["observed"]["listeners"]
    assert listener["Certificates"][0]["CertificateArn"] == certificate["CertificateArn"]
