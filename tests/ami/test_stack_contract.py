"""The image and the stack agree: the files its user data writes, the SSM parameter, the log
groups and the metric namespace. Read from the stack's own code, not restated here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from app.settings import GatewaySettings
from contract import GATEWAY_KEEP_ALIVE_ENV
from infra.policy import FLEET_POLICY
from infra.policy.cold_start import WeightPath
from infra.policy.gateway import gateway_policy_settings
from infra.stack import fleet, load_balancer, observability
from infra.stack.settings import ProdSettings, StackSettings
from tests.ami.unitfile import (
    AMI_DIR,
    UNITS_DIR,
    exec_start_argv,
    option,
    parse_unit,
    read_env_file,
    unit_environment,
    values,
)

STACK_NAMESPACE = StackSettings.model_fields["cloudwatch_namespace"].default


# The longest drain deadline the stack can write (its longest_request_s upper bound).
LONGEST_STACK_DEADLINE_S = next(
    int(bound.le)
    for bound in StackSettings.model_fields["longest_request_s"].metadata
    if getattr(bound, "le", None) is not None
)


MODEL_LOCATION = "s3://finsight-models/llama/"


def _user_data_files(
    tmp_path: Path,
    model_location: str | None = MODEL_LOCATION,
    weight_path: WeightPath = WeightPath.STREAM,
) -> dict[str, Path]:
    gateway_env = fleet.GatewayEnv(
        tenants_secret_id="finsight/prod/tenants",
        cloudwatch_namespace=STACK_NAMESPACE,
        autoscaling_group_name="finsight-prod",
        lifecycle_hook_name="finsight-prod-drain",
        region="us-east-1",
        drain_deadline_s=LONGEST_STACK_DEADLINE_S,
        policy=gateway_policy_settings(FLEET_POLICY),
        keep_alive_s=load_balancer.backend_keep_alive_s(LONGEST_STACK_DEADLINE_S),
    )
    user_data: str = fleet.render_user_data(
        gateway_env, model_location, weight_path, launch_hook_name="finsight-prod-warm"
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    header, _, body = user_data.partition("\n")
    assert header == "#cloud-config"
    files: dict[str, Path] = {}
    for index, entry in enumerate(json.loads(body)["write_files"]):
        local = tmp_path / f"file{index}.env"
        local.write_text(entry["content"])
        files[entry["path"]] = local
    return files


def test_user_data_writes_the_files_the_units_read(tmp_path: Path) -> None:
    files = _user_data_files(tmp_path)
    assert set(files) == {
        "/etc/finsight/gateway.env",
        "/etc/finsight/vllm.env",
        "/etc/finsight/warm-pool.env",
    }
    # No model location: nothing about S3 weights is written.
    baked = _user_data_files(tmp_path / "baked", None, WeightPath.BAKED)
    assert "/etc/finsight/vllm.env" not in baked
    # Every file the user data writes is one a unit of the image reads.
    read = {
        entry.lstrip("-")
        for unit in UNITS_DIR.glob("*.service")
        for entry in values(parse_unit(unit), "Service", "EnvironmentFile")
    }
    assert set(files) <= read


def test_stacks_gateway_env_starts_the_gateway_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _user_data_files(tmp_path)
    unit = parse_unit(UNITS_DIR / "gateway.service")
    env = unit_environment(unit, files)
    assert env["GATEWAY_UPSTREAM_URL"] == "http://127.0.0.1:8001"
    for key in list(os.environ):
        if key.startswith("GATEWAY_"):
            monkeypatch.delenv(key)
    for key, val in env.items():
        monkeypatch.setenv(key, val)
    settings = GatewaySettings()
    timeout_stop_s = float(dict(unit["Service"])["TimeoutStopSec"])
    # Room after the longest deadline for CompleteLifecycleAction and the process exit.
    assert settings.drain_deadline_s == LONGEST_STACK_DEADLINE_S
    assert settings.drain_deadline_s + 30 <= timeout_stop_s
    assert exec_start_argv(unit, env)[0] == "/opt/finsight/gateway/bin/uvicorn"


def _boot(
    tmp_path: Path,
    model_location: str | None,
    bucket: Path,
    weight_path: WeightPath = WeightPath.DOWNLOAD,
) -> list[str]:
    """The image's boot with the stack's user data: the fetch unit, then vLLM's command."""
    files = _user_data_files(tmp_path, model_location, weight_path)
    defaults = tmp_path / "defaults.env"
    defaults.write_text("VLLM_MODEL_DIR=/opt/finsight/models/m\nVLLM_SERVED_MODEL_NAME=m\n")
    files["/opt/finsight/etc/vllm.defaults.env"] = defaults
    # A stand-in for the AWS CLI: `aws s3 sync s3://BUCKET/PREFIX/ DIR` copies from `bucket`.
    aws = tmp_path / "aws"
    aws.write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        '[[ "$1 $2" == "s3 sync" ]]\n'
        'source_uri="${*: -2:1}"; target="${*: -1}"\n'
        f'cp -r "{bucket}/${{source_uri#s3://}}". "$target/"\n'
    )
    aws.chmod(0o755)
    fetch_unit = parse_unit(UNITS_DIR / "finsight-model-fetch.service")
    override = tmp_path / "run" / "vllm-model.env"
    env = {
        **unit_environment(fetch_unit, files),
        "PATH": os.environ["PATH"],
        "AWS_CLI": str(aws),
        "FINSIGHT_FETCHED_MODEL_DIR": str(tmp_path / "fetched"),
        "FINSIGHT_MODEL_OVERRIDE": str(override),
        # No instance store on this machine: the copy goes to the directory above.
        "FINSIGHT_INSTANCE_STORE_GLOB": str(tmp_path / "no-nvme*"),
    }
    subprocess.run([str(AMI_DIR / "scripts" / "fetch-model.sh")], env=env, check=True, timeout=60)
    if override.exists():  # an optional file: systemd skips it when absent
        files["/run/finsight/vllm-model.env"] = override
    unit = parse_unit(UNITS_DIR / "vllm.service")
    return exec_start_argv(unit, unit_environment(unit, files))


