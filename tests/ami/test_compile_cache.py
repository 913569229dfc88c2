"""The compile and CUDA-graph caches the build's warm-up produces are the ones the fleet's
vLLM reads: same cache paths, same vLLM install, same command line (vLLM keys its compile
cache on its config, `--model` included, so a different argument is a cache miss: minutes
of torch.compile at every boot)."""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from infra.policy.cold_start import WeightPath
from infra.stack import fleet
from tests.ami.unitfile import (
    AMI_DIR,
    UNITS_DIR,
    exec_start_argv,
    parse_unit,
    unit_assignments,
    unit_environment,
    value,
)

SCRIPTS = AMI_DIR / "scripts"
LOCATION = "s3://finsight-models/llama-3.1-8b-instruct/"
CACHE_ENV = ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME")


def _lib_value(name: str) -> str:
    match = re.search(rf"^{name}=(\S+)$", (SCRIPTS / "lib.sh").read_text(), re.MULTILINE)
    assert match, name
    return match.group(1)


@functools.cache
def _template() -> dict[str, Any]:
    with (AMI_DIR / "finsight-serving.pkr.hcl").open() as handle:
        parsed: dict[str, Any] = hcl2.load(
            handle, serialization_options=SerializationOptions(strip_string_quotes=True)
        )
    return parsed


def _provisioner_env(script: str) -> list[str]:
    (build,) = _template()["build"]
    for block in build["provisioner"]:
        for _, body in block.items():
            if Path(body.get("script", "")).name == script:
                return list(body.get("environment_vars", []))
    raise AssertionError(f"{script} is not provisioned")


def test_every_cache_the_unit_names_lies_in_its_cache_directory() -> None:
    unit = parse_unit(UNITS_DIR / "vllm.service")
    env = unit_assignments(unit)
    # CacheDirectory=vllm is /var/cache/vllm, owned by the service user and kept on the image.
    cache_root = "/var/cache/" + value(unit, "Service", "CacheDirectory")
    assert env["VLLM_CACHE_ROOT"] == cache_root
    for name in CACHE_ENV:
        assert env[name] == cache_root or env[name].startswith(cache_root + "/"), name
    # PrivateTmp= empties /tmp at every start: no cache may default there.
    assert value(unit, "Service", "PrivateTmp") == "yes"


def test_the_warm_up_fills_the_units_cache_by_running_the_unit() -> None:
    text = (SCRIPTS / "60-warmup.sh").read_text()
    warmup = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    env = unit_assignments(parse_unit(UNITS_DIR / "vllm.service"))
    # Started through systemd: the unit's environment, user and flags, not a copy of them.
    assert "systemctl start vllm.service" in warmup
    assert "vllm.entrypoints" not in warmup and "--model" not in warmup
    # It refuses to finish without a cache where the unit looks for one.
    assert f"find {env['VLLM_CACHE_ROOT']} -type f" in warmup
    # And the clean-up keeps it: only the Hub's download caches go.
    cleanup = (SCRIPTS / "90-cleanup.sh").read_text()
    removed = [word for line in cleanup.splitlines() if "rm -" in line for word in line.split()]
    assert env["VLLM_CACHE_ROOT"] not in removed
    assert all(not w.startswith(env["VLLM_CACHE_ROOT"] + "/torch") for w in removed)


def test_the_unit_runs_the_vllm_the_build_installed_at_the_templates_version() -> None:
    unit = parse_unit(UNITS_DIR / "vllm.service")
    venv = _lib_value("VLLM_VENV")
    assert value(unit, "Service", "ExecStart").startswith(f"{venv}/bin/python -m vllm.")
    install = (SCRIPTS / "10-vllm.sh").read_text()
    assert '"vllm[runai]==$VLLM_VERSION"' in install
    assert "VLLM_VERSION=${var.vllm_version}" in _provisioner_env("10-vllm.sh")
    # The streamer the default path needs is checked at build time, not found missing at boot.
    assert "import runai_model_streamer" in install


