"""The replica fit recovers known parameters from measurements the model itself predicts."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from infra.sim.replica_fit import (
    FitError,
    LevelSample,
    PrefillSample,
    concurrency_limit,
    fit,
)
from infra.sim.replica_model import A10G_VLLM, ReplicaModel

PROMPTS = (312, 625, 1250, 2500, 5000)
LEVELS = (1, 2, 4, 8, 16, 32, 64)
OVERHEAD_S = 0.035


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
        speed = model.per_sequence_speed(running)
        samples.append(LevelSample(concurrency, 1 / speed, running * speed, running))
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
    # GIVEN a compute-bound server that runs every stream: each doubling adds less
    model = ReplicaModel(batch_slowdown=0.5, max_num_seqs=4_096)
    prefill, levels = predicted(model)
    gains = [b.output_tokens_per_s / a.output_tokens_per_s for a, b in itertools.pairwise(levels)]
    knee = next(i for i, gain in enumerate(gains) if gain < 1.10)

    result = fit(prefill, levels)

    assert result.model.max_num_seqs == LEVELS[knee]
    assert result.model.batch_slowdown == pytest.approx(0.5)


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
        LevelSample(1, 0.03, 33, 1),
        LevelSample(8, 0.05, 160, 8),
        LevelSample(16, 0.06, 170, 11),
    ]
    assert concurrency_limit(levels) == 11


@pytest.mark.parametrize(
    ("prefill", "levels", "missing"),
    [
        (
            [PrefillSample(100, 0.1), PrefillSample(200, 0.2)],
            [LevelSample(2, 0.1, 20, 2)],
            "concurrency 1",
        ),
        (
            [PrefillSample(100, 0.1), PrefillSample(100, 0.2)],
            [LevelSample(1, 0.1, 10, 1)],
            "two different",
        ),
    ],
)
def test_fit_refuses_measurements_that_cannot_determine_the_model(
    prefill: list[PrefillSample], levels: list[LevelSample], missing: str
) -> None:
    with pytest.raises(FitError, match=missing):
        fit(prefill, levels)
