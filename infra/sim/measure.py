"""Measure a live OpenAI-compatible server (vLLM) for `fleet calibrate`: streamed requests
with the reference traffic's prompt and output lengths, bounded in count and time.

Prompts are token ids (the completions API accepts them), random per request so that
vLLM's prefix cache cannot make a prefill free, and generation ignores end-of-sequence so
that every stream yields exactly the output length asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from infra.sim.replica_fit import LevelSample, PrefillSample, stalled
from infra.sim.traffic import Scenario

# Prompt token ids drawn from here: ordinary tokens in any BPE vocabulary of a few hundred
# entries or more (special tokens sit at the ends), so no id is refused or stops generation.
PROMPT_TOKEN_IDS = range(100, 600)
# Prompt lengths for the time-to-first-token line, as fractions of the longest one.
PREFILL_LADDER = (0.125, 0.25, 0.5, 1.0)
PREFILL_REPEATS = 3
# Runs of each concurrency level: alone, and with company.
LEVEL_REPEATS = (3, 2)
MAX_CONCURRENCY = 64
# Room left in the context for the tokens a server adds (BOS and the like).
CONTEXT_MARGIN = 8
# vLLM's gauge of requests in the running batch, polled while a level runs.
RUNNING_METRIC = "vllm:num_requests_running"
METRICS_INTERVAL_S = 0.05


class MeasureError(RuntimeError):
    """The server could not be measured; the message says why, in one line."""


@dataclass(frozen=True)
class Lengths:
    """Token lengths the calibration sends, and a note when they had to be clipped."""

    prefill_prompts: tuple[int, ...]
    level_prompt: int
    output: int
    clipped: str | None = None


REFERENCE = Scenario()


def plan_lengths(max_model_len: int | None, scenario: Scenario = REFERENCE) -> Lengths:
    """The reference traffic's lengths, clipped to the server's context if it is shorter.

    The batch levels use the median prompt and output; the prefill ladder spans up to twice
    the median prompt. A context too short for them shrinks the output to half of it and
    the prompts to what is left, keeping the ladder's proportions.
    """
    output = round(scenario.output_median)
    longest = min(round(2 * scenario.prompt_median), scenario.prompt_range[1])
    level_prompt = round(scenario.prompt_median)
    clipped = None
    if max_model_len is not None and longest + output + CONTEXT_MARGIN > max_model_len:
        output = min(output, max_model_len // 2)
        room = max_model_len - output - CONTEXT_MARGIN
        if room < 16:
            raise MeasureError(
                f"the server's max_model_len {max_model_len} is too short to measure"
            )
        level_prompt = max(1, round(room * level_prompt / longest))
        longest = room
        clipped = (
            f"server max_model_len {max_model_len}: prompts clipped to "
            f"{round(longest * PREFILL_LADDER[0])}-{longest} tokens (reference "
            f"{round(2 * scenario.prompt_median * PREFILL_LADDER[0])}-"
            f"{round(2 * scenario.prompt_median)}), output to {output} "
            f"(reference {round(scenario.output_median)})"
        )
    prompts = tuple(max(1, round(longest * fraction)) for fraction in PREFILL_LADDER)
    return Lengths(prompts, level_prompt, output, clipped)


@dataclass(frozen=True)
class RequestTiming:
    """One streamed request, times in seconds on the monotonic clock."""

    started: float
    finished: float
    prompt_tokens: int
    output_tokens: int

    @property
    def e2e_s(self) -> float:
        return self.finished - self.started


# A request that waited for a place finishes at least one whole service time after the
# ones that ran at once; equal requests running together finish within a fraction of one.
WAVE_GAP = 1.5


def first_wave(
    timings: Sequence[RequestTiming], running_seen: int | None = None
) -> list[RequestTiming]:
    """The requests that ran at once.

    With the server's own count of running requests, the quickest that many; without it,
    those done before `WAVE_GAP` x the quickest one (which a server slow to admit requests
    can blur: their end times spread even when they all ran together).
    """
    if running_seen:  # a count of 0 means every poll fell between requests
        return sorted(timings, key=lambda timing: timing.e2e_s)[: max(running_seen, 1)]
    quickest = min(timing.e2e_s for timing in timings)
    return [timing for timing in timings if timing.e2e_s < WAVE_GAP * quickest]


def level_sample(
    concurrency: int, timings: Sequence[RequestTiming], running_seen: int | None = None
) -> LevelSample:
    wave = first_wave(timings, running_seen)
    wall_s = max(t.finished for t in timings) - min(t.started for t in timings)
    return LevelSample(
        concurrency=concurrency,
        prompt_tokens=round(statistics.median(t.prompt_tokens for t in wave)),
        output_tokens=round(statistics.median(t.output_tokens for t in wave)),
        e2e_s=statistics.median(t.e2e_s for t in wave),
        output_tokens_per_s=sum(t.output_tokens for t in timings) / wall_s,
        running=len(wave),
    )


@dataclass(frozen=True)
class Server:
    base_url: str
    key: str
    model: str
    max_model_len: int | None


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def discover(client: httpx.Client, base_url: str, key: str) -> Server:
    """The served model and its context length, from /v1/models."""
    try:
        response = client.get(f"{base_url}/v1/models", headers=_headers(key))
    except httpx.HTTPError as error:
        raise MeasureError(f"{base_url}/v1/models: {error or type(error).__name__}") from None
    if response.status_code != 200:
        raise MeasureError(f"{base_url}/v1/models answered {response.status_code}")
    try:
        first = response.json()["data"][0]
        model = str(first["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise MeasureError(f"{base_url}/v1/models: no model listed") from None
    max_model_len = first.get("max_model_len")
    return Server(base_url, key, model, int(max_model_len) if max_model_len else None)


async def stream_one(
    client: httpx.AsyncClient, server: Server, prompt_tokens: int, output_tokens: int
) -> RequestTiming:
    """One streamed completion; raises MeasureError unless it yields every token asked for.

    Streamed, as clients call it, though only its start and end are timed (see replica_fit).
    """
    body = {
        "model": server.model,
        "prompt": [random.choice(PROMPT_TOKEN_IDS) for _ in range(prompt_tokens)],
        "max_tokens": output_tokens,
        "min_tokens": output_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.monotonic()
    usage: dict[str, int] = {}
    async with client.stream(
        "POST", f"{server.base_url}/v1/completions", json=body, headers=_headers(server.key)
    ) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")[:200]
            raise MeasureError(f"/v1/completions answered {response.status_code}: {text}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if chunk.get("usage"):
                usage = chunk["usage"]
    finished = time.monotonic()
    produced = int(usage.get("completion_tokens", 0))
    if produced < output_tokens:
        raise MeasureError(f"asked for {output_tokens} tokens, the server produced {produced}")
    # The prompt is token ids, so its length is exact: servers add no BOS to ids.
    return RequestTiming(started, finished, prompt_tokens, produced)


@dataclass
class Budget:
    """How long and how many requests the calibration may still use."""

    deadline: float
    requests_left: int

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def take(self, requests: int) -> bool:
        if requests > self.requests_left or self.remaining_s() <= 0:
            return False
        self.requests_left -= requests
        return True


@dataclass
class Measurements:
    prefill: list[PrefillSample] = field(default_factory=list)
    levels: list[LevelSample] = field(default_factory=list)
    stopped: str = ""  # why the concurrency ladder ended


def running_requests(metrics_text: str) -> int | None:
    """vLLM's `vllm:num_requests_running` from a /metrics page (summed over engines)."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith((RUNNING_METRIC + " ", RUNNING_METRIC + "{"))
    ]
    return round(sum(values)) if values else None


