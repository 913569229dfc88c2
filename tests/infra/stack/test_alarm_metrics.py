"""Every metric an alarm or a dashboard widget reads is one something emits: the gateway (its
CloudWatch publisher and its access line's embedded metric format, both named in
`contract`), the image's CloudWatch agent, or an AWS service (a short list of what AWS
documents, by namespace and dimensions). A renamed metric, or one read with dimensions it is
not published with, otherwise leaves an alarm watching nothing, which CloudWatch reports as
OK or INSUFFICIENT_DATA, never as an error.

Metrics are read from metric alarms (plain and metric math, the burn-rate composites' inputs
included), from dashboard lines, and from inside the dashboard's SEARCH expressions (their
`{namespace,dimension,...}` schema and `MetricName="..."`).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass

import pytest

from contract import (
    DEMAND_METRIC,
    GROUP_DIMENSION,
    QUEUE_DEPTH_METRIC,
    REQUEST_DIMENSION_SETS,
    REQUEST_DURATION_METRIC,
    REQUEST_QUEUE_WAIT_METRIC,
    REQUEST_TTFT_METRIC,
    REQUESTS_SHED_METRIC,
    SHED_DIMENSION_SETS,
    SHED_METRIC,
    SLO_MISS_METRIC,
)
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
GROUP_ONLY = frozenset({GROUP_DIMENSION})
# The gateway's CloudWatch publisher: per instance, with the group as the only dimension.
PUBLISHED = {name: {GROUP_ONLY} for name in (DEMAND_METRIC, QUEUE_DEPTH_METRIC, SHED_METRIC)}
# The gateway's access line (embedded metric format): each metric for each dimension set.
REQUEST_METRICS = (
    REQUEST_TTFT_METRIC,
    REQUEST_DURATION_METRIC,
    REQUEST_QUEUE_WAIT_METRIC,
    SLO_MISS_METRIC,
)
EMF: dict[str, set[frozenset[str]]] = {
    **{name: {frozenset(dims) for dims in REQUEST_DIMENSION_SETS} for name in REQUEST_METRICS},
    REQUESTS_SHED_METRIC: {frozenset(dims) for dims in SHED_DIMENSION_SETS},
}
AGENT_CONFIG = REPO / "ami" / "cloudwatch" / "amazon-cloudwatch-agent.json"
# SEARCH('{Namespace,Dim1,...} MetricName="name" ...', 'Stat'[, period]); names in the
# schema may be double-quoted.
SEARCH = re.compile(r"SEARCH\('\{([^}]*)\}([^']*)',\s*'([\w.]+)'(?:,\s*(\d+))?\)")


@dataclass(frozen=True)
class Read:
    where: str  # the alarm's name or the widget's title
    namespace: str
    metric: str
    dimensions: frozenset[str]


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


def searched(where: str, expression: str) -> list[Read]:
    """The metrics a metric-math expression's SEARCH calls read."""
    found = []
    for schema, term, _stat, _period in SEARCH.findall(expression):
        namespace, *dimensions = (part.strip().strip('"') for part in schema.split(","))
        [metric] = re.findall(r'MetricName="([^"]+)"', term)
        # Every dimension value a search pins must be one of its schema's dimensions.
        pinned = set(re.findall(r'(\w+)="[^"]*"', term)) - {"MetricName"}
        assert pinned <= set(dimensions), (where, pinned, dimensions)
        found.append(Read(where, namespace, metric, frozenset(dimensions)))
    return found


def read_metrics(document: Stack) -> list[Read]:
    """Every metric an alarm or a widget reads."""
    found: list[Read] = []
    for alarm in resources(document, "aws_cloudwatch_metric_alarm").values():
        where = alarm["alarm_name"]
        if "metric_name" in alarm:
            found.append(
                Read(
                    where, alarm["namespace"], alarm["metric_name"], frozenset(alarm["dimensions"])
                )
            )
        for query in alarm.get("metric_query", []):
            if "metric" in query:
                metric = query["metric"]
                found.append(
                    Read(
                        where,
                        metric["namespace"],
                        metric["metric_name"],
                        frozenset(metric["dimensions"]),
                    )
                )
            else:
                # An alarm cannot read a SEARCH; its expressions only combine its metrics.
                assert "SEARCH" not in query["expression"], where
    _, dashboard = one(document, "aws_cloudwatch_dashboard")
    for widget in json.loads(dashboard["dashboard_body"])["widgets"]:
        title = widget["properties"]["title"]
        for line in widget["properties"].get("metrics", []):
            if isinstance(line[0], dict):
                found.extend(searched(title, line[0]["expression"]))
                continue
            namespace, name, *rest = line
            pairs = [item for item in rest if not isinstance(item, dict)]
            found.append(Read(title, namespace, name, frozenset(pairs[0::2])))
    return found


