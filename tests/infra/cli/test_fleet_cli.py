"""The `fleet` command line contract: JSON shapes, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.cli.main import _subcommand_modules, build_parser, main
from infra.policy import FLEET_POLICY
from infra.policy.loader import load_policy, policy_from_mapping


def run_fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_schedule_json_has_the_contract_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedule", "--start", "2026-11-26", "--days", "2", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["reason"] for e in entries] == ["holiday", "pre-open", "early-close"]
    assert entries[1]["local_time"] == "2026-11-27T08:50:00-05:00"
    assert entries[1]["utc_time"] == "2026-11-27T13:50:00Z"
    assert entries[2]["min_replicas"] == 1


def test_policy_json_shows_configs_and_derived_windows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["default"]["min_replicas"] == 1
    assert payload["market_hours"]["min_replicas"] == 2
    assert payload["derived"]["scale_out_evaluation_periods"] == 3
    assert payload["derived"]["scale_in_evaluation_periods"] == 30
    # the gateway's queue, as the policy holds it and with what follows from it
    assert payload["queue"]["max_running"] == 12
    assert payload["queue"]["max_queued"] == 16
    assert payload["queue"]["max_queue_wait_s"] == 30.0
    assert payload["queue"]["scale_out_queue_depth"] == 1.0
    assert payload["derived"]["queue_tenant_max_queued"] == 8


def test_policy_table_prints_the_queue_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proposal = tmp_path / "queue.toml"
    proposal.write_text("[queue]\nmax_queued = 12\nmax_queue_wait_s = 20\n")
    assert main(["policy", "--policy", str(proposal)]) == 0
    lines = capsys.readouterr().out.splitlines()
    section = lines[lines.index("queue (per instance; counts are sequences)") + 1 :]
    rows = dict(line.strip().rsplit(maxsplit=1) for line in section[: section.index("")])
    assert rows["max_queued"] == "12" and rows["max_queue_wait_s"] == "20"
    assert rows["engine_max_num_seqs"] == "32" and rows["tenant_queue_share"] == "0.5"
    assert rows["max_running"] == "12"
    assert rows["tenant_max_queued (derived)"] == "6"


SLO_PROPOSAL = (
    "[slo]\nobjective = 0.995\nwindow_days = 30\nmin_requests = 50\n\n"
    '[[slo.tenants]]\ntenant = "acme"\nttft_s = 2.5\ne2e_s = 40\n\n'
    '[[slo.tenants]]\ntenant = "globex"\n'
)


def test_policy_json_has_the_slo_and_its_burn_rate_thresholds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["policy", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    slo = payload["slo"]
    assert (slo["ttft_s"], slo["e2e_s"], slo["objective"], slo["window_days"]) == (
        5.0, 65.0, 0.99, 28,
    )  # fmt: skip
    derived = payload["derived"]
    assert derived["slo_error_budget"] == pytest.approx(0.01)
    assert derived["slo_window_hours"] == 672
    fast, slow = derived["slo_burn_rate_windows"]["fast"], derived["slo_burn_rate_windows"]["slow"]
    assert (fast["severity"], fast["long_window_s"], fast["short_window_s"]) == ("page", 3600, 300)
    assert (fast["burn_rate"], fast["error_ratio"]) == (pytest.approx(13.44), pytest.approx(0.1344))
    assert (slow["severity"], slow["burn_rate"]) == ("ticket", pytest.approx(5.6))
    assert slow["error_ratio"] == pytest.approx(0.056)


def test_policy_json_round_trips_a_proposal_slo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proposal = tmp_path / "slo.toml"
    proposal.write_text(SLO_PROPOSAL)
    assert main(["policy", "--policy", str(proposal), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    loaded = load_policy(proposal, FLEET_POLICY)
    # what `fleet policy --json` prints reads back as the same policy
    sections = {k: v for k, v in payload.items() if k not in ("derived", "warnings")}
    assert policy_from_mapping(sections, FLEET_POLICY) == loaded
    assert payload["derived"]["slo_tenant_targets"] == {"acme": {"ttft_s": 2.5, "e2e_s": 40}}
    assert payload["derived"]["slo_burn_rate_windows"]["fast"]["burn_rate"] == pytest.approx(
        0.02 * 720
    )


def test_policy_table_prints_the_slo_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proposal = tmp_path / "slo.toml"
    proposal.write_text(SLO_PROPOSAL)
    assert main(["policy", "--policy", str(proposal)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("slo ("))
    section = lines[start + 1 : lines.index("", start)]
    rows = dict(line.strip().rsplit(maxsplit=1) for line in section if "tenant" not in line
                and "burn-rate" not in line)  # fmt: skip
    assert rows == {
        "ttft_s": "5", "e2e_s": "65", "objective": "99.50%", "window_days": "30",
        "error budget (derived)": "0.50%", "min_requests": "50",
    }  # fmt: skip
    text = "\n".join(section)
    assert "tenant acme: TTFT 2.5 s, end-to-end 40 s" in text
    assert "tenant globex: TTFT 5 s, end-to-end 65 s" in text
    assert "burn-rate fast (page): 1 h and 5 min windows both at >= 14.4x" in text
    assert "(7.20% of requests missing; 2% of the budget in 1 h)" in text
    assert "burn-rate slow (ticket): 6 h and 30 min windows both at >= 6x" in text


def test_invalid_slo_section_names_the_field(tmp_path: Path) -> None:
    proposal = tmp_path / "bad-slo.toml"
    proposal.write_text("[slo]\nobjective = 1.5\n")
    result = run_fleet("policy", "--policy", str(proposal))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "fleet policy: error: slo.objective: must be in [0.5, 0.9999], got 1.5"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["schedule", "--start", "2026-02-30"], "expected a date as YYYY-MM-DD"),
        (["schedule", "--days", "0"], "must be > 0"),
        (["schedule", "--days", "many"], "expected a whole number"),
        (["schedule", "--days", "99999"], "--days must be <= 3660"),
    ],
)
def test_invalid_input_is_one_line_without_traceback(args: list[str], message: str) -> None:
    result = run_fleet(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_policy_file_is_one_line(tmp_path: Path) -> None:
    proposal = tmp_path / "bad.toml"
    proposal.write_text("[market_hours]\nmin_replicas = 7\n")
    result = run_fleet("policy", "--policy", str(proposal))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "fleet policy: error: market_hours.min_replicas: must be <= max_replicas (4), got 7"
    )


def test_invalid_queue_section_names_the_field(tmp_path: Path) -> None:
    proposal = tmp_path / "bad-queue.toml"
    proposal.write_text("[queue]\nmax_queue_wait_s = 0\n")
    result = run_fleet("policy", "--policy", str(proposal))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "fleet policy: error: queue.max_queue_wait_s: must be in (0, 600] seconds, got 0"
    )


@pytest.mark.parametrize("module", _subcommand_modules())
def test_every_subcommand_prints_its_help(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    command = module.rsplit(".", 1)[1].removesuffix("_cmd")
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--help"])
    assert exited.value.code == 0
    assert f"usage: fleet {command}" in capsys.readouterr().out
