"""The fleet's CloudWatch dashboard, top to bottom: the scaling story, then the SLO as tenants
feel it, then the load balancer and the hosts.

Per-tenant widgets use SEARCH expressions over the gateway's per-request metrics (the
access line's embedded metric format, `contract.REQUEST_DIMENSION_SETS`), so a tenant that
starts sending traffic appears without a deploy. SEARCH syntax, from CloudWatch's
"search expression syntax": `SEARCH('{Namespace,Dim1,Dim2} MetricName="m" Dim1="v"',
'Stat', period)`; the braces are the metric schema (metrics with exactly those
dimensions), names with characters other than letters and digits are double-quoted.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract import (
    GROUP_DIMENSION,
    REQUEST_DURATION_METRIC,
    REQUEST_QUEUE_WAIT_METRIC,
    REQUEST_TTFT_METRIC,
    REQUESTS_SHED_METRIC,
    SHED_METRIC,
    SHED_REASON_DIMENSION,
    SLO_MISS_METRIC,
    TENANT_DIMENSION,
)
from infra.policy.aws_rules import (
    DEMAND_METRIC,
    GROUP_METRICS_NAMESPACE,
    QUEUE_DEPTH_METRIC,
    ScalingRules,
)
from infra.policy.slo import Slo
from infra.stack.slo_alarms import duration

ALB_NAMESPACE = "AWS/ApplicationELB"


def dimension_label(dimension: str, suffix: str = "") -> str:
    """A dynamic label: each series of a SEARCH named by its value of `dimension`.

    CloudWatch's `${PROP('Dim.<name>')}`, written `$${...}` because Terraform reads `${` in
    a string as its own interpolation (`$${` is its escape for a literal `${`).
    """
    return f"$${{PROP('Dim.{dimension}')}}{suffix}"


Widget = dict[str, object]
Line = list[object]


@dataclass(frozen=True)
class DashboardProps:
    region: str
    namespace: str
    autoscaling_group_name: str
    load_balancer_arn_suffix: str
    target_group_arn_suffix: str
    rules: ScalingRules
    slo: Slo
    alb_response_time_p99_s: float
    gateway_log_group: str


def search(
    namespace: str,
    dimensions: tuple[str, ...],
    metric: str,
    stat: str,
    period: int | None,
    **values: str,
) -> str:
    """A SEARCH expression over one metric schema, pinned to the given dimension values."""
    schema = ",".join(f'"{name}"' for name in (namespace, *dimensions))
    pinned = "".join(f' {name}="{value}"' for name, value in values.items())
    period_arg = "" if period is None else f", {period}"
    return f"SEARCH('{{{schema}}} MetricName=\"{metric}\"{pinned}', '{stat}'{period_arg})"


def dashboard_body(props: DashboardProps) -> dict[str, object]:
    return {"widgets": [*_scaling(props), *_slo(props), *_load_balancer_and_hosts(props)]}


def _graph(props: DashboardProps, title: str, metrics: list[Line], **extra: object) -> Widget:
    return {
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": props.region,
            "view": "timeSeries",
            "metrics": metrics,
            **extra,
        },
    }


def _lines(*annotations: tuple[str, float]) -> dict[str, object]:
    return {"horizontal": [{"label": label, "value": value} for label, value in annotations]}


def _scaling(props: DashboardProps) -> list[Widget]:
    group = [GROUP_DIMENSION, props.autoscaling_group_name]
    rules = props.rules
    return [
        _graph(
            props,
            "Demand per instance vs target (the scaling signal)",
            [[props.namespace, DEMAND_METRIC, *group, {"stat": "Average"}]],
            period=rules.scale_out.alarm.period_s,
            annotations=_lines(
                ("target (scale out above)", rules.scale_out.alarm.threshold),
                ("scale in at or below", rules.scale_in.alarm.threshold),
            ),
        ),
        _graph(
            props,
            "Queue depth per instance (sequences waiting)",
            [
                [
                    props.namespace,
                    QUEUE_DEPTH_METRIC,
                    *group,
                    {"stat": "Average", "label": "per instance (the alarm's)"},
                ],
                [
                    props.namespace,
                    QUEUE_DEPTH_METRIC,
                    *group,
                    {"stat": "Maximum", "label": "worst instance"},
                ],
            ],
            period=rules.queue_depth.alarm.period_s,
            annotations=_lines(("scale out above", rules.queue_depth.alarm.threshold)),
        ),
        _graph(
            props,
            "Instances: desired / in service / min / max",
            [
                [GROUP_METRICS_NAMESPACE, name, *group, {"stat": "Maximum"}]
                for name in (
                    "GroupDesiredCapacity",
                    "GroupInServiceInstances",
                    "GroupMinSize",
                    "GroupMaxSize",
                )
            ],
            period=60,
        ),
        _graph(
            props,
            "Requests shed by the gateways (503/429)",
            [[props.namespace, SHED_METRIC, *group, {"stat": "Sum", "label": "fleet"}]],
            period=60,
        ),
    ]


def _per_tenant(props: DashboardProps, metric: str, stat: str, period: int | None) -> str:
    return search(
        props.namespace,
        (GROUP_DIMENSION, TENANT_DIMENSION),
        metric,
        stat,
        period,
        **{GROUP_DIMENSION: props.autoscaling_group_name},
    )


def _target_lines(props: DashboardProps, which: int) -> dict[str, object]:
    """The default target, and each tenant's own where the SLO gives it one, in ms."""
    slo = props.slo
    lines = [("target", slo.targets()[which] * 1000)]
    for tenant, targets in sorted(slo.tenant_targets().items()):
        if targets[which] != slo.targets()[which]:
            lines.append((f"{tenant} target", targets[which] * 1000))
    return _lines(*lines)