async def _most_running(
    client: httpx.AsyncClient, server: Server, done: asyncio.Event
) -> int | None:
    """The most requests vLLM reported running while `done` was unset; None without /metrics."""
    most: int | None = None
    while not done.is_set():
        try:
            response = await client.get(f"{server.base_url}/metrics")
        except httpx.HTTPError:
            return most
        running = running_requests(response.text) if response.status_code == 200 else None
        if running is None:
            return most
        most = max(most or 0, running)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), METRICS_INTERVAL_S)
    return most


async def _batch(
    client: httpx.AsyncClient,
    server: Server,
    budget: Budget,
    count: int,
    prompt_tokens: int,
    output_tokens: int,
) -> tuple[list[RequestTiming], int | None] | None:
    """`count` streams at once, with the most vLLM reported running meanwhile (None if it
    does not say); None when the budget does not allow them all."""
    if not budget.take(count):
        return None
    done = asyncio.Event()
    watcher = asyncio.create_task(_most_running(client, server, done))
    requests = [stream_one(client, server, prompt_tokens, output_tokens) for _ in range(count)]
    try:
        timings = list(await asyncio.wait_for(asyncio.gather(*requests), budget.remaining_s()))
    except TimeoutError:
        return None
    finally:
        done.set()
        most_running = await watcher
    return timings, most_running


