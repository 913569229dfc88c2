"""How fast one replica (vLLM with continuous batching on one A10G) serves requests.

All service-time parameters live here, each with where it comes from. The model is
processor sharing: every running sequence advances at the same per-sequence speed, which
falls as more sequences share the GPU; beyond `max_num_seqs` requests wait in a FIFO queue.

Work is counted in decode-token equivalents: an output token is one unit, a prompt token
is `1 / prefill_speedup` of a unit (prefill processes the prompt in parallel, so it costs
far less GPU time per token than decoding). The first token appears once the prompt's
share is done; the request ends after its output tokens.

Approximation, documented: vLLM interleaves a new request's prefill with the running
decodes (chunked prefill), which briefly slows all of them; here each sequence simply
receives an equal share, so a long prompt slows only itself. The error is small at the
prompt/output ratios below and errs toward optimistic time to first token under bursts.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The range each field accepts, inclusive: wide enough for any GPU or CPU a replica could
# run on, narrow enough that a unit slip (ms for s, a fraction for a factor) is refused.
FIELD_RANGES: dict[str, tuple[float, float]] = {
    "decode_tokens_per_s": (0.1, 100_000.0),
    "batch_slowdown": (0.0, 10.0),
    "prefill_speedup": (0.1, 100_000.0),
    "max_num_seqs": (1, 4_096),
}


class ReplicaModelError(ValueError):
    """A replica parameter outside its range; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ReplicaModel:
    """One g5.xlarge (A10G, 24 GB) serving an 8B model in bf16 with vLLM."""

    # Single-stream decode speed. Decoding is memory-bound: each step reads all weights
    # once. A10G: 600 GB/s (NVIDIA A10/A10G datasheet); Llama-3.1-8B in bf16: 16 GB of
    # weights -> at most 37 steps/s; vLLM reaches about 85% of that on A10G-class parts.
    decode_tokens_per_s: float = 32.0
    # Per-sequence slowdown per extra running sequence: a batch of n reads the weights once
    # but adds n sequences' KV-cache reads and sampling. 0.08 gives 12 sequences about
    # 17 tokens/s each, ~200 tokens/s in aggregate, in line with published vLLM A10G
    # throughput for 7-8B models at long (2-4k token) contexts.
    batch_slowdown: float = 0.08
    # Prefill is compute-bound: 8B params x 2 FLOP/token = 16 GFLOP per prompt token; the
    # A10G's ~125 TFLOPS bf16 tensor peak at ~40% utilisation (large prefill batches keep
    # the tensor cores busy) gives ~3,200 prompt tokens/s, i.e. 100x the single-stream
    # decode speed.
    prefill_speedup: float = 100.0
    # Concurrency is bounded by KV cache, not compute: 24 GB - 16 GB weights - ~2 GB of
    # activations and CUDA graphs leaves ~5.5 GB; Llama-3.1-8B stores 128 KiB per token
    # (32 layers x 8 KV heads x 128 dims x 2 (K, V) x 2 bytes), so ~42k tokens: about
    # 12 sequences of the reference scenario's ~3.5k-token (prompt + output) requests.
    max_num_seqs: int = 12

    def __post_init__(self) -> None:
        for name, (low, high) in FIELD_RANGES.items():
            value = getattr(self, name)
            whole = name == "max_num_seqs"
            kind = "a whole number" if whole else "a number"
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ReplicaModelError(name, f"must be {kind}, got {value!r}")
            if whole and not isinstance(value, int):
                raise ReplicaModelError(name, f"must be {kind}, got {value!r}")
            if not (math.isfinite(value) and low <= value <= high):
                raise ReplicaModelError(
                    name, f"must be between {low:g} and {high:g}, got {value!r}"
                )

    def per_sequence_speed(self, running: int) -> float:
        """Decode-token equivalents per second each running sequence receives."""
        if running <= 0:
            return 0.0
        return self.decode_tokens_per_s / (1.0 + self.batch_slowdown * (running - 1))

    def speed_table(self) -> list[float]:
        """Per-sequence speed indexed by running count, 0..max_num_seqs (for the hot loop)."""
        return [self.per_sequence_speed(n) for n in range(self.max_num_seqs + 1)]

    def prefill_units(self, prompt_tokens: int) -> float:
        return prompt_tokens / self.prefill_speedup


A10G_VLLM = ReplicaModel()


def replica_from_mapping(values: dict[str, Any], base: ReplicaModel = A10G_VLLM) -> ReplicaModel:
    """`base` with the fields `values` lists; an unknown or out-of-range field is refused."""
    known = {f.name for f in dataclasses.fields(ReplicaModel)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ReplicaModelError(unknown[0], f"unknown field; allowed: {', '.join(sorted(known))}")
    return dataclasses.replace(base, **values)


def load_replica(path: Path) -> ReplicaModel:
    """A replica model from TOML (`fleet calibrate` writes one); missing fields keep defaults.

    The fields sit at the top level or under a `[replica]` table.
    """
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise ReplicaModelError(str(path), f"cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ReplicaModelError(str(path), f"not valid TOML: {error}") from None
    table = data.get("replica", data)
    if not isinstance(table, dict):
        raise ReplicaModelError("replica", "must be a table")
    fields = {k: v for k, v in table.items() if not isinstance(v, dict)}
    return replica_from_mapping(fields)


def replica_toml(model: ReplicaModel, comments: list[str] | None = None) -> str:
    """The TOML `load_replica` reads, with `comments` (one line each) on top."""
    lines = [f"# {line}" for line in comments or []]
    lines.append("[replica]")
    for name in FIELD_RANGES:
        value = getattr(model, name)
        shown = value if isinstance(value, int) else float(f"{value:.6g}")
        lines.append(f"{name} = {shown!r}")
    return "\n".join(lines) + "\n"
