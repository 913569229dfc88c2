"""The Packer template parses and builds the image the design describes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from tests.ami.unitfile import AMI_DIR

TEMPLATE = AMI_DIR / "finsight-serving.pkr.hcl"
SCRIPTS_DIR = AMI_DIR / "scripts"
PUBLISH = SCRIPTS_DIR / "publish-ami-id.sh"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    with TEMPLATE.open() as handle:
        parsed: dict[str, Any] = hcl2.load(
            handle,
            serialization_options=SerializationOptions(
                strip_string_quotes=True, with_comments=False
            ),
        )
    return parsed


def _variables(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: body for block in template["variable"] for name, body in block.items()}


def _source(template: dict[str, Any]) -> dict[str, Any]:
    (block,) = template["source"]
    body: dict[str, Any] = block["amazon-ebs"]["gpu"]
    return body


def _provisioners(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    (build,) = template["build"]
    return [(kind, body) for block in build["provisioner"] for kind, body in block.items()]


def _script_name(body: dict[str, Any]) -> str:
    return Path(body["script"]).name


def test_variables_the_issue_lists(template: dict[str, Any]) -> None:
    variables = _variables(template)
    for name in (
        "region",
        "instance_type",
        "source_ami_name",
        "model_id",
        "model_revision",
        "model_s3_uri",
        "vllm_version",
        "gateway_wheel_dir",
        "ssm_parameter_name",
    ):
        assert name in variables, name
    assert variables["instance_type"]["default"] == "g5.xlarge"
    # An exact release: a range would bake whatever pip resolves on build day.
    assert re.fullmatch(r"\d+\.\d+\.\d+", variables["vllm_version"]["default"])
    assert variables["hf_token"]["sensitive"] is True


def test_source_is_the_newest_amazon_dlami_base_gpu_ubuntu(template: dict[str, Any]) -> None:
    source = _source(template)
    assert source["instance_type"] == "${var.instance_type}"
    (ami_filter,) = source["source_ami_filter"]
    name = _variables(template)["source_ami_name"]["default"]
    assert ami_filter["filters"]["name"] == "${var.source_ami_name}"
    assert name.startswith("Deep Learning Base") and "GPU AMI" in name and "(Ubuntu" in name
    assert ami_filter["filters"]["architecture"] == "x86_64"
    assert ami_filter["owners"] == ["${var.source_ami_owner}"]
    assert _variables(template)["source_ami_owner"]["default"] == "amazon"
    assert ami_filter["most_recent"] is True


def test_image_requires_imdsv2_and_encrypts_its_volume(template: dict[str, Any]) -> None:
    source = _source(template)
    assert source["imds_support"] == "v2.0"
    assert source["metadata_options"][0]["http_tokens"] == "required"
    (root,) = source["launch_block_device_mappings"]
    assert root["encrypted"] is True and root["volume_type"] == "gp3"


def test_provisioners_run_in_order(template: dict[str, Any]) -> None:
    provisioners = _provisioners(template)
    kinds = [kind for kind, _ in provisioners]
    first_script = next(i for i, (kind, body) in enumerate(provisioners) if "script" in body)
    # The payload (units, agent config, lib.sh, the wheel) is uploaded before any step.
    assert kinds[:first_script].count("file") == 2
    scripts = [_script_name(body) for _, body in provisioners if "script" in body]
    assert scripts == [
        "00-base.sh",
        "10-vllm.sh",
        "20-gateway.sh",
        "30-model.sh",
        "40-cloudwatch-agent.sh",
        "50-units.sh",
        "60-warmup.sh",
        "90-cleanup.sh",
    ]
    # Every provisioning script in the folder is used, and used once.
    on_disk = sorted(p.name for p in SCRIPTS_DIR.glob("[0-9][0-9]-*.sh"))
    assert sorted(scripts) == on_disk


def test_model_step_gets_the_model_and_the_token_only_there(template: dict[str, Any]) -> None:
    for _, body in _provisioners(template):
        env = " ".join(body.get("environment_vars", []))
        if "script" in body and _script_name(body) == "30-model.sh":
            for name in ("MODEL_ID=", "MODEL_REVISION=", "MODEL_S3_URI=", "SERVED_MODEL_NAME="):
                assert name in env
            assert "HF_TOKEN=${var.hf_token}" in env
        else:
            assert "hf_token" not in env


def test_ami_id_is_published_to_the_ssm_parameter(template: dict[str, Any]) -> None:
    (build,) = template["build"]
    (chain,) = build["post-processors"]
    post = [(kind, body) for block in chain["post-processor"] for kind, body in block.items()]
    assert [kind for kind, _ in post] == ["manifest", "shell-local"]
    manifest_path = post[0][1]["output"]
    (command,) = post[1][1]["inline"]
    assert "publish-ami-id.sh" in command
    assert f"{manifest_path} ${{var.ssm_parameter_name}} ${{var.region}}" in command


def _run_publish(tmp_path: Path, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    # A stand-in `aws` on PATH records the call instead of reaching AWS.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    aws = bin_dir / "aws"
    aws.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/aws-args\n')
    aws.chmod(0o755)
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_text(json.dumps(manifest))
    return subprocess.run(
        ["bash", str(PUBLISH), str(manifest_path), "/finsight/ami/latest", "eu-west-1"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        timeout=30,
    )


def test_publish_script_writes_this_runs_ami_id(tmp_path: Path) -> None:
    if shutil.which("jq") is None:
        pytest.fail("jq is missing: run `make ami-tools`")
    manifest = {
        "last_run_uuid": "run-2",
        "builds": [
            {"packer_run_uuid": "run-1", "artifact_id": "eu-west-1:ami-0aaaaaaaaaaaaaaaa"},
            {"packer_run_uuid": "run-2", "artifact_id": "eu-west-1:ami-0123456789abcdef0"},
        ],
    }
    result = _run_publish(tmp_path, manifest)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "aws-args").read_text().split("\n")
    assert args[:2] == ["ssm", "put-parameter"]
    assert args[args.index("--name") + 1] == "/finsight/ami/latest"
    assert args[args.index("--value") + 1] == "ami-0123456789abcdef0"
    assert args[args.index("--data-type") + 1] == "aws:ec2:image"
    assert args[args.index("--region") + 1] == "eu-west-1"


def test_publish_script_refuses_a_manifest_without_this_run(tmp_path: Path) -> None:
    if shutil.which("jq") is None:
        pytest.fail("jq is missing: run `make ami-tools`")
    manifest = {"last_run_uuid": "run-9", "builds": [{"packer_run_uuid": "run-1"}]}
    result = _run_publish(tmp_path, manifest)
    assert result.returncode == 1
    assert not (tmp_path / "aws-args").exists()


def _packer_version() -> tuple[int, int] | None:
    if shutil.which("packer") is None:
        return None
    out = subprocess.run(["packer", "version"], capture_output=True, text=True).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


@pytest.mark.skipif(
    (_packer_version() or (0, 0)) < (1, 9),
    reason="needs Packer >= 1.9 with the amazon plugin (required_plugins, imds_support); "
    "Debian bookworm ships 1.6.6, which predates both",
)
def test_packer_validate() -> None:
    subprocess.run(["packer", "init", str(TEMPLATE)], check=True, timeout=300)
    result = subprocess.run(
        ["packer", "validate", "-syntax-only", str(TEMPLATE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
