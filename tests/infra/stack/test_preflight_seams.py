"""What `fleet preflight` assumes about the stack it checks, held against the synthesized JSON:
the alarm topic it reads, the root device it sizes against the image, the instances the vCPU
quota must cover, and the stack names it accepts."""

from __future__ import annotations

from typing import Any

import pytest

from infra.cli.preflight_checks import ROOT_DEVICE_NAME
from infra.cli.preflight_cmd import alarm_topic_name, most_instances, settings_for_stack
from infra.stack.naming import ENVIRONMENTS, environment_stack_name

from .conftest import Synth


def only(document: dict[str, Any], kind: str) -> dict[str, Any]:
    (resource,) = document["resource"][kind].values()
    assert isinstance(resource, dict)
    return resource


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_preflight_reads_what_the_stack_writes(synth: Synth, environment: str) -> None:
    stack = environment_stack_name(environment)
    document = synth.json(environment)
    settings = settings_for_stack(stack)

    assert synth.stack_dir(environment).name == stack
    # the page topic, whose e-mail subscription preflight checks (the other is for tickets)
    topics = sorted(t["name"] for t in document["resource"]["aws_sns_topic"].values())
    assert topics == [alarm_topic_name(stack), f"{stack}-tickets"]
    (root,) = only(document, "aws_launch_template")["block_device_mappings"]
    assert (root["device_name"], root["ebs"]["volume_size"]) == (
        ROOT_DEVICE_NAME,
        settings.root_volume_gb,
    )
    group = only(document, "aws_autoscaling_group")
    warm = group.get("warm_pool") or {}
    assert most_instances(settings) == group["max_size"] + warm.get("min_size", 0)
