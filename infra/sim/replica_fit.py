"""Fit the replica model's parameters to what `fleet calibrate` measured on a live server.

Pure: measurements in, a `ReplicaModel` out. The model (see `replica_model.py`) predicts,
for requests of P prompt and O output tokens started together, n of them running:
- time to first token alone: `overhead + P x prompt_s`, with `prompt_s = 1 / (prefill_speedup
  x decode)` (a line over several prompt lengths gives both terms);
- end to end alone: `overhead + P x prompt_s + O / decode` (gives decode);
- end to end with n running: `overhead + (P x prompt_s x decode + O) x (1 + batch_slowdown x
  (n - 1)) / decode` (gives the slowdown);
- at most `max_num_seqs` run; the rest wait for a place (or, if the server runs them all,
  more than the point where throughput stops growing buys nothing).
Only whole-request times are used: a busy server's API process can deliver a stream's
tokens in one late burst, which would corrupt per-token timings but not end times.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from infra.sim.replica_model import A10G_VLLM, FIELD_RANGES, ReplicaModel

# Doubling the concurrency must raise aggregate throughput by at least this much to be
# worth it; past that point more sequences only share the same tokens/s.
MIN_THROUGHPUT_GAIN = 0.10
# Levels in a row without that gain before the measurement stops doubling.
STALLED_LEVELS = 2


@dataclass(frozen=True)
class PrefillSample:
    """One request alone on the server, for one output token: its time to first token."""

    prompt_tokens: int
    ttft_s: float


@dataclass(frozen=True)
class LevelSample:
    """`concurrency` identical requests started together."""

    concurrency: int
    prompt_tokens: int
    output_tokens: int
    e2e_s: float  # median end-to-end time of the requests that ran at once (the first wave)
    output_tokens_per_s: float  # all requests' output tokens over the level's wall time
    running: int  # how many ran at once (< concurrency: the rest waited for a place)

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


def _growing(levels: Sequence[LevelSample], min_gain: float) -> list[LevelSample]:
    """The levels (by concurrency) that raised throughput by `min_gain` over every level
    below them: the best-so-far rule, so one level slowed by interference breaks nothing."""
    ordered = sorted(levels, key=lambda level: level.concurrency)
    kept = [ordered[0]]
    for level in ordered[1:]:
        if level.output_tokens_per_s >= (1 + min_gain) * kept[-1].output_tokens_per_s:
            kept.append(level)
    return kept


def stalled(levels: Sequence[LevelSample], min_gain: float = MIN_THROUGHPUT_GAIN) -> bool:
    """Whether the last `STALLED_LEVELS` levels added no throughput: time to stop doubling."""
    if len(levels) <= STALLED_LEVELS:
        return False
    grew = _growing(levels, min_gain)
    return not any(level in grew for level in levels[-STALLED_LEVELS:])


def concurrency_limit(levels: Sequence[LevelSample], min_gain: float = MIN_THROUGHPUT_GAIN) -> int:
    """How many sequences the server runs usefully at once.

    If the server made some requests wait, its own limit is the most it ran at once. If it
    ran every request, the limit is the last level whose throughput still grew by
    `min_gain`: admitting more only slows every sequence for no extra tokens/s.
    """
    if any(level.queued for level in levels):
        return max(level.running for level in levels)
    return _growing(levels, min_gain)[-1].concurrency


def fit(
    prefill: Sequence[PrefillSample],
    levels: Sequence[LevelSample],
    base: ReplicaModel = A10G_VLLM,
    min_gain: float = MIN_THROUGHPUT_GAIN,
) -> Fit:
    """The replica model the measurements imply; `notes` says what was clamped or assumed."""
    notes: list[str] = []
    if len({sample.prompt_tokens for sample in prefill}) < 2:
        raise FitError("time to first token needs at least two different prompt lengths")
    overhead, prompt_s = _line(
        [sample.prompt_tokens for sample in prefill], [sample.ttft_s for sample in prefill]
    )
    overhead = max(overhead, 0.0)
    if prompt_s <= 0:
        notes.append("prefill_speedup: time to first token did not grow with the prompt")
        prompt_s = 0.0

    single = [level for level in levels if level.concurrency == 1]
    if not single:
        raise FitError("no measurement at concurrency 1: single-stream decode is unknown")
    alone = single[0]
    decode_s = alone.e2e_s - overhead - alone.prompt_tokens * prompt_s
    if decode_s <= 0:
        raise FitError(
            f"a request alone took {alone.e2e_s:.3f} s, no longer than its time to first token"
        )
    decode = _clamped("decode_tokens_per_s", alone.output_tokens / decode_s, notes)
    if prompt_s == 0:
        prefill_speedup = FIELD_RANGES["prefill_speedup"][1]
    else:
        prefill_speedup = _clamped("prefill_speedup", 1.0 / (prompt_s * decode), notes)

    def slowed(level: LevelSample) -> float:
        """How much slower each request ran than alone: 1 + batch_slowdown x (n - 1)."""
        units = level.prompt_tokens / prefill_speedup + level.output_tokens
        return (level.e2e_s - overhead) * decode / units

    # Slowdown against the extra requests, on the levels where every request ran at once:
    # a line through the origin (no extra request, no slowdown).
    batched = [level for level in levels if level.concurrency > 1 and not level.queued]
    if batched:
        extra = [level.concurrency - 1 for level in batched]
        relative = [slowed(level) - 1 for level in batched]
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
    return Fit(model=model, ttft_overhead_s=overhead, notes=tuple(notes))
