"""`fleet simulate`, `fleet check` and `fleet export keda` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.cli.main import main

HEADER = "timestamp,tenant,prompt_tokens,output_tokens\n"
MIS_TUNED = (
    "[default]\ntarget_ongoing_requests = 3\nupscale_delay_s = 10\n"
    "downscale_delay_s = 30\nsmoothing_factor = 1.0\n"
)


def fleet_status(args: list[str]) -> int:
    """Run `fleet` in-process; argument errors exit through argparse, others return 2."""
    try:
        return main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def run_fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def small_trace(tmp_path: Path) -> Path:
    rows = [f"{1796135400 + 7 * i},tenant-{i % 3},{500 + i},{100 + i % 50}\n" for i in range(400)]
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + "".join(rows))
    return path


def test_simulate_json_has_every_config_and_the_contract_keys(
    small_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A proposal's [slo] is what the run is judged by: tenant-0's contract is stricter.
    proposal = tmp_path / "slo.toml"
    proposal.write_text('[[slo.tenants]]\ntenant = "tenant-0"\nttft_s = 0.2\n')
    assert main(["simulate", "--trace", str(small_trace), "--policy", str(proposal), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    configs = {row["config"]: row for row in payload["configs"]}
    assert set(configs) == {
        "static-1", "static-2", "static-3", "static-4",
        "ray-serve", "target-tracking", "policy-aws", "clairvoyant",
    }  # fmt: skip
    keys = {"config", "p50_ttft_s", "p99_ttft_s", "p99_e2e_s", "slo_attainment",
            "meets_slo", "budget_burn", "alarms", "gpu_hours", "cost_usd", "scale_events",
            "reversals"}  # fmt: skip
    for row in configs.values():
        assert keys <= set(row)
        assert row["requests"] == 400
        tenants = row["per_tenant"]
        assert set(tenants) == {"tenant-0", "tenant-1", "tenant-2"}
        assert sum(t["requests"] for t in tenants.values()) == 400
        assert sum(t["misses"] for t in tenants.values()) == row["misses"]
        for tenant in tenants.values():
            assert set(tenant["alarms"]) == {"fast", "slow"}
            assert tenant["budget_burn"] == pytest.approx(
                tenant["misses"] / tenant["requests"] / 0.01
            )
        # each tenant judged by its own targets
        strict, default = tenants["tenant-0"], tenants["tenant-1"]
        assert (strict["ttft_target_s"], strict["e2e_target_s"]) == (0.2, 65.0)
        assert (default["ttft_target_s"], default["e2e_target_s"]) == (5.0, 65.0)
    policy = configs["policy-aws"]["per_tenant"]
    assert policy["tenant-0"]["slo_attainment"] < policy["tenant-1"]["slo_attainment"]
    assert configs["static-2"]["gpu_hours"] == pytest.approx(48.0)
    slo = payload["slo"]
    assert (slo["ttft_s"], slo["e2e_s"], slo["objective"], slo["error_budget"]) == (
        5.0, 65.0, 0.99, 0.01,
    )  # fmt: skip
    assert slo["tenant_targets"] == {"tenant-0": {"ttft_s": 0.2, "e2e_s": 65.0}}
    assert slo["burn_rate_windows"]["fast"]["burn_rate"] == pytest.approx(13.44)


def test_simulate_table_and_plot(
    small_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "day.png"
    assert main(["simulate", "--trace", str(small_trace), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "SLO: 99.00% of requests within TTFT 5 s and end-to-end 65 s over 28 days" in out
    assert "fast (page) 1 h and 5 min at >= 13.44x the budget's rate" in out
    assert "SLO per tenant" in out
    assert "policy-aws gpu hours vs clairvoyant" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.stat().st_size > 20_000


def test_simulate_reports_sheds_and_queue_waits_of_a_burst_one_instance_cannot_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN 200 requests from 5 tenants within 2 s: one instance runs 30 and queues 32
    rows = [f"{1796135400 + i / 100},tenant-{i % 5},1000,400\n" for i in range(200)]
    burst = tmp_path / "burst.csv"
    burst.write_text(HEADER + "".join(rows))
    assert main(["simulate", "--trace", str(burst), "--json"]) == 0
    configs = {row["config"]: row for row in json.loads(capsys.readouterr().out)["configs"]}
    one, four = configs["static-1"], configs["static-4"]
    # THEN static-1 refuses attempts, and clients that still fail after their retries are
    # shed requests, counted against the SLO; four instances shed fewer
    assert one["refused_503_before_retries"] > one["shed_requests"] > four["shed_requests"]
    assert one["shed_share"] == pytest.approx(one["shed_requests"] / 200)
    assert one["slo_attainment"] <= 1 - one["shed_share"]
    assert one["misses"] >= one["shed_requests"]
    # and a burst that misses for most of 200 requests pages and tickets once: both
    # windows hold more than `min_requests` (20) requests, far above either threshold
    assert one["alarms"]["fast"]["firings"] == one["alarms"]["slow"]["firings"] == 1
    assert one["queue_wait_p99_s"] > four["queue_wait_p99_s"]
    assert main(["simulate", "--trace", str(burst)]) == 0
    out = capsys.readouterr().out
    assert "503/429" in out and "burst->cap p50/max" in out
    line = next(row for row in out.splitlines() if row.startswith("static-1 "))
    assert f"{one['shed_requests']}" in line.split()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--days", "2"], "--days and --start shape generated traffic"),
        (["--plot", "out.txt"], "--plot needs a .png file name"),
        (["--seed", "-1"], "must be >= 0"),
        (["--ttft-target", "0"], "must be a finite number > 0"),
        (["--ttft-target", "70"], "ttft_s: cannot exceed e2e_s (65), got 70"),
    ],
)
def test_bad_flags_are_one_line(
    small_trace: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fleet_status(["simulate", "--trace", str(small_trace), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert message in captured.err


def test_malformed_trace_row_is_one_line_naming_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "1796135400,acme,100,20\n1796135401,acme,lots,20\n")
    result = run_fleet("simulate", "--trace", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "bad.csv:3: prompt_tokens: expected a whole number, got 'lots'" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_fails_a_mis_tuned_policy_saying_which_and_by_how_much(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proposal = tmp_path / "proposal.toml"
    proposal.write_text(MIS_TUNED)
    status = main(["check", "--policy", str(proposal), "--start", "2026-12-01", "--days", "1"])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL oscillation:" in out
    assert "/day (limit 3/day)" in out
    assert out.count("queue wait p50") == 2  # the proposed run and the reference
    assert "PASS cost:" in out or "FAIL cost:" in out
    assert out.rstrip().endswith("check failed")


def test_check_json_reports_each_finding(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["check", "--start", "2026-12-01", "--days", "1", "--json", "--cost-margin", "5"])
    payload = json.loads(capsys.readouterr().out)
    assert status == 0
    assert payload["passed"] is True
    assert [f["check"] for f in payload["findings"]] == ["slo", "oscillation", "cost"]
    assert "(margin 5%)" in payload["findings"][2]["detail"]
    run = payload["runs"]["proposed"]
    assert run["shed_requests"] == 0  # the default policy on an ordinary day
    assert run["queue_wait_p99_s"] <= 5.0
    assert {"burst_to_capacity_s", "burst_to_capacity_max_s", "scale_out_episodes"} <= set(run)


def test_export_keda_is_valid_yaml_mapping_the_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proposal = tmp_path / "p.toml"
    proposal.write_text(
        "[default]\ntarget_ongoing_requests = 8\nupscale_delay_s = 40\n\n[[special_days]]\n"
        'date = 2026-12-18\nstart = "15:00"\nend = "17:00"\nmin_replicas = 3\n'
        'reason = "index rebalance"\n'
    )
    assert main(["export", "keda", "--policy", str(proposal), "--year", "2026"]) == 0
    text = capsys.readouterr().out
    document = yaml.safe_load(text)
    assert document["kind"] == "ScaledObject"
    spec = document["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 40
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    prometheus, market, special = spec["triggers"]
    assert prometheus["metadata"]["threshold"] == "8"
    assert "vllm:num_requests_waiting" in prometheus["metadata"]["query"]
    assert market["metadata"] == {
        "timezone": "America/New_York",
        "start": "50 8 * * 1,2,3,4,5",
        "end": "0 16 * * 1,2,3,4,5",
        "desiredReplicas": "2",
    }
    assert special["metadata"]["start"] == "0 15 18 12 *"
    assert special["metadata"]["desiredReplicas"] == "3"
    assert "#   holiday 2026-11-26 (Thanksgiving Day)" in text
    assert "early close 2026-11-27" in text


def test_export_keda_refuses_a_bad_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert fleet_status(["export", "keda", "--name", "Finsight_VLLM"]) == 2
    assert "must be a Kubernetes name" in capsys.readouterr().err


def test_check_fails_a_costlier_policy_and_passes_it_against_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    costly = tmp_path / "costly.toml"
    costly.write_text("[market_hours]\nmin_replicas = 4\n")
    window = ["--start", "2026-12-01", "--days", "1"]
    assert main(["check", "--policy", str(costly), *window]) == 1
    out = capsys.readouterr().out
    assert "FAIL cost:" in out
    assert "over the reference's" in out
    assert "PASS slo:" in out
    assert main(["check", "--policy", str(costly), "--against", str(costly), *window]) == 0
    assert "PASS cost: " in capsys.readouterr().out


def test_learn_weeks_too_short_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--start", "2026-12-09", "--learn-weeks", "1"]) == 2
    err = capsys.readouterr().err
    assert "--learn-weeks: 1 past Wednesday(s) of demand history, need 2" in err
