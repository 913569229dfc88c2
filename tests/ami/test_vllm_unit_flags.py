"""vllm.service's ExecStart flags are accepted by vLLM's own parser (the CPU build)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.policy import FLEET_POLICY
from tests.ami.unitfile import UNITS_DIR, exec_start_argv, parse_unit, unit_environment

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
ARGCHECK = Path(__file__).with_name("vllm_argcheck.py")
MODEL_DIR = "/opt/finsight/models/Llama-3.1-8B-Instruct"
SERVED_NAME = "finsight-llm"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def unit_argv(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    defaults = tmp_path_factory.mktemp("etc") / "vllm.defaults.env"
    # The file 30-model.sh writes on the image.
    defaults.write_text(f"VLLM_MODEL_DIR={MODEL_DIR}\nVLLM_SERVED_MODEL_NAME={SERVED_NAME}\n")
    unit = parse_unit(UNITS_DIR / "vllm.service")
    env = unit_environment(unit, {"/opt/finsight/etc/vllm.defaults.env": defaults})
    return exec_start_argv(unit, env)


@pytest.fixture(scope="module")
def parsed(unit_argv: list[str]) -> dict[str, Any]:
    if not VLLM_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(".venv-vllm is missing in CI: `make test` should have built it")
        pytest.skip(".venv-vllm is not built (make vllm-venv)")
    assert unit_argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    result = subprocess.run(
        [str(VLLM_PYTHON), str(ARGCHECK), *unit_argv[3:]],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    report: dict[str, Any] = json.loads(lines[-1])
    report["log_lines"] = [line for line in lines[:-1] if "vllm-argcheck-log-probe" in line]
    return report


def test_cpu_build_accepts_every_flag(parsed: dict[str, Any]) -> None:
    assert parsed["status"] == 0
    # The same parser refuses what it does not know, so acceptance means something.
    assert parsed["unknown_flag_rejected"] is True


def test_flags_parse_to_the_values_the_unit_means(parsed: dict[str, Any]) -> None:
    args = parsed["args"]
    assert (args["host"], args["port"]) == ("127.0.0.1", 8001)
    assert args["model"] == MODEL_DIR
    # Baked weights, the default loader; the stack's vllm.env names runai_streamer instead.
    assert args["load_format"] == "auto"
    assert args["served_model_name"] == [SERVED_NAME]
    assert args["max_model_len"] == 8192
    # the policy's number (tests/ami/test_units.py holds the unit text to it as well)
    assert args["max_num_seqs"] == FLEET_POLICY.queue.engine_max_num_seqs
    # Parsed by the CPU build too; its CPU backend sizes the KV cache from
    # VLLM_CPU_KVCACHE_SPACE instead, so this is checked here and used on the A10G.
    assert args["gpu_memory_utilization"] == pytest.approx(0.90)
    assert args["disable_uvicorn_access_log"] is True
    assert args["logging_config"]["formatter"] == "json"
    # Prompts are never logged: request logging stays at its default, off.
    assert args["enable_log_requests"] is False


def test_logs_are_json_lines_for_cloudwatch(parsed: dict[str, Any]) -> None:
    (line,) = parsed["log_lines"]
    record = json.loads(line)
    assert record["message"] == "vllm-argcheck-log-probe"
    assert record["levelname"] == "INFO"