def _slo(props: DashboardProps) -> list[Widget]:
    slo, group = props.slo, [GROUP_DIMENSION, props.autoscaling_group_name]
    budget = f"{slo.error_budget:g}"
    windows = slo.burn_rate_windows()

    def fleet_miss(id_: str, stat: str, period: int) -> Line:
        return [
            props.namespace,
            SLO_MISS_METRIC,
            *group,
            {"id": id_, "stat": stat, "period": period, "visible": False},
        ]

    burn_lines: list[Line] = []
    for window in windows:
        for span, period in (("long", window.long_window_s), ("short", window.short_window_s)):
            id_ = f"{window.name}{span}"
            burn_lines.append(fleet_miss(id_, "Average", period))
            label = f"{window.name} ({window.severity.value}), {duration(period)}"
            burn_lines.append([{"expression": f"{id_} / {budget}", "label": label}])
    fast = windows[0]
    burn_lines.append(
        [
            {
                "expression": (
                    f"{_per_tenant(props, SLO_MISS_METRIC, 'Average', fast.long_window_s)}"
                    f" / {budget}"
                ),
            }
        ]
    )
    return [
        _graph(
            props,
            "TTFT p50 / p99 by tenant vs target (streams, ms)",
            [
                [
                    {
                        "expression": _per_tenant(props, REQUEST_TTFT_METRIC, stat, 60),
                        "label": dimension_label(TENANT_DIMENSION, f" {stat}"),
                    }
                ]
                for stat in ("p50", "p99")
            ],
            annotations=_target_lines(props, 0),
        ),
        _graph(
            props,
            "End-to-end duration p99 by tenant vs target (ms)",
            [
                [
                    {
                        "expression": _per_tenant(props, REQUEST_DURATION_METRIC, "p99", 60),
                        "label": dimension_label(TENANT_DIMENSION, " p99"),
                    }
                ]
            ],
            annotations=_target_lines(props, 1),
        ),
        {
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {
                "title": f"Error budget remaining over {slo.window_days} days (%)",
                "region": props.region,
                "view": "singleValue",
                # One datapoint per series: the whole window's Average of slo_miss, which is
                # its error ratio; 100 % untouched, 0 % spent, below 0 overspent.
                "start": f"-P{slo.window_days}D",
                "end": "P0D",
                "setPeriodToTimeRange": True,
                "metrics": [
                    [
                        props.namespace,
                        SLO_MISS_METRIC,
                        *group,
                        {"id": "fleetmiss", "stat": "Average", "visible": False},
                    ],
                    [
                        {
                            "expression": f"100 * (1 - fleetmiss / {budget})",
                            "label": "fleet",
                        }
                    ],
                    [
                        {
                            "expression": (
                                f"100 * (1 - {_per_tenant(props, SLO_MISS_METRIC, 'Average', None)}"
                                f" / {budget})"
                            ),
                        }
                    ],
                ],
            },
        },
        _graph(
            props,
            "Error budget burn rate vs alarm thresholds",
            burn_lines,
            annotations=_lines(
                *((f"{w.name} alarm ({w.severity.value})", w.burn_rate) for w in windows)
            ),
        ),
        _graph(
            props,
            "Queue wait p99 by tenant (ms)",
            [
                [
                    {
                        "expression": _per_tenant(props, REQUEST_QUEUE_WAIT_METRIC, "p99", 60),
                        "label": dimension_label(TENANT_DIMENSION, " p99"),
                    }
                ]
            ],
        ),
        _graph(
            props,
            "Requests shed by reason",
            [
                [
                    {
                        "expression": search(
                            props.namespace,
                            (GROUP_DIMENSION, SHED_REASON_DIMENSION),
                            REQUESTS_SHED_METRIC,
                            "Sum",
                            60,
                            **{GROUP_DIMENSION: props.autoscaling_group_name},
                        ),
                        "label": dimension_label(SHED_REASON_DIMENSION),
                    }
                ]
            ],
        ),
    ]


