"""The CloudWatch agent ships what the units write and the GPU metrics the dashboard shows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.stack.settings import StackSettings
from tests.ami.unitfile import AMI_DIR, UNITS_DIR, parse_unit, value

CONFIG = AMI_DIR / "cloudwatch" / "amazon-cloudwatch-agent.json"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(CONFIG.read_text())
    return parsed


def test_logs_of_both_units_go_to_their_groups(config: dict[str, Any]) -> None:
    collected = config["logs"]["logs_collected"]["files"]["collect_list"]
    by_file = {entry["file_path"]: entry for entry in collected}
    for name in ("gateway", "vllm"):
        unit = parse_unit(UNITS_DIR / f"{name}.service")
        path = value(unit, "Service", "StandardOutput").removeprefix("append:")
        assert path in by_file, path
        assert by_file[path]["log_group_name"] == f"/finsight-serving/{name}"
        assert by_file[path]["log_stream_name"] == "{instance_id}"


def test_gpu_utilisation_and_memory_are_collected(config: dict[str, Any]) -> None:
    gpu = config["metrics"]["metrics_collected"]["nvidia_gpu"]["measurement"]
    assert {"utilization_gpu", "memory_used", "memory_total"} <= set(gpu)
    dimensions = config["metrics"]["append_dimensions"]
    assert dimensions["AutoScalingGroupName"] == "${aws:AutoScalingGroupName}"
    assert ["AutoScalingGroupName"] in config["metrics"]["aggregation_dimensions"]


def test_metrics_go_to_the_namespace_the_stack_gives_the_gateways(config: dict[str, Any]) -> None:
    # The instance role may PutMetricData only in the stack's one namespace, which the stack
    # also writes into every gateway's env file.
    stack_namespace = StackSettings.model_fields["cloudwatch_namespace"].default
    assert config["metrics"]["namespace"] == stack_namespace


def test_logs_are_flushed_often_enough_for_alarms_on_their_embedded_metrics(
    config: dict[str, Any],
) -> None:
    # The gateway's access lines are Embedded Metric Format documents: CloudWatch Logs
    # extracts their metrics from any event with `_aws` as the file is shipped, so this
    # file collection is all the agent needs. AWS's "Setting alarms on metrics created
    # with the embedded metric format" asks for a flush every 5 s or less
    # (`force_flush_interval`), or the alarms evaluate partial or missing data.
    logs = config["logs"]
    assert logs.get("force_flush_interval", 5) <= 5
    # Shipped as written: a per-file multi-line start pattern or filter could merge or
    # drop access lines, and so their metrics.
    [gateway] = [
        entry
        for entry in logs["logs_collected"]["files"]["collect_list"]
        if entry["log_group_name"] == "/finsight-serving/gateway"
    ]
    assert not {"multi_line_start_pattern", "filters"} & gateway.keys()
