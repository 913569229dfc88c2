"""Every metric an alarm or a dashboard widget reads is one something emits: the gateway
(the `contract`), the image's CloudWatch agent, or an AWS service (a short list of what
AWS documents, by namespace and dimensions). A renamed metric otherwise leaves an alarm
watching nothing, which CloudWatch reports as OK or INSUFFICIENT_DATA, never as an error.
"""

from __future__ import annotations

import json
import re

import pytest

from contract import DEMAND_METRIC, GROUP_DIMENSION, QUEUE_DEPTH_METRIC, SHED_METRIC
from infra.policy.aws_rules import compile_scaling_rules
from infra.stack.observability import SATURATED_ALARM, alarm_name
from infra.stack.settings import load_settings

from .conftest import REPO, Synth
from .test_stack import Stack, one, ref_name, resources, stack_environment, stack_policy

# (namespace, metric) -> the dimension sets AWS documents for it (only those we read).
ALB_LOAD_BALANCER = frozenset({"LoadBalancer"})
ALB_TARGET_GROUP = frozenset({"LoadBalancer", "TargetGroup"})
AWS_METRICS: dict[tuple[str, str], set[frozenset[str]]] = {
    ("AWS/ApplicationELB", "RequestCount"): {ALB_LOAD_BALANCER, ALB_TARGET_GROUP},
    ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count"): {ALB_LOAD_BALANCER},
    ("AWS/ApplicationELB", "HTTPCode_Target_4XX_Count"): {ALB_LOAD_BALANCER, ALB_TARGET_GROUP},
    ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"): {ALB_LOAD_BALANCER, ALB_TARGET_GROUP},
    ("AWS/ApplicationELB", "TargetResponseTime"): {ALB_LOAD_BALANCER, ALB_TARGET_GROUP},
    ("AWS/ApplicationELB", "HealthyHostCount"): {ALB_TARGET_GROUP},
    ("AWS/ApplicationELB", "UnHealthyHostCount"): {ALB_TARGET_GROUP},
    ("AWS/Lambda", "Errors"): {frozenset({"FunctionName"})},
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): {frozenset({"QueueName"})},
}
# Group metrics exist only for the names the group enables (checked against the JSON).
GROUP_METRICS_NAMESPACE = "AWS/AutoScaling"
GATEWAY_METRICS = {DEMAND_METRIC, QUEUE_DEPTH_METRIC, SHED_METRIC}
AGENT_CONFIG = REPO / "ami" / "cloudwatch" / "amazon-cloudwatch-agent.json"


@pytest.fixture(params=["dev", "prod"])
def stack(request: pytest.FixtureRequest, synth: Synth) -> Stack:
    return synth.json(request.param)


def agent_metrics() -> tuple[str, set[str]]:
    """The CloudWatch agent's namespace and the metric names it publishes per group."""
    metrics = json.loads(AGENT_CONFIG.read_text())["metrics"]
    assert [GROUP_DIMENSION] in metrics["aggregation_dimensions"]
    names: set[str] = set()
    for plugin, config in metrics["metrics_collected"].items():
        prefix = "nvidia_smi" if plugin == "nvidia_gpu" else plugin
        for measurement in config["measurement"]:
            names.add(measurement if measurement.startswith(prefix) else f"{prefix}_{measurement}")
    return metrics["namespace"], names


def read_metrics(document: Stack) -> list[tuple[str, str, str, frozenset[str]]]:
    """(where, namespace, metric, dimension names) of every metric an alarm or widget reads."""
    found: list[tuple[str, str, str, frozenset[str]]] = []
    for alarm in resources(document, "aws_cloudwatch_metric_alarm").values():
        where = alarm["alarm_name"]
        if "metric_name" in alarm:
            found.append(
                (where, alarm["namespace"], alarm["metric_name"], frozenset(alarm["dimensions"]))
            )
        for query in alarm.get("metric_query", []):
            if "metric" in query:
                metric = query["metric"]
                found.append(
                    (
                        where,
                        metric["namespace"],
                        metric["metric_name"],
                        frozenset(metric["dimensions"]),
                    )
                )
    _, dashboard = one(document, "aws_cloudwatch_dashboard")
    for widget in json.loads(dashboard["dashboard_body"])["widgets"]:
        for line in widget["properties"].get("metrics", []):
            namespace, name, *rest = line
            pairs = [item for item in rest if not isinstance(item, dict)]
            found.append((widget["properties"]["title"], namespace, name, frozenset(pairs[0::2])))
    return found


