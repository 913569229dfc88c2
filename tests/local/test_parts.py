"""The local fleet's parts on their own: the emulated engine's timing, HAProxy's
configuration, the local AWS endpoints, and the refusals of bad input."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.cli.main import main as fleet_main
from infra.local.aws_local import InstanceMetadataServer, LifecycleEndpoint
from infra.local.engine import EmulatedEngine, Sequence
from infra.local.fleet import FleetClock, FleetError, FleetOptions, boot_delay_s
from infra.local.haproxy import READY_PATH, HaproxyConfig
from infra.local.load import LoadError, check_target
from infra.policy import FLEET_POLICY, cold_start
from infra.sim.replica_model import A10G_VLLM


def _engine(speed: float = 1.0) -> EmulatedEngine:
    return EmulatedEngine(A10G_VLLM, speed)


def test_engine_times_a_lone_sequence_as_the_replica_model() -> None:
    engine = _engine()
    sequence = Sequence(prompt_units=A10G_VLLM.prefill_units(100), output_tokens=32)
    engine.submit([sequence])
    # 100 prompt tokens are 1 unit, 32 output tokens 32 units, at 32 units/s alone.
    engine.step(1.0)
    assert sequence.tokens_ready == 31 and not sequence.done
    engine.step(1 / 32 + 1e-9)
    assert sequence.done and not engine.running


def test_engine_shares_and_queues_beyond_max_num_seqs() -> None:
    engine = _engine()
    sequences = [Sequence(0.0, 1000) for _ in range(A10G_VLLM.max_num_seqs + 3)]
    engine.submit(sequences)
    engine.step(1.0)
    assert len(engine.running) == A10G_VLLM.max_num_seqs and len(engine.waiting) == 3
    expected = A10G_VLLM.per_sequence_speed(A10G_VLLM.max_num_seqs)
    assert sequences[0].progress == pytest.approx(expected)
    assert sequences[-1].progress == 0.0


def test_engine_runs_a_probe_beside_a_full_batch() -> None:
    engine = _engine()
    engine.submit([Sequence(0.0, 1000) for _ in range(A10G_VLLM.max_num_seqs)])
    probe = Sequence(0.0, 1)
    engine.submit([probe], probe=True)
    engine.step(1.0)
    assert probe.done


def test_haproxy_checks_as_the_target_group_does() -> None:
    from infra.stack.load_balancer import READY_PATH as STACK_READY_PATH

    assert READY_PATH == STACK_READY_PATH
    config = HaproxyConfig(port=18000, slots=4, speed=10, socket_path=Path("/tmp/x.sock"))
    text = config.render()
    assert "balance leastconn" in text
    assert f"option httpchk GET {READY_PATH}" in text
    assert "inter 1500ms fall 2 rise 2" in text
    assert "bind 127.0.0.1:18000" in text
    assert config.takeout_s == pytest.approx(4.0)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_configuration(tmp_path: Path) -> None:
    config = HaproxyConfig(port=18000, slots=8, speed=1, socket_path=tmp_path / "s.sock")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config.render())
    check = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_replicas_start_the_gateway_with_the_units_flags() -> None:
    from infra.local.fleet import KEEP_ALIVE_S, gateway_argv
    from infra.stack.load_balancer import backend_keep_alive_s
    from infra.stack.settings import StackSettings
    from tests.ami.unitfile import UNITS_DIR, exec_start_argv, parse_unit, unit_assignments

    unit = parse_unit(UNITS_DIR / "gateway.service")
    unit_argv = exec_start_argv(unit, unit_assignments(unit))
    local = gateway_argv(18000)

    def flags(argv: list[str]) -> list[str]:
        return [word for word in argv if word.startswith("--")]

    assert flags(local) == flags(unit_argv[1:])
    assert local[local.index("--factory") + 1] == unit_argv[unit_argv.index("--factory") + 1]
    default_longest_s = StackSettings.model_fields["longest_request_s"].default
    assert backend_keep_alive_s(default_longest_s) == KEEP_ALIVE_S


def test_boot_delay_is_the_cold_start_timeline_less_the_load_balancer_checks() -> None:
    last = next(p for p in cold_start.BOOT_TIMELINE if p.name == "first-ready-probe")
    assert boot_delay_s("emulated") == cold_start.time_to_ready_s() - last.typical_s
    assert boot_delay_s("vllm") == 0.0


def test_clock_runs_faster_and_refuses_nonsense() -> None:
    start = dt.datetime(2026, 12, 1, 15, tzinfo=dt.UTC)
    clock = FleetClock(60.0, start)
    assert clock.wall_s(60) == 1.0
    assert clock.now() >= start
    with pytest.raises(FleetError, match="speed"):
        FleetClock(0)
    with pytest.raises(FleetError, match="time zone"):
        FleetClock(1, dt.datetime(2026, 12, 1, 15))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": 0}, "port must be"),
        ({"initial_replicas": 9}, "initial replicas must be between 1 and max_replicas"),
        ({"engine": "gpu"}, "engine must be"),
        ({"engine": "vllm"}, "needs the tiny model"),
        ({"speed": -1.0}, "speed"),
    ],
)
def test_fleet_options_refuse_bad_values(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    tenants = tmp_path / "tenants.json"
    tenants.write_text('{"tenants": []}')
    values: dict[str, object] = {
        "state_dir": tmp_path,
        "tenants_file": tenants,
        "policy": FLEET_POLICY,
        **change,
    }
    with pytest.raises(FleetError, match=message):
        FleetOptions(**values)  # type: ignore[arg-type]


def test_fleet_options_need_a_tenants_file(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="no tenants file"):
        FleetOptions(state_dir=tmp_path, tenants_file=tmp_path / "none", policy=FLEET_POLICY)


def test_load_stays_on_loopback() -> None:
    check_target("http://127.0.0.1:8000")
    check_target("http://localhost:8000")
    with pytest.raises(LoadError, match="loopback"):
        check_target("http://10.0.0.5:8000")


def test_status_without_a_fleet_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fleet_main(["local", "status", "--state-dir", str(tmp_path)]) == 2
    assert "no local fleet has run here" in capsys.readouterr().err


def test_up_refuses_an_instant_without_a_zone(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        fleet_main(["local", "up", "--tenants-file", "t.json", "--start", "2026-12-01T15:00"])
    assert "needs a time zone" in capsys.readouterr().err


def _autoscaling(url: str) -> object:
    return boto3.client(
        "autoscaling",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_lifecycle_endpoint_completes_only_a_waiting_instance() -> None:
    waiting = {"i-1"}
    endpoint = LifecycleEndpoint("group", "hook", lambda instance: instance in waiting)
    try:
        client = _autoscaling(endpoint.url)
        client.complete_lifecycle_action(  # type: ignore[attr-defined]
            LifecycleHookName="hook",
            AutoScalingGroupName="group",
            LifecycleActionResult="CONTINUE",
            InstanceId="i-1",
        )
        with pytest.raises(ClientError, match="No active Lifecycle Action"):
            client.complete_lifecycle_action(  # type: ignore[attr-defined]
                LifecycleHookName="hook",
                AutoScalingGroupName="group",
                LifecycleActionResult="CONTINUE",
                InstanceId="i-2",
            )
        with pytest.raises(ClientError, match="No such lifecycle hook"):
            client.complete_lifecycle_action(  # type: ignore[attr-defined]
                LifecycleHookName="other",
                AutoScalingGroupName="group",
                LifecycleActionResult="CONTINUE",
                InstanceId="i-1",
            )
    finally:
        endpoint.close()


def test_instance_metadata_serves_the_gateway_reader() -> None:
    from app.imds import InstanceMetadata

    server = InstanceMetadataServer("i-local1")

    async def read() -> list[str]:
        metadata = InstanceMetadata(server.url)
        try:
            seen = [await metadata.instance_id(), await metadata.lifecycle_state()]
            server.lifecycle_state = "Terminated"
            return [*seen, await metadata.lifecycle_state()]
        finally:
            await metadata.aclose()

    try:
        assert asyncio.run(read()) == ["i-local1", "InService", "Terminated"]
    finally:
        server.close()
