"""Validation of generation requests: allowed fields, prompt shapes, sequences, token caps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.errors import GatewayError
from app.tenants import Tenant
from app.validation import (
    CHAT_FIELDS,
    COMPLETION_FIELDS,
    GenerationRequest,
    count_prompts,
    validate_generation,
)

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


# ------------------------------------------------------------ finding 2: token caps


def test_a_missing_max_tokens_is_filled_with_the_tenants_cap() -> None:
    # The review's case: min_tokens and ignore_eos without max_tokens.
    body = {"model": MODEL, "prompt": "x", "min_tokens": 8, "ignore_eos": True}
    forwarded = json.loads(validate(body).body)
    assert forwarded == {**body, "max_tokens": 64}
    # Trailing whitespace, and non-ASCII text, survive the splice.
    raw = b'{"model": "m", "prompt": "caf\xc3\xa9"}\r\n\t '
    assert json.loads(validate(raw).body) == {"model": "m", "prompt": "café", "max_tokens": 64}
    # An explicit null is rewritten rather than duplicated.
    nulled = validate(completion(max_tokens=None)).body
    assert nulled.count(b"max_tokens") == 1 and json.loads(nulled)["max_tokens"] == 64
    forwarded_chat = json.loads(validate(chat(), chat=True).body)
    assert forwarded_chat["max_tokens"] == 64


def test_a_body_that_sets_its_cap_is_forwarded_byte_for_byte() -> None:
    raw = json.dumps(completion(max_tokens=8), indent=2).encode()
    assert validate(raw).body is raw
    raw = json.dumps(chat(max_completion_tokens=5)).encode()
    assert validate(raw, chat=True).body is raw


def test_max_completion_tokens_and_max_tokens_must_agree_and_each_is_capped() -> None:
    assert validate(chat(max_tokens=5, max_completion_tokens=5), chat=True).body
    error = refusal(chat(max_tokens=5, max_completion_tokens=9), chat=True)
    assert (error.status, error.param) == (400, "max_completion_tokens")
    assert "differ" in error.message
    error = refusal(chat(max_completion_tokens=65), chat=True)
    assert "limit of 64" in error.message


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (completion(min_tokens=65, max_tokens=None), "this tenant's limit (64)"),
        (completion(min_tokens=9), "'max_tokens' (8)"),
        (completion(min_tokens=-1), "between 0"),
        (completion(min_tokens="8"), "must be an integer"),
    ],
)
def test_min_tokens_is_held_under_the_cap(body: dict[str, Any], needle: str) -> None:
    error = refusal(body)
    assert (error.status, error.param) == (400, "min_tokens")
    assert needle in error.message
    assert json.loads(validate(completion(min_tokens=8)).body)["min_tokens"] == 8
    chat_error = refusal(chat(max_completion_tokens=4, min_tokens=5), chat=True)
    assert chat_error.param == "min_tokens"


# ------------------------------------------------------- finding 6: accepted fields


@pytest.mark.parametrize(
    "field",
    [
        "priority",
        "kv_transfer_params",
        "chat_template_kwargs",
        "guided_json",
        "guided_regex",
        "guided_grammar",
        "structured_outputs",
        "best_of",
        "use_beam_search",
        "prompt_logprobs",
        "echo",
        "suffix",
        "cache_salt",
        "logits_processors",
        "request_id",
        "x_extra",
    ],
)
def test_fields_outside_the_allow_list_are_refused_by_name(field: str) -> None:
    for is_chat, body in ((False, completion()), (True, chat())):
        error = refusal({**body, field: 1}, chat=is_chat)
        assert (error.status, error.param) == (400, field)
        assert f"'{field}' is not a field this gateway accepts" in error.message


def test_chat_only_fields_are_refused_on_completions_and_the_reverse() -> None:
    for field in ("messages", "response_format", "top_logprobs", "tools", "tool_choice"):
        assert refusal(completion(**{field: 1})).param == field
    assert refusal(chat(prompt="x"), chat=True).param == "prompt"
    assert refusal(chat(tools=[]), chat=True).param == "tools"


def test_what_the_openai_sdk_sends_is_accepted() -> None:
    sdk_chat = chat(
        max_completion_tokens=16,
        temperature=0.2,
        top_p=0.9,
        stop=["\n"],
        seed=1,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
        logprobs=True,
        top_logprobs=3,
        logit_bias={"50256": -100},
        frequency_penalty=0.1,
        presence_penalty=0.1,
        response_format={"type": "json_object"},
        user="analyst-7",
    )
    assert set(sdk_chat) <= CHAT_FIELDS
    assert validate(sdk_chat, chat=True).stream
    sdk_completion = completion(logprobs=2, stop="\n", top_k=5, min_p=0.1, repetition_penalty=1.1)
    assert set(sdk_completion) <= COMPLETION_FIELDS
    assert validate(sdk_completion).sequences == 1


# ------------------------------------------------------------------ the rest


def test_an_unknown_model_is_404_without_the_list_of_models() -> None:
    error = refusal(completion(model="gpt-unknown"))
    assert error.status == 404
    assert "gpt-unknown" in error.message and "other" not in error.message


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "m", "prompt": "x", "temperature": NaN}',
        b'{"model": "m", "prompt": "x", "top_p": Infinity}',
        b'{"model": "m", "prompt": "\xed\xa0\x80"}',  # a lone surrogate is no UTF-8
        '{"model": "m", "prompt": "x"}'.encode("utf-16"),
        b'\xef\xbb\xbf{"model": "m", "prompt": "x"}',
    ],
)
def test_bodies_that_are_not_json_in_utf8_are_refused(raw: bytes) -> None:
    error = refusal(raw)
    assert error.status == 400 and "not valid JSON" in error.message