def test_every_metric_read_is_one_the_gateway_the_agent_or_aws_emits(stack: Stack) -> None:
    settings = load_settings(stack_environment(stack))
    agent_namespace, agent_names = agent_metrics()
    _, group = one(stack, "aws_autoscaling_group")
    read = read_metrics(stack)
    assert len(read) >= 20
    for where, namespace, name, dimensions in read:
        if namespace == settings.cloudwatch_namespace:
            assert name in GATEWAY_METRICS | agent_names, (where, name)
            assert dimensions == {GROUP_DIMENSION}, (where, name)
            if name in agent_names:
                assert namespace == agent_namespace, (where, name)
        elif namespace == GROUP_METRICS_NAMESPACE:
            assert name in group["enabled_metrics"], (where, name, "not collected")
            assert group["metrics_granularity"] == "1Minute"
            assert dimensions == {GROUP_DIMENSION}, (where, name)
        else:
            assert (namespace, name) in AWS_METRICS, (where, namespace, name)
            assert dimensions in AWS_METRICS[(namespace, name)], (where, name, dimensions)
    # the gateway's three metrics are all on show
    assert {name for _, _, name, _ in read} >= GATEWAY_METRICS


def test_the_saturation_page_is_the_compiled_metric_math_within_aws_limits(stack: Stack) -> None:
    name = f"finsight-serving-{stack_environment(stack)}"
    [alarm] = [
        body
        for body in resources(stack, "aws_cloudwatch_metric_alarm").values()
        if body["alarm_name"] == alarm_name(name, SATURATED_ALARM)
    ]
    saturation = compile_scaling_rules(stack_policy(stack)).saturation
    queries = {query["id"]: query for query in alarm["metric_query"]}
    metrics = [query for query in queries.values() if "metric" in query]
    expressions = [query for query in queries.values() if "expression" in query]
    # CloudWatch: at most 10 metrics and 10 expressions; exactly one returns data, and
    # query ids start with a lower-case letter
    assert len(metrics) <= 10 and len(expressions) <= 10
    assert [q["id"] for q in queries.values() if q.get("return_data")] == ["saturated"]
    assert all(re.fullmatch(r"[a-z]\w*", query_id) for query_id in queries)
    assert queries["saturated"]["expression"] == saturation.expression
    assert set(re.findall(r"\b([a-z]\w*)\b", saturation.expression)) <= set(queries)
    in_service = queries["inservice"]["metric"]
    assert (in_service["namespace"], in_service["metric_name"], in_service["stat"]) == (
        "AWS/AutoScaling",
        "GroupInServiceInstances",
        "Minimum",
    )
    queue = queries["queue"]["metric"]
    assert (queue["metric_name"], queue["stat"]) == ("QueueDepth", "Average")
    # group metrics come once a minute, so both series are read per minute
    assert in_service["period"] == queue["period"] == 60
    for metric in (in_service, queue):
        assert metric["dimensions"] == {GROUP_DIMENSION: ref_name(stack)}
    assert alarm["evaluation_periods"] == alarm["datapoints_to_alarm"] == 5
    assert (alarm["threshold"], alarm["comparison_operator"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarm["treat_missing_data"] == "notBreaching"
    assert f"({saturation.max_capacity})" in alarm["alarm_description"]


def test_the_heartbeat_watches_the_renamed_demand_metric(stack: Stack) -> None:
    name = f"finsight-serving-{stack_environment(stack)}"
    [heartbeat] = [
        body
        for body in resources(stack, "aws_cloudwatch_metric_alarm").values()
        if body["alarm_name"] == alarm_name(name, "scaling-metric-missing")
    ]
    assert heartbeat["metric_name"] == DEMAND_METRIC
    assert DEMAND_METRIC in heartbeat["alarm_description"]
    assert "OngoingRequests" not in json.dumps(resources(stack, "aws_cloudwatch_metric_alarm"))
