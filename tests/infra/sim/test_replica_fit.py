"""The replica fit recovers known parameters from measurements the model itself predicts."""

from __future__ import annotations

import dataclasses

import pytest

from infra.sim.replica_fit import (
    FitError,
    LevelSample,
    PrefillSample,
    concurrency_limit,
    fit,
    stalled,
)
from infra.sim.replica_model import A10G_VLLM, ReplicaModel

PROMPTS = (312, 625, 1250, 2500, 5000)
LEVELS = (1, 2, 4, 8, 16, 32, 64)
OVERHEAD_S = 0.035
PROMPT, OUTPUT = 2_500, 300


def predicted(
    model: ReplicaModel, levels: tuple[int, ...] = LEVELS
) -> tuple[list[PrefillSample], list[LevelSample]]:
    """What a server that is exactly `model` would show, plus a fixed per-request overhead."""
    single = model.per_sequence_speed(1)
    prefill = [
        PrefillSample(prompt, OVERHEAD_S + model.prefill_units(prompt) / single)
        for prompt in PROMPTS
    ]
    samples = []
    for concurrency in levels:
        running = min(concurrency, model.max_num_seqs)
        e2e_s = OVERHEAD_S + (model.prefill_units(PROMPT) + OUTPUT) / model.per_sequence_speed(
            running
        )
        throughput = running * OUTPUT / e2e_s
        samples.append(LevelSample(concurrency, PROMPT, OUTPUT, e2e_s, throughput, running))
    return prefill, samples


@pytest.mark.parametrize(
    "model",
    [
        A10G_VLLM,
        ReplicaModel(
            decode_tokens_per_s=55.0, batch_slowdown=0.03, prefill_speedup=40.0, max_num_seqs=20
        ),
        ReplicaModel(
            decode_tokens_per_s=7.5, batch_slowdown=0.5, prefill_speedup=250.0, max_num_seqs=5
        ),
    ],
    ids=["a10g-defaults", "fast-wide", "slow-narrow"],
)
def test_fit_recovers_the_parameters_of_a_server_that_queues(model: ReplicaModel) -> None:
    prefill, levels = predicted(model)

    result = fit(prefill, levels)

    assert result.model.decode_tokens_per_s == pytest.approx(model.decode_tokens_per_s)
    assert result.model.prefill_speedup == pytest.approx(model.prefill_speedup)
    assert result.model.batch_slowdown == pytest.approx(model.batch_slowdown)
    assert result.model.max_num_seqs == model.max_num_seqs
    assert result.ttft_overhead_s == pytest.approx(OVERHEAD_S)
    assert result.notes == ()


def test_without_queueing_the_limit_is_where_throughput_stops_growing() -> None:
    # GIVEN a compute-bound server that runs every request: throughput per level
    # 1, 1.33, 1.6, 1.78, 1.88, 1.94 x one request's; the last two add under 10% over 8
    model = ReplicaModel(batch_slowdown=0.5, max_num_seqs=4_096)
    prefill, levels = predicted(model, (1, 2, 4, 8, 16, 32))

    result = fit(prefill, levels)

    assert result.model.max_num_seqs == 8
    assert result.model.batch_slowdown == pytest.approx(0.5)


def level(concurrency: int, tokens_per_s: float, running: int | None = None) -> LevelSample:
    ran = concurrency if running is None else running
    return LevelSample(concurrency, 100, 100, 1.0, tokens_per_s, ran)


@pytest.mark.parametrize(
    ("throughputs", "stop"),
    [
        ([100, 190, 350], False),
        ([100, 190, 200], False),  # one level without gain may be interference
        ([100, 190, 200, 205], True),
        ([100, 90, 180, 170], False),  # a slow level, then growth over the best again
        ([100, 90, 105], True),
    ],
)
def test_the_ladder_stops_after_two_levels_without_gain(
    throughputs: list[float], stop: bool
) -> None:
    levels = [level(2**i, tp) for i, tp in enumerate(throughputs)]
    assert stalled(levels) is stop


def test_one_slowed_level_does_not_set_the_knee() -> None:
    levels = [level(1, 100), level(2, 95), level(4, 300), level(8, 310), level(16, 300)]
    assert concurrency_limit(levels) == 4


def test_a_limit_above_every_level_tried_is_reported_as_a_lower_bound() -> None:
    prefill, levels = predicted(ReplicaModel(batch_slowdown=0.01, max_num_seqs=500), (1, 2, 4, 8))

    result = fit(prefill, levels)

    assert result.model.max_num_seqs == 8
    assert any("may run more" in note for note in result.notes)


def test_out_of_range_measurements_are_clamped_and_said() -> None:
    prefill, levels = predicted(A10G_VLLM)
    flat_prefill = [dataclasses.replace(sample, ttft_s=0.05) for sample in prefill]

    result = fit(flat_prefill, levels)

    assert result.model.prefill_speedup == 100_000
    assert any("did not grow with the prompt" in note for note in result.notes)


def test_concurrency_limit_of_a_queueing_server_is_the_most_it_ran() -> None:
    levels = [
        LevelSample(1, 100, 100, 3.0, 33, 1),
        LevelSample(8, 100, 100, 5.0, 160, 8),
        LevelSample(16, 100, 100, 6.0, 170, 11),
    ]
    assert concurrency_limit(levels) == 11


@pytest.mark.parametrize(
    ("prefill", "levels", "missing"),
    [
        (
            [PrefillSample(100, 0.1), PrefillSample(200, 0.2)],
            [LevelSample(2, 10, 10, 1.0, 20, 2)],
            "concurrency 1",
        ),
        (
            [PrefillSample(100, 0.1), PrefillSample(100, 0.2)],
            [LevelSample(1, 10, 10, 1.0, 10, 1)],
            "two different",
        ),
    ],
)
def test_fit_refuses_measurements_that_cannot_determine_the_model(
    prefill: list[PrefillSample], levels: list[LevelSample], missing: str
) -> None:
    with pytest.raises(FitError, match=missing):
        fit(prefill, levels)