async def measure(
    server: Server,
    lengths: Lengths,
    budget: Budget,
    say: Callable[[str], None],
    max_concurrency: int = MAX_CONCURRENCY,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Measurements:
    """Warm up, then the prefill ladder alone, then doubling concurrency until throughput
    stops growing or the budget runs out."""
    found = Measurements()
    limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=8)
    timeout = httpx.Timeout(
        connect=10.0, read=max(budget.remaining_s(), 1.0), write=10.0, pool=None
    )
    async with httpx.AsyncClient(limits=limits, timeout=timeout, transport=transport) as client:
        if await _batch(client, server, budget, 1, lengths.level_prompt, lengths.output) is None:
            raise MeasureError("the budget ran out during the warm-up request")
        for prompt in lengths.prefill_prompts:
            # A request for one token ends at its first: its end time is its TTFT. The
            # quickest of a few is the server's own time; the others met interference.
            quickest: RequestTiming | None = None
            for _ in range(PREFILL_REPEATS):
                batch = await _batch(client, server, budget, 1, prompt, 1)
                if batch is None:
                    raise MeasureError("the budget ran out while measuring time to first token")
                timing = batch[0][0]
                if quickest is None or timing.e2e_s < quickest.e2e_s:
                    quickest = timing
            assert quickest is not None
            found.prefill.append(PrefillSample(quickest.prompt_tokens, quickest.e2e_s))
        say(
            "time to first token alone: "
            + ", ".join(f"{s.prompt_tokens} tok {s.ttft_s * 1000:.1f} ms" for s in found.prefill)
        )
        concurrency = 1
        while concurrency <= max_concurrency:
            # The best of a few runs: a slower one met interference from outside the server.
            runs: list[LevelSample] = []
            for _ in range(LEVEL_REPEATS[0] if concurrency == 1 else LEVEL_REPEATS[1]):
                batch = await _batch(
                    client, server, budget, concurrency, lengths.level_prompt, lengths.output
                )
                if batch is None:
                    break
                runs.append(level_sample(concurrency, *batch))
            if not runs:
                found.stopped = (
                    f"the time or request budget ran out before concurrency {concurrency}"
                )
                break
            level = max(runs, key=lambda run: run.output_tokens_per_s)
            found.levels.append(level)
            say(
                f"concurrency {concurrency:3d}: {level.e2e_s:7.2f} s per request, "
                f"{level.output_tokens_per_s:8.1f} tokens/s in all, {level.running} ran at once"
            )
            if stalled(found.levels):
                found.stopped = f"throughput stopped growing at concurrency {concurrency}"
                break
            concurrency *= 2
        else:
            found.stopped = f"reached the highest concurrency tried ({max_concurrency})"
    return found
