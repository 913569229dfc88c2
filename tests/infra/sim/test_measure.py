"""The pure parts of the calibration measurement: lengths sent and streams decoding at once."""

from __future__ import annotations

import pytest

from infra.sim.measure import (
    CONTEXT_MARGIN,
    MeasureError,
    RequestTiming,
    first_wave,
    level_sample,
    plan_lengths,
)


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


def test_level_sample_summarises_a_level() -> None:
    timings = [request(2.0), request(2.2), request(4.0)]

    level = level_sample(3, timings)

    assert (level.concurrency, level.running, level.queued) == (3, 2, True)
    assert level.e2e_s == pytest.approx(2.1)
    assert (level.prompt_tokens, level.output_tokens) == (60, 100)
    assert level.output_tokens_per_s == pytest.approx(300 / 4.0)
