"""The pure parts of the calibration measurement: lengths sent and streams decoding at once."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from infra.sim.measure import (
    CONTEXT_MARGIN,
    Budget,
    MeasureError,
    Measurements,
    RequestTiming,
    Server,
    first_wave,
    level_sample,
    measure,
    plan_lengths,
    running_requests,
)
from infra.sim.replica_fit import fit
from tests.fakes.fake_vllm import FakeVllm, FakeVllmConfig


def test_a_long_context_gets_the_reference_lengths_unclipped() -> None:
    lengths = plan_lengths(8_192)

    assert lengths.prefill_prompts == (625, 1250, 2500, 5000)
    assert (lengths.level_prompt, lengths.output) == (2500, 300)
    assert lengths.clipped is None


def test_an_unknown_context_is_assumed_to_fit() -> None:
    assert plan_lengths(None).clipped is None


def test_a_short_context_clips_every_length_into_it_and_says_so() -> None:
    lengths = plan_lengths(256)

    assert lengths.output == 128
    assert max(lengths.prefill_prompts) + lengths.output + CONTEXT_MARGIN <= 256
    assert lengths.level_prompt + lengths.output <= 256
    assert len(set(lengths.prefill_prompts)) == 4  # still a ladder to fit a line to
    assert lengths.clipped is not None and "max_model_len 256" in lengths.clipped


def test_a_context_too_short_to_measure_is_refused() -> None:
    with pytest.raises(MeasureError, match="too short"):
        plan_lengths(32)


def request(e2e_s: float, tokens: int = 100) -> RequestTiming:
    return RequestTiming(0.0, e2e_s, 60, tokens)


def test_requests_running_together_are_one_wave() -> None:
    timings = [request(2.0), request(2.1), request(2.3)]

    assert first_wave(timings) == timings


def test_requests_that_waited_for_a_place_are_not_in_the_first_wave() -> None:
    # GIVEN room for two: the third starts when one of them ends
    timings = [request(2.0), request(2.05), request(4.1)]

    assert first_wave(timings) == timings[:2]


def test_the_servers_count_of_running_requests_sets_the_first_wave() -> None:
    # GIVEN a server slow to admit requests: four ran together, their ends spread widely
    timings = [request(1.0), request(1.7), request(2.4), request(3.0), request(6.0)]

    assert first_wave(timings, running_seen=4) == timings[:4]
    assert first_wave(timings, running_seen=0) == timings[:1]  # no count: end times alone


def test_running_requests_reads_vllms_gauge() -> None:
    page = (
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0",model_name="m"} 7.0\n'
        'vllm:num_requests_running_total{engine="0"} 99.0\n'
        'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0\n'
    )
    assert running_requests(page) == 7
    assert running_requests("gateway_requests_total 5\n") is None


def test_level_sample_summarises_a_level() -> None:
    timings = [request(2.0), request(2.2), request(4.0)]

    level = level_sample(3, timings)

    assert (level.concurrency, level.running, level.queued) == (3, 2, True)
    assert level.e2e_s == pytest.approx(2.1)
    assert (level.prompt_tokens, level.output_tokens) == (60, 100)
    assert level.output_tokens_per_s == pytest.approx(300 / 4.0)


def measure_fake(
    config: FakeVllmConfig, budget: Budget, max_concurrency: int = 8
) -> tuple[Measurements, list[str]]:
    said: list[str] = []
    fake = FakeVllm(config)
    server = Server("http://fake-vllm", "key", config.model, config.max_model_len)
    found = asyncio.run(
        measure(
            server,
            plan_lengths(config.max_model_len),
            budget,
            said.append,
            max_concurrency=max_concurrency,
            transport=httpx.ASGITransport(app=fake.app),
        )
    )
    return found, said


def test_measure_finds_the_decode_speed_and_the_slots_of_a_fake_vllm() -> None:
    # GIVEN a server with 3 slots that takes 1 ms per token whatever runs beside it
    config = FakeVllmConfig(tokens=128, token_delay_ms=1.0, slots=3)

    found, said = measure_fake(config, Budget(time.monotonic() + 60, 300))
    result = fit(found.prefill, found.levels)

    assert [level.concurrency for level in found.levels] == [1, 2, 4, 8]
    assert [level.running for level in found.levels] == [1, 2, 3, 3]
    assert result.model.max_num_seqs == 3
    # 1 ms per token, plus the event loop's own time per token
    assert 250 < result.model.decode_tokens_per_s <= 1_000
    assert result.model.batch_slowdown < 0.1
    assert any(line.startswith("concurrency   4:") for line in said)


def test_measure_stops_within_its_request_budget() -> None:
    config = FakeVllmConfig(tokens=128, slots=8)

    found, _ = measure_fake(config, Budget(time.monotonic() + 60, 1 + 12 + 3 + 2 * 2 + 1))

    assert [level.concurrency for level in found.levels] == [1, 2]
    assert "budget ran out before concurrency 4" in found.stopped
