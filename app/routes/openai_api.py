"""The OpenAI-compatible routes, passed through to vLLM after auth, validation, admission."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route

from app.access import access_record
from app.deps import GatewayDep, TenantDep, get_gateway, get_tenant
from app.errors import GatewayError
from app.gateway import Gateway
from app.tenants import Tenant
from app.validation import validate_generation

router = APIRouter(prefix="/v1")


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, at most `limit` bytes, within `timeout_s` of the first read: a client
    that dribbles its body would otherwise hold a connection and a task for as long as it
    likes. Refusals that leave the body unread close the connection (`app.connections`)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise GatewayError(400, "Content-Length is not a number.", "invalid_request_error")
        # Length first: int() raises on strings of over 4300 digits, which would be a 500.
        digits = declared.lstrip("0")
        if len(digits) > len(str(limit)) or int(digits or "0") > limit:
            raise GatewayError(
                413, f"Request body is larger than {limit} bytes.", "invalid_request_error"
            )
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for part in request.stream():
                size += len(part)
                if size > limit:
                    raise GatewayError(
                        413, f"Request body is larger than {limit} bytes.", "invalid_request_error"
                    )
                parts.append(part)
    except ClientDisconnect:
        # Nobody is left to read the answer; the status only feeds the metrics.
        raise GatewayError(
            499, "The client went away while sending the body.", "invalid_request_error"
        ) from None
    except TimeoutError:
        raise GatewayError(
            408,
            f"The request body did not arrive within {timeout_s:g} s "
            f"({size} bytes received); send it at once.",
            "invalid_request_error",
        ) from None
    return b"".join(parts)


async def _generate(
    request: Request, gateway: Gateway, tenant: Tenant, route: str, *, chat: bool
) -> Response:
    counter = gateway.metrics.requests
    record = access_record(request.scope)
    record.tenant = tenant.id

    def done(status: int) -> None:
        counter.labels(tenant.id, route, str(status)).inc()
        record.status = status

    try:
        settings = gateway.settings
        if not gateway.probe.models:
            raise GatewayError(
                503,
                "The model server is not ready yet.",
                "service_unavailable",
                retry_after_s=settings.retry_after_s,
            )
        raw = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        generation = validate_generation(
            raw,
            chat=chat,
            tenant=tenant,
            models=gateway.probe.models,
            max_n=settings.max_n,
            max_prompts=settings.max_prompts,
            max_sequences=min(tenant.max_concurrent_requests, settings.max_running_sequences),
        )
        record.stream = generation.stream
        ticket = await gateway.admission.admit(tenant, generation.sequences, request.receive)
        record.queue_ms = round(ticket.queued_s * 1000, 2)
        try:
            permit = gateway.proxy.check_circuit(settings.retry_after_s)
        except GatewayError:
            ticket.release()
            raise
    except GatewayError as error:
        done(error.status)
        record.shed_reason = error.shed_reason
        if error.queued_s is not None:
            record.queue_ms = round(error.queued_s * 1000, 2)
        raise
    return await gateway.proxy.forward(
        request, route, generation.body, generation.stream, ticket, done, permit
    )


# The two generation routes are plain endpoints, called by `app.fast_path` ahead of FastAPI
# (its dependency solving and middlewares are a large share of the CPU per request); they
# call the same services the dependencies would. Registered as routes too, so that other
# methods on these paths get 405 and the routes are listed with the rest.
async def chat_completions(request: Request) -> Response:
    gateway = await get_gateway(request)
    tenant = await get_tenant(gateway, request.headers.get("authorization"))
    return await _generate(request, gateway, tenant, "/v1/chat/completions", chat=True)


async def completions(request: Request) -> Response:
    gateway = await get_gateway(request)
    tenant = await get_tenant(gateway, request.headers.get("authorization"))
    return await _generate(request, gateway, tenant, "/v1/completions", chat=False)


generation_routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
]


# What a client needs of a model card; vLLM's cards also carry `root` (the model's local
# path on the instance), `parent`, `max_model_len` and `permission`.
MODEL_CARD_FIELDS = ("id", "object", "created", "owned_by")


def client_model_list(content: bytes) -> bytes:
    """vLLM's model list reduced to the fields of OpenAI's model object."""
    try:
        cards = json.loads(content)["data"]
        data = [{k: card[k] for k in MODEL_CARD_FIELDS if k in card} for card in cards]
    except (ValueError, KeyError, TypeError):
        raise GatewayError(
            502, "The model server's model list is malformed.", "upstream_error"
        ) from None
    return json.dumps({"object": "list", "data": data}).encode()


@router.get("/models")
async def models(request: Request, gateway: GatewayDep, tenant: TenantDep) -> Response:
    access_record(request.scope).tenant = tenant.id
    try:
        response = await gateway.proxy.passthrough_get("/v1/models")
        if response.status_code == 200:
            content = client_model_list(bytes(response.body))
            response = Response(content, media_type="application/json")
    except GatewayError as error:
        gateway.metrics.requests.labels(tenant.id, "/v1/models", str(error.status)).inc()
        raise
    gateway.metrics.requests.labels(tenant.id, "/v1/models", str(response.status_code)).inc()
    return response
