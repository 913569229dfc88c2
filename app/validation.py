"""Checks a generation request before anything goes upstream; each refusal says what is wrong.

Only the fields the gateway must enforce are checked here; the body is forwarded as sent,
so vLLM still validates everything else (and answers 400 itself for what it refuses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.errors import GatewayError
from app.tenants import Tenant


@dataclass(frozen=True)
class GenerationRequest:
    model: str
    stream: bool
    body: bytes


def _invalid(message: str, param: str | None = None, status: int = 400) -> GatewayError:
    return GatewayError(status, message, "invalid_request_error", param=param)


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"'{name}' must be an integer, got {type(value).__name__}", name)
    return value


def validate_generation(
    raw: bytes,
    *,
    chat: bool,
    tenant: Tenant,
    models: frozenset[str],
    max_n: int,
) -> GenerationRequest:
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
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str | list) or (isinstance(prompt, list) and not prompt):
            raise _invalid("'prompt' is required and must be a string or an array.", "prompt")

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

    return GenerationRequest(model=model, stream=stream, body=raw)
