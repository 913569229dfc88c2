"""The pure parts of the calibration measurement: lengths sent and streams decoding at once."""

from __future__ import annotations

import pytest

from infra.sim.measure import (
    CONTEXT_MARGIN,
    MeasureError,
    StreamTiming,
    decoding_at_once,
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


def stream(first: float, last: float, tokens: int = 11) -> StreamTiming:
    return StreamTiming(0.0, first, last, 100, tokens)


def test_streams_decoding_together_are_counted_together() -> None:
    timings = [stream(1.0, 2.0), stream(1.01, 2.02), stream(1.02, 1.98)]

    assert decoding_at_once(timings) == 3


def test_a_queued_stream_starting_as_another_ends_is_not_counted_with_it() -> None:
    # GIVEN room for two: the third starts decoding a hair before the first one's last token
    # arrives (client-side jitter)
    timings = [stream(1.0, 2.0), stream(1.0, 2.0), stream(1.99, 3.0)]

    assert decoding_at_once(timings) == 2


def test_level_sample_summarises_a_level() -> None:
    timings = [StreamTiming(0.0, 0.5, 1.5, 100, 11), StreamTiming(0.0, 0.5, 2.5, 100, 11)]

    level = level_sample(2, timings)

    assert level.inter_token_s == pytest.approx(0.15)
    assert level.output_tokens_per_s == pytest.approx(22 / 2.5)
    assert level.running == 2
