"""Measure vLLM's engine-start phases on a GPU machine, in ami/README.md's timeline format.

Run on a g5.xlarge (or any CUDA machine) with vLLM installed, from the repository's root:

    python -m bench.gpu_engine_start --python /opt/finsight/vllm/bin/python
    python -m bench.gpu_engine_start --read PATH/TO/WEIGHTS   # also time a real disk read

It starts `vllm.service`'s own command line (read from ami/systemd/vllm.service: same flags,
same cache environment) on a model directory holding only the 8B model's config
(Llama-3.1-8B's shape) with `--load-format dummy`: no download, random weights of the real
size, so load, compile, graph capture and the first token are what an instance pays, minus
the disk. The disk is measured apart: `--disk-gb` writes and reads back a file of that size
(page cache dropped when run as root), `--read` reads an existing directory (the baked
weights on a fresh volume: the lazy-loading figure). Not run by `make bench` (no GPU here).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "ami" / "systemd" / "vllm.service"
# Llama-3.1-8B-Instruct's config.json (the shape that matters: 32 layers, 4096 wide,
# 8 KV heads, 128k vocabulary, bf16).
LLAMA_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
}

# vLLM's own log lines for each phase (v1 engine, 0.3x): seconds in the first group.
LOG_PHASES = {
    "weights-load": re.compile(r"Model loading took [\d.]+ GiB(?: memory)? and ([\d.]+) seconds"),
    "compile": re.compile(r"torch\.compile took ([\d.]+) s in total"),
    "graph-capture": re.compile(r"Graph capturing finished in ([\d.]+) secs"),
    "engine-init": re.compile(
        r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+)"
    ),
}


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    how: str


def phases_from_log(lines: Iterable[str]) -> dict[str, float]:
    """The phase durations vLLM logs, by name (the last occurrence wins)."""
    found: dict[str, float] = {}
    for line in lines:
        for name, pattern in LOG_PHASES.items():
            match = pattern.search(line)
            if match:
                found[name] = float(match.group(1))
    return found


def unit_command(python: str, model_dir: str, port: int) -> tuple[list[str], dict[str, str]]:
    """vllm.service's ExecStart and Environment=, with the model, port and loader swapped."""
    text = UNIT.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    command = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Environment="):
            for word in shlex.split(line.removeprefix("Environment=")):
                key, _, value = word.partition("=")
                env[key] = value
        elif line.startswith("ExecStart="):
            command = line.removeprefix("ExecStart=")
    values = {
        **env,
        "VLLM_MODEL_DIR": model_dir,
        "VLLM_SERVED_MODEL_NAME": "bench",
        "VLLM_LOAD_FORMAT": "dummy",
    }
    argv = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: shlex.quote(values[m.group(1)]), command))
    argv[0] = python
    argv[argv.index("--port") + 1] = str(port)
    # No tokenizer in a config-only directory: the first token is asked for by token ids.
    argv.append("--skip-tokenizer-init")
    return argv, env


def _get(url: str, body: dict[str, object] | None = None, timeout: float = 5) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except (urllib.error.URLError, OSError):
        return 0


def measure_engine(
    python: str, port: int, deadline_s: float, cache_root: str | None
) -> list[Phase]:
    with tempfile.TemporaryDirectory() as model_dir:
        (Path(model_dir) / "config.json").write_text(json.dumps(LLAMA_8B_CONFIG))
        argv, unit_env = unit_command(python, model_dir, port)
        env = {**os.environ, **unit_env}
        if cache_root is not None:
            for key in ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR"):
                env[key] = env[key].replace("/var/cache/vllm", cache_root)
        log_path = Path(model_dir) / "vllm.log"
        started = time.monotonic()
        with log_path.open("w") as log:
            server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            while _get(f"{base}/health") != 200:
                if server.poll() is not None or time.monotonic() - started > deadline_s:
                    sys.stderr.write(log_path.read_text()[-4000:])
                    raise SystemExit("vLLM did not become healthy")
                time.sleep(0.5)
            healthy = time.monotonic() - started
            body = {"model": "bench", "prompt": [128000, 791, 3485], "max_tokens": 1}
            first = time.monotonic()
            status = _get(f"{base}/v1/completions", body, timeout=120)
            first_token = time.monotonic() - first
            if status != 200:
                raise SystemExit(f"the first completion answered {status}")
        finally:
            server.terminate()
            server.wait(timeout=60)
        logged = phases_from_log(log_path.read_text().splitlines())
    accounted = sum(logged.get(name, 0.0) for name in ("weights-load", "engine-init"))
    nan = float("nan")
    return [
        Phase("vllm-process-start", max(healthy - accounted, 0.0), "to healthy minus the logged"),
        Phase("weights-load", logged.get("weights-load", nan), "Model loading took (dummy)"),
        Phase("compile", logged.get("compile", nan), "torch.compile took (in engine-init)"),
        Phase("graph-capture", logged.get("graph-capture", nan), "Graph capturing finished in"),
        Phase("engine-init", logged.get("engine-init", nan), "profile, KV cache, warm-up"),
        Phase("first-token", first_token, "first 1-token completion after healthy"),
    ]


def measure_disk(gb: float, directory: Path) -> Phase:
    """Write `gb` of data, drop the page cache (as root), read it back in 16 MiB blocks."""
    path = directory / "bench-weights.bin"
    block = os.urandom(16 * 1024**2)
    with path.open("wb") as handle:
        for _ in range(int(gb * 1e9 // len(block))):
            handle.write(block)
        os.fsync(handle.fileno())
    try:
        return _read_phase([path], f"{gb:g} GB written then read back")
    finally:
        path.unlink()


def _read_phase(paths: list[Path], how: str) -> Phase:
    if os.geteuid() == 0:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    started, total = time.monotonic(), 0
    for path in paths:
        with path.open("rb", buffering=0) as handle:
            while chunk := handle.read(16 * 1024**2):
                total += len(chunk)
    seconds = time.monotonic() - started
    rate = total / 1e6 / seconds
    return Phase("disk-read", seconds, f"{how}: {total / 1e9:.1f} GB at {rate:.0f} MB/s")


def print_timeline(phases: list[Phase]) -> None:
    print("| phase | measured s | how |")
    print("|---|---|---|")
    for phase in phases:
        print(f"| `{phase.name}` | {phase.seconds:.1f} | {phase.how} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the venv's python with vLLM")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--deadline-s", type=float, default=1200)
    parser.add_argument("--cache-root", help="another compile cache than /var/cache/vllm")
    parser.add_argument("--disk-gb", type=float, default=0, help="write and read back this much")
    parser.add_argument("--disk-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--read", type=Path, help="read every file under this directory")
    args = parser.parse_args(argv)
    phases = measure_engine(args.python, args.port, args.deadline_s, args.cache_root)
    if args.disk_gb > 0:
        phases.append(measure_disk(args.disk_gb, args.disk_dir))
    if args.read is not None:
        files = sorted(p for p in args.read.rglob("*") if p.is_file())
        phases.append(_read_phase(files, f"{args.read}"))
    print_timeline(phases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
