"""vllm.service and gateway.service: systemd accepts them, and they keep their promises."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from app.settings import GatewaySettings
from infra.policy import FLEET_POLICY
from infra.stack.load_balancer import backend_keep_alive_s
from infra.stack.settings import StackSettings
from tests.ami.unitfile import (
    AMI_DIR,
    UNITS_DIR,
    Unit,
    exec_start_argv,
    option,
    parse_unit,
    read_env_file,
    unit_assignments,
    unit_environment,
    value,
    values,
)
from tests.processes import gateway_argv

REPO = AMI_DIR.parent
HOST_UNIT_DIR = Path("/usr/lib/systemd/system")
GATEWAY_ENV_EXAMPLE = AMI_DIR / "files" / "gateway.env.example"
VLLM_ENV_EXAMPLE = AMI_DIR / "files" / "vllm.env.example"
# What 30-model.sh writes on the image, in the same format.
# What nvidia-smi reports for an A10G: 23,028 MiB.
A10G_MEMORY_GIB = 23_028 / 1024
VLLM_DEFAULTS = {"VLLM_MODEL_DIR": "/opt/finsight/models/m", "VLLM_SERVED_MODEL_NAME": "m"}


@pytest.fixture(scope="module")
def vllm_unit() -> Unit:
    return parse_unit(UNITS_DIR / "vllm.service")


@pytest.fixture(scope="module")
def gateway_unit() -> Unit:
    return parse_unit(UNITS_DIR / "gateway.service")


def _vllm_argv(unit: Unit, tmp_path: Path) -> list[str]:
    defaults = tmp_path / "vllm.defaults.env"
    defaults.write_text("".join(f"{k}={v}\n" for k, v in VLLM_DEFAULTS.items()))
    env = unit_environment(unit, {"/opt/finsight/etc/vllm.defaults.env": defaults})
    return exec_start_argv(unit, env)


# --- systemd-analyze verify ------------------------------------------------------------
# This machine (a container) does not run systemd as PID 1, and the units' binaries live in
# the image's venvs. `verify --root` checks the units against a throwaway root holding
# Debian's own unit files (for multi-user.target and friends), executable stubs at the
# ExecStart paths, cloud-init's units as Ubuntu orders them, and both units enabled as
# `systemctl enable` leaves them: what the image has once provisioned.

# cloud-init's units on the DLAMI (Ubuntu), reduced to their ordering: write_files runs in
# the init stage before network-online.target; cloud-final comes after multi-user.target.
CLOUD_INIT_UNITS = {
    "cloud-init.service": "[Unit]\nDescription=Cloud-init: Network Stage\n"
    "Before=network-online.target\n[Service]\nType=oneshot\n"
    "ExecStart=/usr/bin/cloud-init init\nRemainAfterExit=yes\n",
    "cloud-config.service": "[Unit]\nDescription=Cloud-init: Config Stage\n"
    "Wants=network-online.target\nAfter=network-online.target\n[Service]\nType=oneshot\n"
    "ExecStart=/usr/bin/cloud-init modules --mode=config\nRemainAfterExit=yes\n",
    "cloud-final.service": "[Unit]\nDescription=Cloud-init: Final Stage\n"
    "Wants=network-online.target cloud-config.service\n"
    "After=network-online.target cloud-config.service\nAfter=multi-user.target\n"
    "[Service]\nType=oneshot\nExecStart=/usr/bin/cloud-init modules --mode=final\n"
    "RemainAfterExit=yes\n",
    "cloud-init.target": "[Unit]\nDescription=Cloud-init target\nAfter=multi-user.target\n",
}


def _verify_root(tmp_path: Path, units: dict[str, str]) -> Path:
    if shutil.which("systemd-analyze") is None or not HOST_UNIT_DIR.is_dir():
        pytest.fail("systemd-analyze is missing: run `make ami-tools`")
    root = tmp_path / "root"
    system = root / "usr/lib/systemd/system"
    shutil.copytree(HOST_UNIT_DIR, system, symlinks=True)
    etc = root / "etc/systemd/system"
    (etc / "multi-user.target.wants").mkdir(parents=True)
    (etc / "cloud-init.target.wants").mkdir(parents=True)
    for name, text in CLOUD_INIT_UNITS.items():
        (system / name).write_text(text)
        wants = "multi-user" if name.endswith(".target") else "cloud-init"
        (etc / f"{wants}.target.wants" / name).symlink_to(f"/usr/lib/systemd/system/{name}")
    for name, text in units.items():
        (etc / name).write_text(text)
        (etc / "multi-user.target.wants" / name).symlink_to(f"/etc/systemd/system/{name}")
    for stub in (
        "opt/finsight/vllm/bin/python",
        "opt/finsight/gateway/bin/uvicorn",
        "opt/finsight/bin/fetch-model",
        "opt/finsight/bin/warm-pool-ready",
        "usr/bin/cloud-init",
    ):
        path = root / stub
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    return root


def _verify(root: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    # multi-user.target too: a boot transaction shows ordering cycles the units alone don't.
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}"]
        + [f"/etc/systemd/system/{name}" for name in names]
        + ["/usr/lib/systemd/system/multi-user.target"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_systemd_analyze_verifies_both_units(tmp_path: Path) -> None:
    units = {
        name: (UNITS_DIR / name).read_text()
        for name in (
            "finsight-model-fetch.service",
            "vllm.service",
            "gateway.service",
            "finsight-warm-pool-ready.service",
        )
    }
    result = _verify(_verify_root(tmp_path, units), list(units))
    # verify exits 0 on some problems (an unknown value is "ignored", a cycle is broken by
    # dropping a job), so its output counts as much as its status.
    assert result.returncode == 0 and not result.stdout and not result.stderr, result


@pytest.mark.parametrize(
    ("broken", "expected", "symptom"),
    [
        ("Restart=on-failure", "Restart=sometimes", "restart specifier"),
        (
            "ExecStart=/opt/finsight/vllm/bin/python",
            "ExecStart=/opt/finsight/vllm/bin/nope",
            "not executable",
        ),
        # Waiting for cloud-final from a multi-user unit: systemd drops vLLM from the boot.
        ("cloud-config.service\n", "cloud-final.service\n", "ordering cycle"),
    ],
)
def test_verify_harness_catches_a_broken_unit(
    tmp_path: Path, broken: str, expected: str, symptom: str
) -> None:
    text = (UNITS_DIR / "vllm.service").read_text()
    assert broken in text
    result = _verify(
        _verify_root(tmp_path, {"vllm.service": text.replace(broken, expected, 1)}),
        ["vllm.service"],
    )
    assert symptom in result.stdout + result.stderr


# --- vllm.service ----------------------------------------------------------------------


def test_vllm_listens_on_loopback_only(vllm_unit: Unit, tmp_path: Path) -> None:
    argv = _vllm_argv(vllm_unit, tmp_path)
    assert argv[:3] == ["/opt/finsight/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert option(argv, "--host") == "127.0.0.1"
    assert option(argv, "--port") == "8001"


def test_vllm_flags_fit_an_a10g(vllm_unit: Unit, tmp_path: Path) -> None:
    argv = _vllm_argv(vllm_unit, tmp_path)
    max_model_len = int(option(argv, "--max-model-len"))
    max_num_seqs = int(option(argv, "--max-num-seqs"))
    utilisation = float(option(argv, "--gpu-memory-utilization"))
    assert 0.5 <= utilisation <= 0.95
    # KV cache left for an 8B bf16 model (Llama-3.1-8B: 32 layers, 8 KV heads of 128,
    # K and V in 2 bytes = 128 KiB a token) after about 15 GiB of weights and 1.5 GiB of
    # activations and CUDA graphs.
    kv_gib = A10G_MEMORY_GIB * utilisation - 15.0 - 1.5
    kv_tokens = kv_gib * 2**30 / (128 * 2**10)
    # What ami/README.md promises: three full-length sequences, or the fleet's target of
    # 10 ongoing requests at 3,000 tokens each.
    assert kv_tokens >= 3 * max_model_len
    assert kv_tokens >= 10 * 3000
    assert 10 <= max_num_seqs <= 256
    assert option(argv, "--model") == VLLM_DEFAULTS["VLLM_MODEL_DIR"]
    assert option(argv, "--served-model-name") == VLLM_DEFAULTS["VLLM_SERVED_MODEL_NAME"]


def test_vllm_batch_is_the_policys_engine_max_num_seqs(vllm_unit: Unit, tmp_path: Path) -> None:
    # One number, two places: the image's unit and the policy the stack renders into the
    # gateway's env. The gateway sends at most engine_max_num_seqs - probe_reserve (the
    # policy refuses more), so the readiness probe always finds a slot in vLLM's batch.
    argv = _vllm_argv(vllm_unit, tmp_path)
    queue = FLEET_POLICY.queue
    assert int(option(argv, "--max-num-seqs")) == queue.engine_max_num_seqs
    assert queue.max_running <= queue.engine_max_num_seqs - queue.probe_reserve
    # at least the demand target runs at once, so vLLM's batch never caps the scaling signal
    assert queue.max_running >= FLEET_POLICY.default.target_ongoing_requests


def test_vllm_restarts_on_failure_with_a_limit(vllm_unit: Unit) -> None:
    assert value(vllm_unit, "Service", "Restart") == "on-failure"
    assert int(value(vllm_unit, "Unit", "StartLimitBurst")) >= 2
    assert int(value(vllm_unit, "Unit", "StartLimitIntervalSec")) > 0


def test_vllm_never_downloads_at_boot(vllm_unit: Unit, tmp_path: Path) -> None:
    defaults = tmp_path / "vllm.defaults.env"
    defaults.write_text("")
    env = unit_environment(vllm_unit, {"/opt/finsight/etc/vllm.defaults.env": defaults})
    assert env["HF_HUB_OFFLINE"] == "1"
    # The compile cache the build's warm-up filled is where the unit looks for it.
    assert env["VLLM_CACHE_ROOT"] == "/var/cache/vllm"
    for name in ("TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        assert env[name].startswith("/var/cache/vllm"), name
    assert value(vllm_unit, "Service", "CacheDirectory") == "vllm"


def test_vllm_reads_the_baked_defaults_then_the_stacks_file(vllm_unit: Unit) -> None:
    assert values(vllm_unit, "Service", "EnvironmentFile") == [
        "/opt/finsight/etc/vllm.defaults.env",
        "-/etc/finsight/vllm.env",
        # The directory finsight-model-fetch.service filled, when the stack named weights.
        "-/run/finsight/vllm-model.env",
    ]
    assert set(read_env_file(VLLM_ENV_EXAMPLE)) <= set(VLLM_DEFAULTS)


def test_vllm_starts_after_the_model_fetch_and_not_without_it(vllm_unit: Unit) -> None:
    # Issue 11, 7: the weights the stack names must be on disk before vLLM loads.
    fetch = parse_unit(UNITS_DIR / "finsight-model-fetch.service")
    after = " ".join(values(vllm_unit, "Unit", "After")).split()
    assert "finsight-model-fetch.service" in after
    assert "finsight-model-fetch.service" in " ".join(values(vllm_unit, "Unit", "Requires"))
    assert value(fetch, "Unit", "Before") == "vllm.service"
    # It reads what the user data wrote: after cloud-config, from the stack's file.
    assert "cloud-config.service" in value(fetch, "Unit", "After").split()
    assert values(fetch, "Service", "EnvironmentFile") == ["-/etc/finsight/vllm.env"]
    assert value(fetch, "Service", "Type") == "oneshot"
    assert value(fetch, "Service", "RemainAfterExit") == "yes"
    assert value(fetch, "Service", "ExecStart") == "/opt/finsight/bin/fetch-model"
    units_script = (AMI_DIR / "scripts" / "50-units.sh").read_text()
    assert "finsight-model-fetch.service" in units_script
    assert '"$FINSIGHT_ROOT/bin/fetch-model"' in units_script


# --- gateway.service -------------------------------------------------------------------


def test_gateway_command_is_the_contract(gateway_unit: Unit) -> None:
    env = unit_environment(gateway_unit, {"/etc/finsight/gateway.env": GATEWAY_ENV_EXAMPLE})
    argv = exec_start_argv(gateway_unit, env)
    assert argv[0] == "/opt/finsight/gateway/bin/uvicorn"
    assert argv[1:8] == [
        "--factory",
        "app.main:create_app",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--no-access-log",
    ]


def _flags(argv: list[str]) -> list[str]:
    return [word for word in argv if word.startswith("--")]


def test_local_runs_start_the_gateway_with_the_units_flags(gateway_unit: Unit) -> None:
    unit_argv = exec_start_argv(gateway_unit, unit_assignments(gateway_unit))
    # The slow tests' gateway (tests/processes.py): the unit's command, host and port aside.
    local = gateway_argv(18000)
    assert local[local.index("--factory") :] == [
        "18000" if word == "8000" else "127.0.0.1" if word == "0.0.0.0" else word
        for word in unit_argv[1:]
    ]
    # make serve (local/serve.sh): the same flags, and the keep-alive a default stack writes.
    script = (REPO / "local" / "serve.sh").read_text()
    command = re.search(r"\.venv/bin/uvicorn (.*?) >", script, re.S)
    assert command, "serve.sh no longer starts uvicorn from .venv"
    serve_argv = shlex.split(command.group(1).replace("\\\n", " "))
    assert _flags(serve_argv) == _flags(unit_argv)
    keep_alive = re.search(r"^KEEP_ALIVE_S=(\d+)$", script, re.M)
    assert keep_alive and option(serve_argv, "--timeout-keep-alive") == "$KEEP_ALIVE_S"
    default_longest_s = StackSettings.model_fields["longest_request_s"].default
    assert int(keep_alive.group(1)) == backend_keep_alive_s(default_longest_s)


def test_gateway_runs_without_vllm(gateway_unit: Unit) -> None:
    for key in ("Requires", "BindsTo", "PartOf", "Requisite"):
        assert not any("vllm" in v for v in values(gateway_unit, "Unit", key)), key


def test_gateway_upstream_is_the_local_vllm(
    gateway_unit: Unit, vllm_unit: Unit, tmp_path: Path
) -> None:
    env = unit_environment(gateway_unit, {"/etc/finsight/gateway.env": GATEWAY_ENV_EXAMPLE})
    argv = _vllm_argv(vllm_unit, tmp_path)
    assert env["GATEWAY_UPSTREAM_URL"] == f"http://127.0.0.1:{option(argv, '--port')}"


def test_gateway_stop_outlasts_the_drain_deadline(gateway_unit: Unit) -> None:
    timeout_stop_s = float(value(gateway_unit, "Service", "TimeoutStopSec"))
    default_deadline = GatewaySettings.model_fields["drain_deadline_s"].default
    example_deadline = float(read_env_file(GATEWAY_ENV_EXAMPLE)["GATEWAY_DRAIN_DEADLINE_S"])
    # Room after the deadline for CompleteLifecycleAction and the process exit.
    assert timeout_stop_s >= max(default_deadline, example_deadline) + 30
    assert value(gateway_unit, "Service", "KillSignal") == "SIGTERM"
    # SIGTERM to the main process only: uvicorn drains; its children must not die first.
    assert value(gateway_unit, "Service", "KillMode") == "mixed"


# systemd.service(5): besides exit 0, these signals end a (non-oneshot) service cleanly.
SYSTEMD_CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}


def _restarted_after(unit: Unit, returncode: int) -> bool:
    """Whether systemd restarts the unit after its main process ends with `returncode`
    (Popen's convention: negative for death by that signal), per systemd.service(5)."""
    success = {
        word for entry in values(unit, "Service", "SuccessExitStatus") for word in entry.split()
    }
    if returncode >= 0:
        clean = returncode == 0 or str(returncode) in success
    else:
        sig = signal.Signals(-returncode)
        clean = sig in SYSTEMD_CLEAN_SIGNALS or {sig.name, sig.name[3:]} & success != set()
    restart = value(unit, "Service", "Restart")
    if restart == "on-failure":
        return not clean
    if restart in ("always", "no"):
        return restart == "always"
    raise AssertionError(f"Restart={restart} is not modelled here")


def test_a_finished_drain_is_not_restarted_but_a_crash_is(gateway_unit: Unit) -> None:
    # A drain (SIGTERM from systemd, or the IMDS lifecycle state turning Terminated) ends
    # the process with exit 0 or by SIGTERM: test_gateway_unit_start and the drain tests
    # accept exactly these. A restart on a terminating instance would drain all over again.
    for returncode in (0, -signal.SIGTERM):
        assert not _restarted_after(gateway_unit, returncode), returncode
    # A crash, the OOM killer's SIGKILL, a segfault or an abort: systemd starts it again.
    for returncode in (1, 3, -signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT):
        assert _restarted_after(gateway_unit, returncode), returncode
    assert "SIGTERM" in value(gateway_unit, "Service", "SuccessExitStatus").split()
    # Restarts are bounded: a gateway that cannot start stops being restarted.
    assert int(value(gateway_unit, "Unit", "StartLimitBurst")) >= 1


def test_gateway_env_example_is_accepted_by_the_settings(
    monkeypatch: pytest.MonkeyPatch, gateway_unit: Unit
) -> None:
    env = unit_environment(gateway_unit, {"/etc/finsight/gateway.env": GATEWAY_ENV_EXAMPLE})
    for key in list(os.environ):
        if key.startswith("GATEWAY_"):
            monkeypatch.delenv(key)
    for key, val in env.items():
        monkeypatch.setenv(key, val)
    settings = GatewaySettings()
    assert settings.tenants_secret_id and settings.tenants_file is None
    assert settings.autoscaling_group_name and settings.lifecycle_hook_name


def test_both_units_log_to_the_files_the_agent_ships(gateway_unit: Unit, vllm_unit: Unit) -> None:
    for name, unit in (("gateway", gateway_unit), ("vllm", vllm_unit)):
        target = f"append:/var/log/finsight/{name}.log"
        assert value(unit, "Service", "StandardOutput") == target
        assert value(unit, "Service", "StandardError") == target