def test_the_stacks_model_location_is_what_vllm_serves(tmp_path: Path) -> None:
    # Issue 11, 7: VLLM_MODEL_LOCATION was written and never read.
    bucket = tmp_path / "bucket"
    weights = bucket / MODEL_LOCATION.removeprefix("s3://")
    weights.mkdir(parents=True)
    (weights / "config.json").write_text("{}")
    (weights / "model.safetensors").write_bytes(b"\0")
    # The default: vLLM streams the location itself, with the streamer's settings.
    argv = _boot(tmp_path / "stream-boot", MODEL_LOCATION, bucket, WeightPath.STREAM)
    assert option(argv, "--model") == MODEL_LOCATION
    assert option(argv, "--load-format") == "runai_streamer"
    assert not (tmp_path / "stream-boot" / "fetched").exists()
    # download: copied to local disk first, loaded from there.
    argv = _boot(tmp_path / "fetched-boot", MODEL_LOCATION, bucket)
    fetched = tmp_path / "fetched-boot" / "fetched"
    assert option(argv, "--model") == str(fetched)
    assert option(argv, "--load-format") == "auto"
    assert (fetched / "model.safetensors").exists()
    # No location: the fetch does nothing and the image's own weights are served.
    argv = _boot(tmp_path / "baked-boot", None, bucket, WeightPath.BAKED)
    assert option(argv, "--model") == "/opt/finsight/models/m"
    assert not (tmp_path / "baked-boot" / "fetched").exists()


def test_the_streamers_settings_reach_vllms_environment(tmp_path: Path) -> None:
    files = _user_data_files(tmp_path, MODEL_LOCATION, WeightPath.STREAM)
    defaults = tmp_path / "defaults.env"
    defaults.write_text("VLLM_MODEL_DIR=/opt/finsight/models/m\nVLLM_SERVED_MODEL_NAME=m\n")
    files["/opt/finsight/etc/vllm.defaults.env"] = defaults
    env = unit_environment(parse_unit(UNITS_DIR / "vllm.service"), files)
    assert int(env["RUNAI_STREAMER_CONCURRENCY"]) == fleet.STREAMER_CONCURRENCY
    # The buffer must leave room on a g5.xlarge (16 GiB) for vLLM's own process (~4 GiB).
    assert 0 < int(env["RUNAI_STREAMER_MEMORY_LIMIT"]) <= 8 * 1024**3
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"


def test_a_fetch_without_weights_fails_so_vllm_never_starts_on_nothing(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    (bucket / MODEL_LOCATION.removeprefix("s3://")).mkdir(parents=True)
    with pytest.raises(subprocess.CalledProcessError):
        _boot(tmp_path / "boot", MODEL_LOCATION, bucket)


def test_ami_id_goes_where_the_stack_reads_it() -> None:
    with (AMI_DIR / "finsight-serving.pkr.hcl").open() as handle:
        template: dict[str, Any] = hcl2.load(
            handle, serialization_options=SerializationOptions(strip_string_quotes=True)
        )
    variables = {name: body for block in template["variable"] for name, body in block.items()}
    default = StackSettings.model_fields["image_ssm_parameter"].default
    assert variables["ssm_parameter_name"]["default"] == default


def test_agent_ships_to_the_stacks_log_groups_and_namespace() -> None:
    config = json.loads((AMI_DIR / "cloudwatch" / "amazon-cloudwatch-agent.json").read_text())
    groups = {
        e["log_group_name"] for e in config["logs"]["logs_collected"]["files"]["collect_list"]
    }
    assert groups == set(observability.LOG_GROUPS)
    assert all(group.startswith(fleet.LOG_GROUP_PREFIX + "/") for group in groups)
    # One namespace for the agent's GPU metrics and the gateways' scaling metrics: the one
    # the instance role may publish to and the dashboard reads.
    assert config["metrics"]["namespace"] == STACK_NAMESPACE
    example = (AMI_DIR / "files" / "gateway.env.example").read_text()
    assert f"GATEWAY_CLOUDWATCH_NAMESPACE={STACK_NAMESPACE}\n" in example


def test_gateway_env_example_is_what_the_prod_stack_writes(tmp_path: Path) -> None:
    example = read_env_file(AMI_DIR / "files" / "gateway.env.example")
    written = read_env_file(_user_data_files(tmp_path)["/etc/finsight/gateway.env"])
    assert set(example) == set(written)
    prod = ProdSettings()
    # The values that follow from the policy and the settings are the prod defaults'.
    expected = {
        **gateway_policy_settings(FLEET_POLICY).env(),
        "GATEWAY_DRAIN_DEADLINE_S": str(prod.drain_deadline_s),
        GATEWAY_KEEP_ALIVE_ENV: str(load_balancer.backend_keep_alive_s(prod.longest_request_s)),
    }
    assert {key: example[key] for key in expected} == expected
