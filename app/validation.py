"""Checks a generation request before anything goes upstream; each refusal says what is wrong.

The gateway enforces what protects the instance and the tenants: the fields a request may
carry (an allow-list per route), the number of sequences it asks for (prompts x `n`, which
admission counts), and the tenant's token cap, inserted when the request sets none. vLLM
still validates the values of everything else (and answers 400 itself for what it refuses).
The body is parsed once; it is forwarded as sent unless the cap had to be inserted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.errors import GatewayError
from app.tenants import Tenant

# Fields both routes accept: OpenAI's sampling and output fields, plus the vLLM extras the
# product offers. Every other field is refused, with the reasons in README ("Accepted
# fields"): vLLM-only knobs that reach its scheduler or templates (`priority`,
# `kv_transfer_params`, `chat_template*`, `cache_salt`), raw guided-decoding grammars
# (`guided_*`, `structured_outputs`: `response_format` is the supported way), beam search
# and `best_of` (more sequences than admission counted), prompt log-probabilities and
# `echo` (a pass over the whole prompt's vocabulary), tools (the fleet runs vLLM without a
# tool-call parser), and OpenAI platform features the product does not run.
_COMMON_FIELDS = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "max_tokens",
        "n",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "user",
        # vLLM extras. `min_tokens` is held under the token cap; `ignore_eos` cannot ask
        # for more than `max_tokens`, which is always set and capped.
        "top_k",
        "min_p",
        "repetition_penalty",
        "min_tokens",
        "ignore_eos",
    }
)
COMPLETION_FIELDS = _COMMON_FIELDS | {"prompt"}
CHAT_FIELDS = _COMMON_FIELDS | {
    "messages",
    "max_completion_tokens",
    "top_logprobs",
    "response_format",
}


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    model: str
    stream: bool
    body: bytes
    # What admission counts: one per prompt per choice (`n`).
    sequences: int


def _invalid(message: str, param: str | None = None, status: int = 400) -> GatewayError:
    return GatewayError(status, message, "invalid_request_error", param=param)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# Python's json accepts NaN and Infinity; JSON does not, nor does vLLM's parser.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"'{name}' must be an integer, got {type(value).__name__}", name)
    return value


def _token_count(body: dict[str, Any], name: str, cap: int) -> int | None:
    requested = _optional_int(body, name)
    if requested is None:
        return None
    if requested < 1:
        raise _invalid(f"'{name}' must be at least 1, got {requested}", name)
    if requested > cap:
        raise _invalid(f"'{name}' is {requested}, above this tenant's limit of {cap}", name)
    return requested


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


def _with_max_tokens(raw: bytes, body: dict[str, Any], cap: int) -> bytes:
    """The body with `"max_tokens": cap` added. The usual case (the key is absent) splices
    it in before the closing brace, far cheaper than re-serializing a long prompt; the body
    is a UTF-8 JSON object with at least `model` in it, so this stays valid JSON."""
    if "max_tokens" not in body:
        end = raw.rstrip(b" \t\n\r")
        if end.endswith(b"}"):
            return b'%s,"max_tokens":%d}' % (end[:-1], cap)
    body["max_tokens"] = cap  # present as null: rewrite the whole body
    return json.dumps(body, ensure_ascii=False).encode()


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
        body = _DECODER.decode(raw.decode())
    except (ValueError, UnicodeDecodeError) as error:
        raise _invalid(f"Request body is not valid JSON: {error}") from None
    except RecursionError:
        raise _invalid("Request body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object.")

    route = "/v1/chat/completions" if chat else "/v1/completions"
    unknown = body.keys() - (CHAT_FIELDS if chat else COMPLETION_FIELDS)
    if unknown:
        name = min(unknown)
        raise _invalid(
            f"'{name[:64]}' is not a field this gateway accepts on {route}; see the "
            "accepted fields in its documentation.",
            name[:64],
        )

    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("'model' is required and must be a string.", "model")
    if model not in models:
        # The served models are listed by GET /v1/models, to an authenticated caller only.
        raise GatewayError(
            404,
            f"The model '{model[:256]}' does not exist.",
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

    cap = tenant.max_tokens
    max_tokens = _token_count(body, "max_tokens", cap)
    limit = max_tokens
    if chat:
        # vLLM takes max_completion_tokens over max_tokens; two different values would
        # leave the client guessing which one applied.
        max_completion_tokens = _token_count(body, "max_completion_tokens", cap)
        if max_completion_tokens is not None:
            if max_tokens is not None and max_tokens != max_completion_tokens:
                raise _invalid(
                    f"'max_tokens' ({max_tokens}) and 'max_completion_tokens' "
                    f"({max_completion_tokens}) differ; set one of them.",
                    "max_completion_tokens",
                )
            limit = max_completion_tokens

    min_tokens = _optional_int(body, "min_tokens")
    if min_tokens is not None and not 0 <= min_tokens <= (limit or cap):
        bound = "'max_tokens'" if limit else "this tenant's limit"
        raise _invalid(
            f"'min_tokens' must be between 0 and {bound} ({limit or cap}), got {min_tokens}",
            "min_tokens",
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

    # No cap set: vLLM would generate up to the model's context. Insert the tenant's.
    forwarded = raw if limit is not None else _with_max_tokens(raw, body, cap)
    return GenerationRequest(model=model, stream=stream, body=forwarded, sequences=sequences)
