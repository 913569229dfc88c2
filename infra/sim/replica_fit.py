"""Fit the replica model's parameters to what `fleet calibrate` measured on a live server.

Pure: measurements in, a `ReplicaModel` out. The model (see `replica_model.py`) predicts,
for one replica, a time to first token of `overhead + P / (prefill_speedup x decode)` at
concurrency 1, a per-token decode time of `(1 + batch_slowdown x (n - 1)) / decode` with
n sequences running, and at most `max_num_seqs` running; each measurement pins one term.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from infra.sim.replica_model import A10G_VLLM, FIELD_RANGES, ReplicaModel

# Doubling the concurrency must raise aggregate throughput by at least this much to be
# worth it; past that point more sequences only share the same tokens/s.
MIN_THROUGHPUT_GAIN = 0.10


@dataclass(frozen=True)
class PrefillSample:
    """One request alone on the server: its prompt length and time to first token."""

    prompt_tokens: int
    ttft_s: float


@dataclass(frozen=True)
class LevelSample:
    """`concurrency` identical streams started together."""

    concurrency: int
    inter_token_s: float  # median over the streams of seconds per output token after the first
    output_tokens_per_s: float  # all streams' output tokens over the level's wall time
    running: int  # the most streams decoding at the same moment (< concurrency: the rest queued)

    @property
    def queued(self) -> bool:
        return self.running < self.concurrency


@dataclass(frozen=True)
class Fit:
    model: ReplicaModel
    ttft_overhead_s: float  # the time to first token of an empty prompt (HTTP, scheduling)
    notes: tuple[str, ...]


class FitError(ValueError):
    """The measurements cannot determine the model (too few, or degenerate)."""


def _clamped(name: str, value: float, notes: list[str]) -> float:
    low, high = FIELD_RANGES[name]
    if low <= value <= high:
        return value
    bound = low if value < low else high
    notes.append(f"{name}: measured {value:.4g} lies outside {low:g}..{high:g}; using {bound:g}")
    return bound


def _line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares intercept and slope."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return mean_y - slope * mean_x, slope


def concurrency_limit(levels: Sequence[LevelSample], min_gain: float = MIN_THROUGHPUT_GAIN) -> int:
    """How many sequences the server runs usefully at once.

    If the server queued some streams, its own limit is the most it ran at once. If it ran
    every stream, the limit is the last level whose throughput still grew by `min_gain`
    over the level before: admitting more only slows every sequence for no extra tokens/s.
    """
    ordered = sorted(levels, key=lambda level: level.concurrency)
    if any(level.queued for level in ordered):
        return max(level.running for level in ordered)
    knee = ordered[0]
    for level in ordered[1:]:
        if level.output_tokens_per_s < (1 + min_gain) * knee.output_tokens_per_s:
            break
        knee = level
    return knee.concurrency


def fit(
    prefill: Sequence[PrefillSample],
    levels: Sequence[LevelSample],
    base: ReplicaModel = A10G_VLLM,
    min_gain: float = MIN_THROUGHPUT_GAIN,
) -> Fit:
    """The replica model the measurements imply; `notes` says what was clamped or assumed."""
    notes: list[str] = []
    single = [level for level in levels if level.concurrency == 1]
    if not single:
        raise FitError("no measurement at concurrency 1: single-stream decode is unknown")
    seconds_per_token = single[0].inter_token_s
    if seconds_per_token <= 0:
        raise FitError(f"concurrency 1 decoded at {seconds_per_token} s per token")
    decode = _clamped("decode_tokens_per_s", 1.0 / seconds_per_token, notes)

    if len({sample.prompt_tokens for sample in prefill}) < 2:
        raise FitError("time to first token needs at least two different prompt lengths")
    overhead, seconds_per_prompt_token = _line(
        [sample.prompt_tokens for sample in prefill], [sample.ttft_s for sample in prefill]
    )
    if seconds_per_prompt_token <= 0:
        notes.append("prefill_speedup: time to first token did not grow with the prompt")
        prefill_speedup = FIELD_RANGES["prefill_speedup"][1]
    else:
        prefill_speedup = _clamped(
            "prefill_speedup", 1.0 / (seconds_per_prompt_token * decode), notes
        )

    # Slowdown: inter-token time relative to one stream, against the extra streams, on the
    # levels where every stream ran (a line through the origin: no extra, no slowdown).
    batched = [level for level in levels if level.concurrency > 1 and not level.queued]
    if batched:
        extra = [level.concurrency - 1 for level in batched]
        relative = [level.inter_token_s / seconds_per_token - 1 for level in batched]
        slowdown = sum(x * y for x, y in zip(extra, relative, strict=True)) / sum(
            x * x for x in extra
        )
        batch_slowdown = _clamped("batch_slowdown", slowdown, notes)
    else:
        notes.append(
            f"batch_slowdown: no level ran two streams at once; kept {base.batch_slowdown}"
        )
        batch_slowdown = base.batch_slowdown

    limit = concurrency_limit(levels, min_gain)
    top = max(levels, key=lambda level: level.concurrency)
    if limit == top.concurrency and not top.queued:
        notes.append(
            f"max_num_seqs: throughput still grew at the highest concurrency measured "
            f"({top.concurrency}); the server may run more"
        )
    model = dataclasses.replace(
        base,
        decode_tokens_per_s=decode,
        prefill_speedup=prefill_speedup,
        batch_slowdown=batch_slowdown,
        max_num_seqs=int(_clamped("max_num_seqs", limit, notes)),
    )
    return Fit(model=model, ttft_overhead_s=max(overhead, 0.0), notes=tuple(notes))
