"""Issue 11's seams between settings, image, stack and AWS, on the synthesized JSON.

Each test names the defect it holds. `stack` is a default synth (no account settings, as
`make synth` for review), `deployable` the same stacks with every deploy setting given,
`named` prod with an API domain in a hosted zone and no certificate ARN.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from infra.policy import FLEET_POLICY, cold_start
from infra.stack.fleet import MODEL_FETCH_ALLOWANCE_S, VLLM_ENV_PATH, model_fetch_allowance_s
from infra.stack.settings import IMAGE_ROOT_VOLUME_FILE, load_settings
from infra.stack.summary import summarize
from tests.ami.unitfile import UNITS_DIR, parse_unit, value

from .conftest import DEPLOY_SETTINGS, NAMED_SETTINGS, REPO, Synth
from .test_stack import one, ref, resources, stack_environment
from .test_terraform import terraform_env

Stack = dict[str, Any]


@pytest.fixture(params=["dev", "prod"])
def stack(request: pytest.FixtureRequest, synth: Synth) -> Stack:
    return synth.json(request.param)


def instance_statements(stack: Stack) -> dict[str, dict[str, Any]]:
    [policy] = [b for n, b in resources(stack, "aws_iam_role_policy").items() if "fleet" in n]
    return {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}


def user_data_files(stack: Stack) -> dict[str, str]:
    _, template = one(stack, "aws_launch_template")
    user_data = base64.b64decode(template["user_data"]).decode()
    return {f["path"]: f["content"] for f in json.loads(user_data.split("\n", 1)[1])["write_files"]}


# --- 1. the root volume is never smaller than the image's snapshot ----------------------


def test_the_image_and_the_launch_template_read_one_root_volume_size(stack: Stack) -> None:
    with (REPO / "ami" / "finsight-serving.pkr.hcl").open() as handle:
        template = hcl2.load(
            handle, serialization_options=SerializationOptions(strip_string_quotes=True)
        )
    [block] = template["source"]
    [mapping] = block["amazon-ebs"]["gpu"]["launch_block_device_mappings"]
    assert mapping["volume_size"] == "${local.root_volume_size_gb}"
    built = {k: v for locals_ in template["locals"] for k, v in locals_.items()}
    assert IMAGE_ROOT_VOLUME_FILE.name in built["root_volume_size_gb"]
    assert "root_volume_size_gb" not in {n for b in template["variable"] for n in b}
    image_gb = int(IMAGE_ROOT_VOLUME_FILE.read_text())
    _, launch = one(stack, "aws_launch_template")
    [disk] = launch["block_device_mappings"]
    assert disk["device_name"] == "/dev/sda1"
    assert disk["ebs"]["volume_size"] >= image_gb


def test_the_plan_checks_the_published_images_real_root_snapshot(stack: Stack) -> None:
    # An image built with a bigger volume than the file says still stops the plan.
    [(ami_name, ami)] = stack["data"]["aws_ami"].items()
    [(parameter_name, image_parameter)] = stack["data"]["aws_ssm_parameter"].items()
    [image_filter] = ami["filter"]
    assert image_filter == {"name": "image-id", "values": [launch_image_id(stack)]}
    assert launch_image_id(stack) == (
        f"${{data.aws_ssm_parameter.{parameter_name}.insecure_value}}"
    )
    assert image_parameter["name"] == "/finsight/ami/latest"
    _, launch = one(stack, "aws_launch_template")
    [check] = launch["lifecycle"]["precondition"]
    assert f"data.aws_ami.{ami_name}.block_device_mappings" in check["condition"]
    assert f"<= {launch['block_device_mappings'][0]['ebs']['volume_size']} " in check["condition"]
    environment = stack_environment(stack)
    assert f"FINSIGHT_{environment.upper()}_ROOT_VOLUME_GB" in check["error_message"]


def launch_image_id(stack: Stack) -> str:
    _, launch = one(stack, "aws_launch_template")
    image: str = launch["image_id"]
    return image


# --- 3. CloudWatch alarms can publish to the encrypted topic ----------------------------


def test_the_alarm_topic_key_is_ours_rotated_and_grants_only_this_stacks_alarms(
    stack: Stack,
) -> None:
    topics = resources(stack, "aws_sns_topic")
    assert len(topics) == 2  # pages and tickets
    assert "alias/aws/sns" not in json.dumps(stack)
    key_name, key = one(stack, "aws_kms_key")
    for topic in topics.values():
        assert topic["kms_master_key_id"] == ref("aws_kms_key", key_name, "arn")
    assert key["enable_key_rotation"] is True
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    account = "${data.aws_caller_identity.account.account_id}"
    admin = statements["AccountAdministersTheKey"]
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{account}:root"}
    alarms = statements["CloudWatchAlarmsPublish"]
    assert alarms["Effect"] == "Allow"
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert sorted(alarms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    name = f"finsight-serving-{stack_environment(stack)}"
    assert alarms["Condition"] == {
        "StringEquals": {"aws:SourceAccount": account},
        "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:us-east-1:{account}:alarm:{name}-*"},
    }
    # Every alarm that notifies a topic, metric or composite, falls under that pattern; none
    # publishes otherwise.
    alarms = [
        *resources(stack, "aws_cloudwatch_metric_alarm").values(),
        *resources(stack, "aws_cloudwatch_composite_alarm").values(),
    ]
    for topic_name in topics:
        topic_ref = ref("aws_sns_topic", topic_name, "arn")
        notifying = [
            alarm
            for alarm in alarms
            if topic_ref in alarm.get("alarm_actions", []) + alarm.get("ok_actions", [])
        ]
        assert notifying, topic_name
        assert all(alarm["alarm_name"].startswith(f"{name}-") for alarm in notifying)
        assert topic_ref not in json.dumps(resources(stack, "aws_lambda_function"))
        assert topic_ref not in json.dumps(resources(stack, "aws_scheduler_schedule"))


# --- 6. no example value deploys ---------------------------------------------------------


def deploy_preconditions(stack: Stack) -> list[dict[str, str]]:
    checks = resources(stack, "terraform_data")
    return [p for body in checks.values() for p in body["lifecycle"]["precondition"]]


def test_a_stack_without_account_settings_cannot_plan_and_says_what_is_missing(
    stack: Stack,
) -> None:
    environment = stack_environment(stack)
    assert "123456789012" not in json.dumps(stack)
    messages = " ".join(p["error_message"] for p in deploy_preconditions(stack))
    prefix = f"FINSIGHT_{environment.upper()}_"
    assert f"{prefix}CERTIFICATE_ARN" in messages
    assert f"{prefix}TENANTS_SECRET_ARN" in messages
    assert (f"{prefix}STATE_BUCKET" in messages) is (environment == "prod")
    [listener] = resources(stack, "aws_lb_listener").values()
    assert "certificate_arn" not in listener


def test_a_fully_set_stack_carries_no_deploy_precondition(deployable: dict[str, Stack]) -> None:
    for environment, stack in deployable.items():
        assert deploy_preconditions(stack) == [], environment
        assert "locals" not in stack


def test_make_synth_prints_which_settings_a_deploy_needs(synth: Synth) -> None:
    lines = summarize(synth.stack_dir("prod") / "cdk.tf.json")
    needs = [line for line in lines if "DEPLOY NEEDS" in line]
    assert len(needs) == 3
    assert any("FINSIGHT_PROD_STATE_BUCKET" in line for line in needs)


@pytest.mark.integration
def test_terraform_plan_stops_on_the_missing_settings(synth: Synth, tmp_path: Path) -> None:
    # The preconditions alone (no AWS provider needed): what `terraform plan` says first.
    stack = synth.json("prod")
    (tmp_path / "main.tf.json").write_text(
        json.dumps(
            {
                "locals": stack["locals"],
                "resource": {"terraform_data": stack["resource"]["terraform_data"]},
            }
        )
    )
    env = terraform_env()
    assert shutil.which("terraform")
    subprocess.run(
        ["terraform", "init", "-no-color"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    plan = subprocess.run(
        ["terraform", "plan", "-no-color"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plan.returncode == 1
    output = re.sub(r"\s+", " ", plan.stderr)
    assert output.count("Resource precondition failed") == 3
    for variable in ("CERTIFICATE_ARN", "TENANTS_SECRET_ARN", "STATE_BUCKET"):
        assert f"FINSIGHT_PROD_{variable} is not set" in output


# --- 7 and 10. the model grant exists only with a location, and only for its prefix -----


def test_without_a_model_location_nothing_about_s3_models_is_granted_or_written(
    stack: Stack,
) -> None:
    statements = instance_statements(stack)
    assert not {"ReadModel", "ListModel"} & set(statements)
    assert not any(s["Action"] == "s3:GetObject" for s in statements.values())
    assert VLLM_ENV_PATH not in user_data_files(stack)


def test_a_model_location_is_written_for_the_image_and_granted_exactly(
    deployable: dict[str, Stack],
) -> None:
    for environment, stack in deployable.items():
        location = str(DEPLOY_SETTINGS[environment]["model_location"])
        bucket, prefix = location.removeprefix("s3://").split("/", 1)
        assert prefix and prefix.endswith("/")
        assert f"VLLM_MODEL_LOCATION={location}\n" in user_data_files(stack)[VLLM_ENV_PATH]
        statements = instance_statements(stack)
        assert statements["ReadModel"]["Resource"] == f"arn:aws:s3:::{bucket}/{prefix}*"
        assert statements["ListModel"]["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}*"]}}


def test_the_grace_period_follows_the_weight_path(
    stack: Stack, deployable: dict[str, Stack]
) -> None:
    # The group must not replace an instance still loading: each path's worst boot, with
    # margin, and for a copy at boot the fetch unit's own timeout on top.
    _, baked = one(stack, "aws_autoscaling_group")
    _, streaming = one(deployable[stack_environment(stack)], "aws_autoscaling_group")
    path = cold_start.WeightPath
    assert baked["health_check_grace_period"] == cold_start.health_check_grace_period_s(path.BAKED)
    assert streaming["health_check_grace_period"] == cold_start.health_check_grace_period_s(
        path.STREAM
    )
    assert streaming["default_instance_warmup"] == cold_start.instance_warmup_s(path.STREAM)
    assert model_fetch_allowance_s(path.STREAM) == 0
    fetch_unit = parse_unit(UNITS_DIR / "finsight-model-fetch.service")
    timeout = int(value(fetch_unit, "Service", "TimeoutStartSec"))
    assert timeout <= model_fetch_allowance_s(path.DOWNLOAD) == MODEL_FETCH_ALLOWANCE_S


# --- 8. the API has a name -----------------------------------------------------------------


def test_without_a_domain_the_output_is_the_load_balancers_url(stack: Stack) -> None:
    lb_name, _ = one(stack, "aws_lb")
    assert stack["output"]["api_url"]["value"] == f"https://${{aws_lb.{lb_name}.dns_name}}/v1"
    assert not resources(stack, "aws_route53_record") and not resources(
        stack, "aws_acm_certificate"
    )


def test_a_domain_gets_an_alias_a_validated_certificate_and_is_the_output(named: Stack) -> None:
    domain, zone = NAMED_SETTINGS["api_domain"], NAMED_SETTINGS["hosted_zone_id"]
    assert named["output"]["api_url"]["value"] == f"https://{domain}/v1"
    records = resources(named, "aws_route53_record")
    [alias] = [r for r in records.values() if "alias" in r]
    lb_name, lb = one(named, "aws_lb")
    assert (alias["name"], alias["type"], alias["zone_id"]) == (domain, "A", zone)
    assert alias["alias"]["name"] == ref("aws_lb", lb_name, "dns_name")
    assert alias["alias"]["zone_id"] == ref("aws_lb", lb_name, "zone_id")
    # The load balancer is IPv4 only, so no AAAA record.
    assert lb.get("ip_address_type", "ipv4") == "ipv4"
    assert not [r for r in records.values() if r["type"] == "AAAA"]
    cert_name, certificate = one(named, "aws_acm_certificate")
    assert (certificate["domain_name"], certificate["validation_method"]) == (domain, "DNS")
    [validation_record] = [r for r in records.values() if "alias" not in r]
    assert validation_record["zone_id"] == zone
    assert f"aws_acm_certificate.{cert_name}.domain_validation_options" in json.dumps(
        validation_record
    )
    validation_name, validation = one(named, "aws_acm_certificate_validation")
    assert validation["certificate_arn"] == ref("aws_acm_certificate", cert_name, "arn")
    [fqdns] = validation["validation_record_fqdns"]
    assert fqdns.endswith(".fqdn}")
    # The listener waits for the issued certificate.
    [listener] = resources(named, "aws_lb_listener").values()
    assert listener["certificate_arn"] == ref(
        "aws_acm_certificate_validation", validation_name, "certificate_arn"
    )


# --- 9. dev is sized for development ----------------------------------------------------


def test_dev_runs_one_instance_and_no_market_hours_minimum(dev: Stack, synth: Synth) -> None:
    _, group = one(dev, "aws_autoscaling_group")
    assert (group["min_size"], group["max_size"]) == (1, 1)
    assert {a["min_size"] for a in resources(dev, "aws_autoscaling_schedule").values()} == {1}
    assert "warm_pool" not in group
    summary = "\n".join(summarize(synth.stack_dir("dev") / "cdk.tf.json"))
    assert "min=1 max=1" in summary
    # Prod keeps the policy's numbers.
    _, prod_group = one(synth.json("prod"), "aws_autoscaling_group")
    assert prod_group["max_size"] == FLEET_POLICY.max_replicas
    assert load_settings("dev", max_replicas=2).fleet_policy(FLEET_POLICY).max_replicas == 2


# --- 10. least privilege ------------------------------------------------------------------


def test_instances_cannot_read_ssm_parameters(stack: Stack) -> None:
    attachments = resources(stack, "aws_iam_role_policy_attachment")
    assert not any("AmazonSSMManagedInstanceCore" in a["policy_arn"] for a in attachments.values())
    statements = instance_statements(stack)
    actions = [
        action
        for s in statements.values()
        for action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]
    assert not [a for a in actions if a.startswith("ssm:Get") or a == "ssm:*"]
    # Session Manager still works.
    assert "ssm:UpdateInstanceInformation" in actions
    assert "ssmmessages:OpenDataChannel" in actions
