"""The SLO's burn-rate alarms and the dashboard, as synthesized: what the policy derives, and
within what CloudWatch accepts.

AWS's documented limits, checked here because neither moto nor `terraform validate` knows
them:
- PutMetricAlarm `Period`: "Valid values are 10, 20, 30, and any multiple of 60"; "Period
  multiplied by EvaluationPeriods can't be more than 604,800 seconds. For alarms with a
  period of less than one hour (3,600 seconds), the total evaluation period can't be longer
  than one day (86,400 seconds)."
- PutMetricAlarm `Metrics`: "up to 20 MetricDataQuery structures ... as many as 10 ... that
  contain a MetricStat ... and as many as 10 ... that contain the Expression"; one returns
  data.
- Alarm names: 1 to 255 characters (PutMetricAlarm, PutCompositeAlarm `AlarmName`).
- PutCompositeAlarm `AlarmRule`: "The maximum length is 10240 characters"; it names alarms
  that must exist first (as many as 100 per rule).
- Dashboard body: "an array of between 0 and 500 widget objects" (Dashboard Body Structure
  and Syntax); a SEARCH "can return up to 500 time series".
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

import pytest

from contract import GROUP_DIMENSION, SLO_MISS_METRIC, TENANT_DIMENSION
from infra.policy import FLEET_POLICY, PolicyError
from infra.policy.slo import Severity, Slo, TenantSlo
from infra.stack.slo_alarms import SLO_ALARMS, burn_expression, burn_rate_alarms

from .conftest import LONGEST_TENANT, TENANT_POLICY, Synth
from .test_stack import Stack, one, ref, referenced, resources

MAX_ALARM_NAME = 255
MAX_ALARM_RULE = 10240
MAX_RULE_ALARMS = 100
MAX_METRIC_STATS = 10
MAX_EXPRESSIONS = 10
MAX_WIDGETS = 500
ONE_DAY_S = 86_400
SEVEN_DAYS_S = 604_800


@pytest.fixture(params=["dev", "prod", "tenants"])
def any_stack(request: pytest.FixtureRequest, synth: Synth, tenants: Stack) -> Stack:
    return tenants if request.param == "tenants" else synth.json(request.param)


def fleet_name(stack: Stack) -> str:
    return (
        f"finsight-serving-{stack['provider']['aws'][0]['default_tags'][0]['tags']['Environment']}"
    )


def metric_alarms(stack: Stack) -> dict[str, dict[str, Any]]:
    return {b["alarm_name"]: b for b in resources(stack, "aws_cloudwatch_metric_alarm").values()}


def composites(stack: Stack) -> dict[str, dict[str, Any]]:
    return {b["alarm_name"]: b for b in resources(stack, "aws_cloudwatch_composite_alarm").values()}


def rule_inputs(rule: str) -> list[str]:
    return re.findall(r'ALARM\("([^"]+)"\)', rule)


def test_each_window_has_a_composite_over_its_long_and_short_inputs(tenants: Stack) -> None:
    name, slo = fleet_name(tenants), TENANT_POLICY.slo
    expected = burn_rate_alarms(slo)
    # each window fleet-wide, then each for every tenant the SLO names
    assert len(expected) == len(slo.burn_rate_windows()) * (1 + len(slo.tenants)) == 8
    by_name, inputs = composites(tenants), metric_alarms(tenants)
    assert set(by_name) == {f"{name}-{alarm.name}" for alarm in expected}
    for alarm in expected:
        window = alarm.window
        composite = by_name[f"{name}-{alarm.name}"]
        long_name, short_name = f"{name}-{alarm.long_name}", f"{name}-{alarm.short_name}"
        assert composite["alarm_rule"] == f'ALARM("{long_name}") AND ALARM("{short_name}")'
        # the inputs are created first: the rule names them, so depends_on orders them
        depends = {
            referenced(tenants, f"${{{d}.alarm_name}}")[1]["alarm_name"]
            for d in composite["depends_on"]
        }
        assert depends == {long_name, short_name}
        for child, period in (
            (long_name, window.long_window_s),
            (short_name, window.short_window_s),
        ):
            body = inputs[child]
            assert not body.get("alarm_actions") and not body.get("ok_actions"), child
            assert (body["evaluation_periods"], body["datapoints_to_alarm"]) == (1, 1)
            assert body["threshold"] == window.burn_rate
            assert body["comparison_operator"] == "GreaterThanOrEqualToThreshold"
            assert body["treat_missing_data"] == "notBreaching"
            queries = {q["id"]: q for q in body["metric_query"]}
            assert queries["burn"]["expression"] == burn_expression(slo)
            assert queries["burn"]["expression"] == "IF(n >= 20, miss / 0.01, 0)"
            assert [q["id"] for q in queries.values() if q.get("return_data")] == ["burn"]
            for id_, stat in (("miss", "Average"), ("n", "SampleCount")):
                metric = queries[id_]["metric"]
                assert (metric["metric_name"], metric["stat"], metric["period"]) == (
                    SLO_MISS_METRIC,
                    stat,
                    period,
                )
                expected_dims = {GROUP_DIMENSION}
                if alarm.tenant is not None:
                    expected_dims.add(TENANT_DIMENSION)
                    assert metric["dimensions"][TENANT_DIMENSION] == alarm.tenant
                assert set(metric["dimensions"]) == expected_dims


def test_fast_burn_pages_and_slow_burn_tickets(any_stack: Stack) -> None:
    name = fleet_name(any_stack)
    topics = {b["name"]: key for key, b in resources(any_stack, "aws_sns_topic").items()}
    page = ref("aws_sns_topic", topics[f"{name}-alarms"], "arn")
    ticket = ref("aws_sns_topic", topics[f"{name}-tickets"], "arn")
    windows = {w.name: w for w in FLEET_POLICY.slo.burn_rate_windows()}
    assert (windows["fast"].severity, windows["slow"].severity) == (Severity.PAGE, Severity.TICKET)
    for alarm_name, composite in composites(any_stack).items():
        window = windows[alarm_name.removeprefix(f"{name}-slo-burn-").split("-")[0]]
        topic = page if window.severity is Severity.PAGE else ticket
        # notified when it fires and again when it clears
        assert composite["alarm_actions"] == composite["ok_actions"] == [topic], alarm_name
        assert f"{window.burn_rate:g}x" in composite["alarm_description"]


def test_the_thresholds_are_the_policys_derivation() -> None:
    # 99 % over 28 days (672 h): 2 % of the budget in 1 h, 5 % in 6 h (infra/policy/slo.py)
    windows = {w.name: w for w in FLEET_POLICY.slo.burn_rate_windows()}
    assert windows["fast"].burn_rate == pytest.approx(0.02 * 672 / 1) == 13.44
    assert windows["slow"].burn_rate == pytest.approx(0.05 * 672 / 6) == 5.6
    assert (windows["fast"].long_window_s, windows["fast"].short_window_s) == (3600, 300)
    assert (windows["slow"].long_window_s, windows["slow"].short_window_s) == (21600, 1800)


def test_every_alarm_is_within_cloudwatchs_limits(any_stack: Stack) -> None:
    metric, composite = metric_alarms(any_stack), composites(any_stack)
    for alarm_name, body in metric.items():
        assert 1 <= len(alarm_name) <= MAX_ALARM_NAME
        queries = body.get("metric_query", [])
        periods = {q["metric"]["period"] for q in queries if "metric" in q} or {body["period"]}
        for period in periods:
            assert period in (10, 20, 30) or period % 60 == 0, (alarm_name, period)
            limit = ONE_DAY_S if period < 3600 else SEVEN_DAYS_S
            assert period * body["evaluation_periods"] <= limit, alarm_name
        if queries:
            assert len([q for q in queries if "metric" in q]) <= MAX_METRIC_STATS, alarm_name
            assert len([q for q in queries if "expression" in q]) <= MAX_EXPRESSIONS, alarm_name
            assert len([q for q in queries if q.get("return_data")]) == 1, alarm_name
            assert all(re.fullmatch(r"[a-z]\w*", q["id"]) for q in queries), alarm_name
    for alarm_name, body in composite.items():
        assert 1 <= len(alarm_name) <= MAX_ALARM_NAME
        assert len(body["alarm_rule"]) <= MAX_ALARM_RULE
        named = rule_inputs(body["alarm_rule"])
        assert 1 <= len(named) <= MAX_RULE_ALARMS
        # only alarms this stack creates (a rule naming a missing alarm is refused)
        assert set(named) <= set(metric), alarm_name


def test_the_longest_tenant_id_still_fits_the_alarm_names(tenants: Stack) -> None:
    longest = max([*metric_alarms(tenants), *composites(tenants)], key=len)
    assert LONGEST_TENANT in longest and len(longest) <= MAX_ALARM_NAME


def test_the_topic_key_lets_every_alarm_publish_to_both_topics(any_stack: Stack) -> None:
    name = fleet_name(any_stack)
    # Composite and metric alarms have the same ARN shape, which the key's condition matches.
    _, key = one(any_stack, "aws_kms_key")
    [statement] = [
        s for s in json.loads(key["policy"])["Statement"] if s["Sid"] == "CloudWatchAlarmsPublish"
    ]
    pattern = statement["Condition"]["ArnLike"]["aws:SourceArn"]
    for alarm_name in [*metric_alarms(any_stack), *composites(any_stack)]:
        arn = pattern.rsplit(":", 1)[0] + f":{alarm_name}"
        assert fnmatch.fnmatchcase(arn, pattern), alarm_name
        assert alarm_name.startswith(f"{name}-")
    key_name = one(any_stack, "aws_kms_key")[0]
    for topic in resources(any_stack, "aws_sns_topic").values():
        assert topic["kms_master_key_id"] == ref("aws_kms_key", key_name, "arn"), topic["name"]


def test_a_ticket_address_subscribes_to_the_ticket_topic(tmp_path: Any) -> None:
    from infra.stack.settings import load_settings

    from .conftest import synth_stacks

    stack = synth_stacks(tmp_path, load_settings("dev", ticket_email="tickets@finsight.example"))[
        "dev"
    ]
    topics = {b["name"]: key for key, b in resources(stack, "aws_sns_topic").items()}
    [subscription] = resources(stack, "aws_sns_topic_subscription").values()
    assert subscription["endpoint"] == "tickets@finsight.example"
    assert subscription["topic_arn"] == ref(
        "aws_sns_topic", topics["finsight-serving-dev-tickets"], "arn"
    )


def test_a_tenant_whose_alarm_names_collide_is_refused() -> None:
    # `slo-burn-fast-long` is the fleet-wide fast alarm's long input
    with pytest.raises(PolicyError) as refused:
        burn_rate_alarms(Slo(tenants=(TenantSlo("long"),)))
    assert refused.value.field == "slo.tenants"
    assert "'long'" in str(refused.value)
    assert {a.name for a in burn_rate_alarms(Slo())} == set(SLO_ALARMS)


def test_the_dashboard_is_within_cloudwatchs_limits(any_stack: Stack) -> None:
    _, dashboard = one(any_stack, "aws_cloudwatch_dashboard")
    body = json.loads(dashboard["dashboard_body"])
    assert 0 < len(body["widgets"]) <= MAX_WIDGETS
    for widget in body["widgets"]:
        for line in widget["properties"].get("metrics", []):
            options = line[-1] if isinstance(line[-1], dict) else {}
            # a hidden metric feeds an expression, which refers to it by its id
            if options.get("visible") is False:
                assert re.fullmatch(r"[a-z]\w*", options["id"])


def test_the_error_budget_widget_covers_the_slo_window(any_stack: Stack) -> None:
    _, dashboard = one(any_stack, "aws_cloudwatch_dashboard")
    widgets = json.loads(dashboard["dashboard_body"])["widgets"]
    slo = FLEET_POLICY.slo
    [budget] = [w for w in widgets if w["properties"]["title"].startswith("Error budget remaining")]
    properties = budget["properties"]
    assert properties["view"] == "singleValue"
    assert properties["start"] == f"-P{slo.window_days}D"
    assert properties["setPeriodToTimeRange"] is True
    expressions = [
        line[0]["expression"] for line in properties["metrics"] if isinstance(line[0], dict)
    ]
    assert f"100 * (1 - fleetmiss / {slo.error_budget:g})" in expressions
    # per tenant: a SEARCH, so a tenant that starts sending appears without a deploy
    assert any("SEARCH(" in e and '"tenant"}' in e for e in expressions)


def test_the_burn_rate_widget_shows_each_alarms_threshold(any_stack: Stack) -> None:
    _, dashboard = one(any_stack, "aws_cloudwatch_dashboard")
    widgets = json.loads(dashboard["dashboard_body"])["widgets"]
    [burn] = [w for w in widgets if w["properties"]["title"].startswith("Error budget burn rate")]
    lines = {a["value"] for a in burn["properties"]["annotations"]["horizontal"]}
    assert lines == {w.burn_rate for w in FLEET_POLICY.slo.burn_rate_windows()}


def test_tenant_targets_are_drawn_beside_the_default(tenants: Stack) -> None:
    _, dashboard = one(tenants, "aws_cloudwatch_dashboard")
    widgets = json.loads(dashboard["dashboard_body"])["widgets"]
    [ttft] = [w for w in widgets if w["properties"]["title"].startswith("TTFT")]
    lines = {a["label"]: a["value"] for a in ttft["properties"]["annotations"]["horizontal"]}
    assert lines == {"target": 5000, "acme target": 3000}
    # each SEARCH's series is named by its tenant (Terraform's `$${` is a literal `${`)
    labels = [line[0]["label"] for line in ttft["properties"]["metrics"]]
    assert labels == ["$${PROP('Dim.tenant')} p50", "$${PROP('Dim.tenant')} p99"]
