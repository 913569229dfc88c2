"""Checks a generation request before anything goes upstream; each refusal says what is wrong.

Only the fields the gateway must enforce are checked here, among them the number of
sequences a request asks for (prompts x `n`, which admission counts); the body is forwarded
as sent, so vLLM still validates everything else (and answers 400 itself for what it refuses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.errors import GatewayError
from app.tenants import Tenant


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    model: str
    stream: bool
    body: bytes
    # What admission counts: one per prompt per choice (`n`).
    sequences: int


def _invalid(message: str, param: str | None = None, status: int = 400) -> GatewayError:
    return GatewayError(status, message, "invalid_request_error", param=param)


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"'{name}' must be an integer, got {type(value).__name__}", name)
    return value


def _is_token_ids(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(type(t) is int and t >= 0 for t in value)  # bool is no token id
    )


_PROMPT_SHAPES = (
    "'prompt' must be a string, an array of strings, an array of token ids, "
    "or an array of token-id arrays (none of them empty)."
)


def count_prompts(prompt: Any, max_prompts: int) -> int:
    """How many prompts vLLM will run: a string or a token-id array is one; an array of
    strings or of token-id arrays is one each, at most `max_prompts`."""
    if isinstance(prompt, str):
        return 1
    if not isinstance(prompt, list) or not prompt:
        raise _invalid(_PROMPT_SHAPES, "prompt")
    first = prompt[0]
    if type(first) is int:
        if _is_token_ids(prompt):
            return 1
        raise _invalid(_PROMPT_SHAPES, "prompt")
    if len(prompt) > max_prompts:
        raise _invalid(
            f"'prompt' holds {len(prompt)} prompts; at most {max_prompts} per request "
            "(send the others in further requests).",
            "prompt",
        )
    if isinstance(first, str):
        well_formed = all(isinstance(p, str) for p in prompt)
    else:
        well_formed = all(_is_token_ids(p) for p in prompt)
    if not well_formed:
        raise _invalid(_PROMPT_SHAPES, "prompt")
    return len(prompt)


def validate_generation(
    raw: bytes,
    *,
    chat: bool,
    tenant: Tenant,
    models: frozenset[str],
    max_n: int,
    max_prompts: int = 4,
    max_sequences: int | None = None,
) -> GenerationRequest:
    """`max_sequences`: the most sequences one request may ever be granted (the smaller of
    the tenant's and the instance's caps); a request asking more is refused here, as a
    refusal by admission would tell the client to retry what can never succeed."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise _invalid(f"Request body is not valid JSON: {error}") from None
    except RecursionError:
        raise _invalid("Request body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object.")

    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("'model' is required and must be a string.", "model")
    if model not in models:
        raise GatewayError(
            404,
            f"The model '{model}' does not exist; available: {', '.join(sorted(models))}.",
            "invalid_request_error",
            param="model",
        )

    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _invalid("'messages' is required and must be a non-empty array.", "messages")
        if not all(isinstance(m, dict) for m in messages):
            raise _invalid("each item of 'messages' must be an object.", "messages")
        prompts = 1
    else:
        if body.get("prompt") is None:
            raise _invalid("'prompt' is required and must be a string or an array.", "prompt")
        prompts = count_prompts(body["prompt"], max_prompts)

    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _invalid(f"'stream' must be a boolean, got {type(stream).__name__}", "stream")

    for name in ("max_tokens", "max_completion_tokens"):
        requested = _optional_int(body, name)
        if requested is None:
            continue
        if requested < 1:
            raise _invalid(f"'{name}' must be at least 1, got {requested}", name)
        if requested > tenant.max_tokens:
            raise _invalid(
                f"'{name}' is {requested}, above this tenant's limit of {tenant.max_tokens}",
                name,
            )

    n = _optional_int(body, "n")
    if n is not None and not 1 <= n <= max_n:
        raise _invalid(f"'n' must be between 1 and {max_n}, got {n}", "n")
    sequences = prompts * (n or 1)
    if max_sequences is not None and sequences > max_sequences:
        asked = f"{prompts} prompts x n={n or 1}" if prompts > 1 else f"n={n}"
        raise _invalid(
            f"This request asks for {sequences} sequences ({asked}), more than the "
            f"{max_sequences} this tenant may ever run at once on an instance.",
            "prompt" if prompts > 1 else "n",
        )

    return GenerationRequest(model=model, stream=stream, body=raw, sequences=sequences)
