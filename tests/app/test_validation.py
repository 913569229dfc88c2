"""Validation of generation requests: prompt shapes, sequences, token caps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.errors import GatewayError
from app.tenants import Tenant
from app.validation import GenerationRequest, count_prompts, validate_generation

MODEL = "m"
TENANT = Tenant("acme", max_concurrent_requests=8, max_tokens=64)


def validate(
    body: dict[str, Any] | bytes, *, chat: bool = False, **limits: Any
) -> GenerationRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    options: dict[str, Any] = {"max_n": 4, "max_prompts": 4, "max_sequences": 8} | limits
    return validate_generation(
        raw, chat=chat, tenant=TENANT, models=frozenset({MODEL, "other"}), **options
    )


def refusal(body: dict[str, Any] | bytes, *, chat: bool = False, **limits: Any) -> GatewayError:
    with pytest.raises(GatewayError) as refused:
        validate(body, chat=chat, **limits)
    return refused.value


def completion(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "hello", "max_tokens": 8, **extra}


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}


# ------------------------------------------------------------- finding 1: prompts x n


@pytest.mark.parametrize(
    ("prompt", "count"),
    [
        ("one", 1),
        ([1, 2, 3], 1),  # token ids: one prompt
        (["a", "b", "c"], 3),
        ([[1, 2], [3]], 2),  # arrays of token ids: one prompt each
        (["a"] * 4, 4),
        ([7] * 1000, 1),  # a long tokenized prompt is still one
    ],
)
def test_prompt_shapes_and_how_many_prompts_they_are(prompt: Any, count: int) -> None:
    assert count_prompts(prompt, 4) == count
    assert validate(completion(prompt=prompt)).sequences == count


@pytest.mark.parametrize(
    "prompt",
    [
        [],
        [[]],
        [1, "a"],
        ["a", 1],
        [[1], "a"],
        [[1, -2]],
        [-1],
        [True, False],
        [[True]],
        [1.5],
        [None],
        [{"a": 1}],
        {"text": "a"},
        7,
    ],
)
def test_malformed_prompts_are_refused_naming_the_shapes(prompt: Any) -> None:
    error = refusal(completion(prompt=prompt))
    assert (error.status, error.param) == (400, "prompt")
    assert "array of token ids" in error.message


def test_more_prompts_than_the_bound_is_400_before_anything_is_counted() -> None:
    # The review's case: 5,000 prompts under one request.
    error = refusal(completion(prompt=["x"] * 5000))
    assert (error.status, error.param) == (400, "prompt")
    assert "holds 5000 prompts; at most 4" in error.message
    assert refusal(completion(prompt=[[1]] * 5)).param == "prompt"


def test_sequences_are_prompts_times_n_and_more_than_can_ever_be_granted_is_400() -> None:
    assert validate(completion(prompt=["a", "b"], n=4)).sequences == 8
    assert validate(chat(n=3), chat=True).sequences == 3
    error = refusal(completion(prompt=["a", "b", "c"], n=3))
    assert (error.status, error.param) == (400, "prompt")
    assert "9 sequences (3 prompts x n=3)" in error.message and "8" in error.message
    error = refusal(completion(n=3), max_sequences=2)
    assert (error.status, error.param) == (400, "n")
    assert "3 sequences (n=3)" in error.message