def _load_balancer_and_hosts(props: DashboardProps) -> list[Widget]:
    group = [GROUP_DIMENSION, props.autoscaling_group_name]
    balancer = ["LoadBalancer", props.load_balancer_arn_suffix]
    target_group = [*balancer, "TargetGroup", props.target_group_arn_suffix]
    return [
        _graph(
            props,
            "ALB requests",
            [[ALB_NAMESPACE, "RequestCount", *balancer, {"stat": "Sum"}]],
            period=60,
        ),
        _graph(
            props,
            "ALB target response time p50 / p99 (to the response headers, s)",
            [
                [ALB_NAMESPACE, "TargetResponseTime", *target_group, {"stat": "p50"}],
                [ALB_NAMESPACE, "TargetResponseTime", *target_group, {"stat": "p99"}],
            ],
            period=60,
            annotations=_lines(("alarm above", props.alb_response_time_p99_s)),
        ),
        _graph(
            props,
            "4xx / 5xx",
            [
                [ALB_NAMESPACE, name, *balancer, {"stat": "Sum"}]
                for name in (
                    "HTTPCode_Target_4XX_Count",
                    "HTTPCode_Target_5XX_Count",
                    "HTTPCode_ELB_5XX_Count",
                )
            ],
            period=60,
        ),
        _graph(
            props,
            "Healthy / unhealthy gateways",
            [
                [ALB_NAMESPACE, "HealthyHostCount", *target_group, {"stat": "Minimum"}],
                [ALB_NAMESPACE, "UnHealthyHostCount", *target_group, {"stat": "Maximum"}],
            ],
            period=60,
        ),
        _graph(
            props,
            "GPU utilisation and memory (%)",
            [
                [props.namespace, name, *group, {"stat": "Average"}]
                for name in ("nvidia_smi_utilization_gpu", "nvidia_smi_utilization_memory")
            ],
            period=60,
        ),
        {
            "type": "log",
            "width": 12,
            "height": 6,
            "properties": {
                "title": "Requests per tenant per minute",
                "region": props.region,
                "view": "timeSeries",
                "query": (
                    f"SOURCE '{props.gateway_log_group}' | filter ispresent(tenant) "
                    "| stats count(*) as requests by bin(1m), tenant"
                ),
            },
        },
    ]