def _fleet_argv(tmp_path: Path, vllm_env: str) -> list[str]:
    """vllm.service's command line on an instance whose /etc/finsight/vllm.env is `vllm_env`:
    the fetch unit runs first, as at boot."""
    tmp_path.mkdir(parents=True)
    settings = tmp_path / "vllm.env"
    settings.write_text(vllm_env)
    defaults = tmp_path / "defaults.env"
    defaults.write_text("VLLM_MODEL_DIR=/opt/finsight/models/m\nVLLM_SERVED_MODEL_NAME=m\n")
    files = {"/etc/finsight/vllm.env": settings, "/opt/finsight/etc/vllm.defaults.env": defaults}
    override = tmp_path / "vllm-model.env"
    env = {
        **unit_environment(parse_unit(UNITS_DIR / "finsight-model-fetch.service"), files),
        "PATH": os.environ["PATH"],
        # The download path is not exercised here: a copy would need S3.
        "AWS_CLI": "false",
        "FINSIGHT_MODEL_OVERRIDE": str(override),
    }
    subprocess.run([str(SCRIPTS / "fetch-model.sh")], env=env, check=True, timeout=30)
    if override.exists():  # optional: systemd skips it when absent
        files["/run/finsight/vllm-model.env"] = override
    unit = parse_unit(UNITS_DIR / "vllm.service")
    return exec_start_argv(unit, unit_environment(unit, files))


def _warm_up_env(location: str, load: str) -> str:
    """What 60-warmup.sh writes for the template's fleet_model_location and fleet_model_load."""
    script = f'log() {{ :; }}; source "{SCRIPTS}/lib.sh"; fleet_vllm_env "$1" "$2"'
    done = subprocess.run(
        ["bash", "-c", script, "warmup", location, load],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout


def test_the_warm_up_runs_vllm_with_the_fleets_command_line(tmp_path: Path) -> None:
    stack_env = fleet.render_vllm_env(LOCATION, WeightPath.STREAM, "us-east-1")
    fleet_argv = _fleet_argv(tmp_path / "fleet", stack_env)
    build_argv = _fleet_argv(tmp_path / "build", _warm_up_env(LOCATION, "stream"))
    assert build_argv == fleet_argv
    assert fleet_argv[fleet_argv.index("--model") + 1] == LOCATION
    assert fleet_argv[fleet_argv.index("--load-format") + 1] == "runai_streamer"
    # The template hands the stack's location and load to the warm-up step.
    env = _provisioner_env("60-warmup.sh")
    assert "FLEET_MODEL_LOCATION=${var.fleet_model_location}" in env
    assert "FLEET_MODEL_LOAD=${var.fleet_model_load}" in env


@pytest.mark.parametrize("path", [WeightPath.STREAM, WeightPath.DOWNLOAD])
def test_the_warm_ups_model_lines_are_the_stacks(path: WeightPath) -> None:
    stack_lines = set(fleet.render_vllm_env(LOCATION, path, "us-east-1").splitlines())
    assert set(_warm_up_env(LOCATION, path.value).splitlines()) <= stack_lines


def test_a_warm_up_on_another_location_would_miss_the_cache(tmp_path: Path) -> None:
    # The comparison above can fail: another location is another --model.
    fleet_argv = _fleet_argv(
        tmp_path / "fleet", fleet.render_vllm_env(LOCATION, WeightPath.STREAM, "us-east-1")
    )
    other = _fleet_argv(tmp_path / "other", _warm_up_env("s3://finsight-models/other/", "stream"))
    assert other != fleet_argv
    # And no location at all (baked weights) is the baked directory, as the warm-up's default.
    baked = _fleet_argv(tmp_path / "baked", "")
    assert baked[baked.index("--model") + 1] == "/opt/finsight/models/m"
    assert baked[baked.index("--load-format") + 1] == "auto"
