"""The replica model refuses parameters outside their range and round-trips through TOML."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infra.sim.replica_model import (
    A10G_VLLM,
    ReplicaModel,
    ReplicaModelError,
    load_replica,
    replica_toml,
)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("decode_tokens_per_s", 0.0, "between 0.1 and 100000"),
        ("decode_tokens_per_s", float("inf"), "between 0.1 and 100000"),
        ("batch_slowdown", -0.1, "between 0 and 10"),
        ("prefill_speedup", "fast", "must be a number"),
        ("max_num_seqs", 0, "between 1 and 4096"),
        ("max_num_seqs", 12.5, "whole number"),
        ("max_num_seqs", True, "whole number"),
    ],
)
def test_a_field_out_of_range_is_refused_naming_it_and_its_range(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ReplicaModelError, match=f"^{field}: .*{message}"):
        dataclasses.replace(A10G_VLLM, **{field: value})


def test_toml_round_trip(tmp_path: Path) -> None:
    model = ReplicaModel(
        decode_tokens_per_s=41.25, batch_slowdown=0.061, prefill_speedup=87.5, max_num_seqs=9
    )
    path = tmp_path / "replica.toml"
    path.write_text(replica_toml(model, ["measured somewhere"]))

    assert load_replica(path) == model


def test_a_partial_file_keeps_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "replica.toml"
    path.write_text("max_num_seqs = 20\n")

    assert load_replica(path) == dataclasses.replace(A10G_VLLM, max_num_seqs=20)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[replica]\nbatch_slowdown = 12.0\n", "batch_slowdown: must be between 0 and 10"),
        ("[replica]\nmax_seqs = 3\n", "max_seqs: unknown field; allowed: batch_slowdown"),
        ("[replica\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "replica.toml"
    path.write_text(text)

    with pytest.raises(ReplicaModelError, match=message):
        load_replica(path)
