"""`fleet calibrate` refuses remote hosts, and `--replica` drives `fleet simulate`/`check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cli.calibrate_cmd import base_url
from infra.cli.common import CommandError
from infra.cli.main import main
from infra.sim.replica_model import ReplicaModel, replica_toml
from tests.infra.cli.test_simulate_cli import HEADER, fleet_status, run_fleet
from tests.processes import free_port


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
        ("http://localhost:8001/v1/", "http://localhost:8001"),
        ("http://[::1]:8001", "http://[::1]:8001"),
        ("http://127.0.0.2:9000/prefix", "http://127.0.0.2:9000/prefix"),
    ],
)
def test_loopback_urls_are_measured_at_their_root(url: str, root: str) -> None:
    assert base_url(url, allow_remote=False) == root


def test_a_remote_host_is_allowed_only_when_asked() -> None:
    assert base_url("https://replica.internal:8001", allow_remote=True)
    with pytest.raises(CommandError, match="--allow-remote"):
        base_url("https://replica.internal:8001", allow_remote=False)


def test_a_remote_host_is_refused_with_exit_2_and_one_line() -> None:
    result = run_fleet("calibrate", "--url", "http://10.0.3.7:8001", "--key", "k")

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "10.0.3.7 is not a loopback address" in result.stderr
    assert result.stdout == ""


def test_a_server_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = run_fleet("calibrate", "--url", url, "--key", "k", "--out", str(tmp_path / "r.toml"))

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"{url}/v1/models" in result.stderr
    assert not (tmp_path / "r.toml").exists()


@pytest.fixture
def small_trace(tmp_path: Path) -> Path:
    rows = [f"{1796135400 + 20 * i},tenant-{i % 2},{800 + i},{150}\n" for i in range(200)]
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + "".join(rows))
    return path


def static_1_p99_ttft(
    capsys: pytest.CaptureFixture[str], trace: Path, *replica: str
) -> float | None:
    assert main(["simulate", "--trace", str(trace), "--json", *replica]) == 0
    rows = json.loads(capsys.readouterr().out)["configs"]
    value: float | None = next(r for r in rows if r["config"] == "static-1")["p99_ttft_s"]
    return value


def test_simulate_runs_the_replica_model_from_the_file(
    tmp_path: Path, small_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = tmp_path / "slow.toml"
    slow.write_text(replica_toml(ReplicaModel(decode_tokens_per_s=8.0, prefill_speedup=10.0)))

    default = static_1_p99_ttft(capsys, small_trace)
    slower = static_1_p99_ttft(capsys, small_trace, "--replica", str(slow))

    assert default is not None and slower is not None
    assert slower > 10 * default


@pytest.mark.parametrize("command", ["simulate", "check"])
def test_a_bad_replica_file_is_refused_naming_the_field_and_its_range(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "replica.toml"
    bad.write_text("[replica]\nmax_num_seqs = 0\n")

    assert fleet_status([command, "--replica", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{bad}: max_num_seqs: must be between 1 and 4096, got 0" in err


def test_check_accepts_a_replica_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "replica.toml"
    good.write_text(replica_toml(ReplicaModel()))

    assert fleet_status(["check", "--replica", str(good), "--days", "1", "--json"]) in (0, 1)
    assert "findings" in json.loads(capsys.readouterr().out)