def unemitted(document: Stack, read: list[Read]) -> list[tuple[Read, str]]:
    """Each read metric nothing emits, with the reason."""
    settings = load_settings(stack_environment(document))
    agent_namespace, agent_names = agent_metrics()
    _, group = one(document, "aws_autoscaling_group")
    wrong: list[tuple[Read, str]] = []
    for metric in read:
        if metric.namespace == settings.cloudwatch_namespace:
            emitted = {**PUBLISHED, **EMF, **{name: {GROUP_ONLY} for name in agent_names}}
            if metric.metric not in emitted:
                wrong.append((metric, "no such metric in the stack's namespace"))
            elif metric.dimensions not in emitted[metric.metric]:
                wrong.append((metric, f"published only with {emitted[metric.metric]}"))
            elif metric.metric in agent_names and metric.namespace != agent_namespace:
                wrong.append((metric, "the agent publishes elsewhere"))
        elif metric.namespace == GROUP_METRICS_NAMESPACE:
            if metric.metric not in group["enabled_metrics"]:
                wrong.append((metric, "not collected by the group"))
            elif metric.dimensions != GROUP_ONLY:
                wrong.append((metric, "group metrics have the group as only dimension"))
        elif (metric.namespace, metric.metric) not in AWS_METRICS:
            wrong.append((metric, "not a metric AWS documents"))
        elif metric.dimensions not in AWS_METRICS[(metric.namespace, metric.metric)]:
            wrong.append((metric, "not a dimension set AWS documents for it"))
    return wrong


def test_every_metric_read_is_one_the_gateway_the_agent_or_aws_emits(stack: Stack) -> None:
    _, group = one(stack, "aws_autoscaling_group")
    assert group["metrics_granularity"] == "1Minute"
    read = read_metrics(stack)
    assert len(read) >= 30
    assert unemitted(stack, read) == []
    names = {metric.metric for metric in read}
    # the gateway's published metrics and its per-request ones are all on show
    assert names >= set(PUBLISHED) | set(EMF)
    # the burn-rate inputs read slo_miss fleet-wide; the dashboard per tenant (SEARCH)
    assert any(
        m.metric == SLO_MISS_METRIC and m.dimensions == GROUP_ONLY and m.where.endswith("-long")
        for m in read
    )
    assert any(m.metric == REQUEST_TTFT_METRIC and len(m.dimensions) == 2 for m in read)


def test_a_tenants_alarms_read_the_tenant_dimension_set(tenants: Stack) -> None:
    read = [m for m in read_metrics(tenants) if m.metric == SLO_MISS_METRIC]
    assert {m.dimensions for m in read} >= {GROUP_ONLY, frozenset({GROUP_DIMENSION, "tenant"})}
    assert unemitted(tenants, read_metrics(tenants)) == []


def _burn_input(document: Stack) -> dict[str, object]:
    return next(
        alarm
        for alarm in resources(document, "aws_cloudwatch_metric_alarm").values()
        if alarm["alarm_name"].endswith("slo-burn-fast-long")
    )


def _dashboard(document: Stack) -> dict[str, object]:
    return one(document, "aws_cloudwatch_dashboard")[1]


def _alarm_reads_route_without_tenant(document: Stack) -> None:
    query = _burn_input(document)["metric_query"][0]  # type: ignore[index]
    query["metric"]["dimensions"]["route"] = "/v1/completions"


def _alarm_reads_renamed_metric(document: Stack) -> None:
    _burn_input(document)["metric_query"][1]["metric"]["metric_name"] = "slo_misses"  # type: ignore[index]


def _search_reads_shed_reason_per_tenant(document: Stack) -> None:
    dashboard = _dashboard(document)
    dashboard["dashboard_body"] = str(dashboard["dashboard_body"]).replace(
        '\\"shed_reason\\"}', '\\"shed_reason\\",\\"tenant\\"}'
    )


def _search_reads_ttft_per_route_only(document: Stack) -> None:
    dashboard = _dashboard(document)
    dashboard["dashboard_body"] = str(dashboard["dashboard_body"]).replace(
        '\\"AutoScalingGroupName\\",\\"tenant\\"} MetricName=\\"ttft_ms\\"',
        '\\"AutoScalingGroupName\\",\\"route\\"} MetricName=\\"ttft_ms\\"',
    )


def _line_reads_demand_per_tenant(document: Stack) -> None:
    dashboard = _dashboard(document)
    body = json.loads(str(dashboard["dashboard_body"]))
    line = body["widgets"][0]["properties"]["metrics"][0]
    line[2:2] = ["tenant", "acme"]
    dashboard["dashboard_body"] = json.dumps(body)


@pytest.mark.parametrize(
    ("break_it", "metric"),
    [
        (_alarm_reads_route_without_tenant, SLO_MISS_METRIC),
        (_alarm_reads_renamed_metric, "slo_misses"),
        (_search_reads_shed_reason_per_tenant, REQUESTS_SHED_METRIC),
        (_search_reads_ttft_per_route_only, REQUEST_TTFT_METRIC),  # its p50 and p99 lines
        (_line_reads_demand_per_tenant, DEMAND_METRIC),
    ],
)
def test_a_metric_read_with_dimensions_nothing_publishes_is_caught(
    prod: Stack, break_it: object, metric: str
) -> None:
    # GIVEN the synthesized stack with one read changed to a metric nobody emits
    assert unemitted(prod, read_metrics(prod)) == []
    broken = copy.deepcopy(prod)
    break_it(broken)  # type: ignore[operator]
    # THEN the check names that read, and only it
    wrong = unemitted(broken, read_metrics(broken))
    assert wrong and {read.metric for read, _ in wrong} == {metric}, wrong


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
