"""bench/gpu_engine_start.py runs vllm.service's own command line with dummy 8B weights and
reads the phases from vLLM's log lines: both checked here, without a GPU."""

from __future__ import annotations

from pathlib import Path

from bench.gpu_engine_start import LLAMA_8B_CONFIG, phases_from_log, unit_command
from tests.ami.unitfile import UNITS_DIR, exec_start_argv, parse_unit, unit_environment

# Lines as vLLM 0.32's v1 engine logs them (format strings in gpu_model_runner.py,
# compilation/monitor.py and v1/engine/core.py), JSON-formatted as the unit asks.
VLLM_LOG = [
    '{"message": "Model loading took 14.99 GiB memory and 21.402716 seconds"}',
    '{"message": "torch.compile took 7.53 s in total"}',
    '{"message": "Graph capturing finished in 11 secs, took 0.52 GiB"}',
    '{"message": "init engine (profile, create kv cache, warmup model) took 24.87 s"}',
]


def test_the_phases_are_read_from_vllms_log_lines() -> None:
    assert phases_from_log(VLLM_LOG) == {
        "weights-load": 21.402716,
        "compile": 7.53,
        "graph-capture": 11.0,
        "engine-init": 24.87,
    }
    assert phases_from_log(["unrelated"]) == {}


def test_the_bench_runs_the_units_command_line_with_dummy_weights(tmp_path: Path) -> None:
    argv, env = unit_command("/venv/bin/python", "/tmp/model", 8011)
    defaults = tmp_path / "defaults.env"
    defaults.write_text("VLLM_MODEL_DIR=/tmp/model\nVLLM_SERVED_MODEL_NAME=bench\n")
    unit = parse_unit(UNITS_DIR / "vllm.service")
    unit_env = unit_environment(unit, {"/opt/finsight/etc/vllm.defaults.env": defaults})
    expected = exec_start_argv(unit, {**unit_env, "VLLM_LOAD_FORMAT": "dummy"})
    # Every flag of the unit, with only the interpreter and the port swapped, plus one.
    assert argv[0] == "/venv/bin/python" and argv[1:3] == expected[1:3]
    port = expected.index("--port") + 1
    assert argv[1:port] + argv[port + 1 : -1] == expected[1:port] + expected[port + 1 :]
    assert argv[port] == "8011" and argv[-1] == "--skip-tokenizer-init"
    assert argv[argv.index("--load-format") + 1] == "dummy"
    # The unit's cache environment comes along, so the bench reads the image's caches.
    assert env["VLLM_CACHE_ROOT"] == "/var/cache/vllm"


def test_the_dummy_model_has_the_8b_shape() -> None:
    config = LLAMA_8B_CONFIG
    hidden, layers, inter, vocab = (
        config["hidden_size"],
        config["num_hidden_layers"],
        config["intermediate_size"],
        config["vocab_size"],
    )
    kv = config["num_key_value_heads"] * config["head_dim"]
    assert isinstance(hidden, int) and isinstance(layers, int) and isinstance(kv, int)
    assert isinstance(inter, int) and isinstance(vocab, int)
    per_layer = hidden * (hidden + 2 * kv + hidden) + 3 * hidden * inter
    parameters = layers * per_layer + 2 * vocab * hidden
    # Llama-3.1-8B: 8.03 billion parameters, 16.1 GB in bf16 (cold_start.MODEL_BYTES).
    assert 8.0e9 < parameters < 8.1e9
