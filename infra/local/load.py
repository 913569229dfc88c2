"""Bounded load through the local load balancer: loopback only, capped in count and time.

Two shapes: `closed_loop` (a fixed number of clients, each sending its next request when
the last one ends, until a deadline) for bursts, and `open_loop` (requests sent at given
offsets, as a trace lists them) for replays. Every outcome is kept: status, time to first
token, latency, whether a stream reached `[DONE]`, and which replica answered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

MAX_REQUESTS = 20_000
MAX_DURATION_S = 900.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class LoadError(ValueError):
    """A load that would leave loopback or exceed its bounds."""


@dataclass(frozen=True)
class RequestSpec:
    prompt_tokens: int
    output_tokens: int
    stream: bool = False
    at_s: float = 0.0  # wall seconds after the load's start (open loop)
    api_key: str | None = None  # the tenant's, when not the client's default


@dataclass(frozen=True)
class Outcome:
    spec: RequestSpec
    sent_at_s: float
    status: int  # 0: no HTTP answer (connection refused or broken)
    ttft_s: float | None
    latency_s: float
    complete: bool  # a 200 with the whole answer (a stream up to [DONE])
    error: str | None = None


def check_target(base_url: str) -> None:
    host = urlsplit(base_url).hostname or ""
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise LoadError(f"load goes to loopback only, got {base_url!r}")


def _prompt(tokens: int) -> str:
    # One word per token for the emulated engine's count.
    return " ".join(["tick"] * max(1, tokens))


async def send_one(
    client: httpx.AsyncClient, model: str, spec: RequestSpec, started: float
) -> Outcome:
    body = {
        "model": model,
        "prompt": _prompt(spec.prompt_tokens),
        "max_tokens": spec.output_tokens,
        "stream": spec.stream,
    }
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else None
    sent = time.monotonic()
    ttft: float | None = None
    try:
        if not spec.stream:
            response = await client.post("/v1/completions", json=body, headers=headers)
            latency = time.monotonic() - sent
            ok = response.status_code == 200 and bool(response.json().get("choices"))
            return Outcome(
                spec, sent - started, response.status_code, latency if ok else None, latency, ok
            )
        done = False
        async with client.stream("POST", "/v1/completions", json=body, headers=headers) as response:
            status = response.status_code
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                elif ttft is None and json.loads(line[6:]).get("choices"):
                    ttft = time.monotonic() - sent
        latency = time.monotonic() - sent
        return Outcome(spec, sent - started, status, ttft, latency, status == 200 and done)
    except (httpx.HTTPError, ValueError) as error:
        latency = time.monotonic() - sent
        return Outcome(spec, sent - started, 0, ttft, latency, False, f"{type(error).__name__}")


def _client(base_url: str, api_key: str, timeout_s: float, limit: int) -> httpx.AsyncClient:
    check_target(base_url)
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=httpx.Timeout(timeout_s, connect=5.0),
        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        trust_env=False,
    )


async def closed_loop(
    base_url: str,
    api_key: str,
    model: str,
    *,
    clients: int,
    duration_s: float,
    spec: RequestSpec,
    stream_every: int = 0,
    max_requests: int = 2_000,
    request_timeout_s: float = 120.0,
    stop_when: Callable[[], bool] = lambda: False,
) -> list[Outcome]:
    """`clients` loops until `duration_s` has passed or `stop_when()` holds; every
    `stream_every`-th client streams."""
    if not 1 <= clients <= 256 or not 0 < duration_s <= MAX_DURATION_S:
        raise LoadError(f"1-256 clients for at most {MAX_DURATION_S:g} s, got {clients}")
    if not 1 <= max_requests <= MAX_REQUESTS:
        raise LoadError(f"max_requests must be 1-{MAX_REQUESTS}, got {max_requests}")
    started = time.monotonic()
    outcomes: list[Outcome] = []
    async with _client(base_url, api_key, request_timeout_s, clients) as client:

        async def one_client(index: int) -> None:
            stream = stream_every > 0 and index % stream_every == 0
            mine = RequestSpec(spec.prompt_tokens, spec.output_tokens, stream)
            while (
                time.monotonic() - started < duration_s
                and len(outcomes) < max_requests
                and not stop_when()
            ):
                outcomes.append(await send_one(client, model, mine, started))

        await asyncio.gather(*(one_client(i) for i in range(clients)))
    return outcomes


async def open_loop(
    base_url: str,
    api_key: str,
    model: str,
    specs: list[RequestSpec],
    *,
    max_in_flight: int = 256,
    request_timeout_s: float = 300.0,
) -> list[Outcome]:
    """Send each request at its `at_s` (at most `max_in_flight` at once)."""
    if len(specs) > MAX_REQUESTS:
        raise LoadError(f"at most {MAX_REQUESTS} requests, got {len(specs)}")
    if specs and max(s.at_s for s in specs) > MAX_DURATION_S:
        raise LoadError(f"a load lasts at most {MAX_DURATION_S:g} s of wall time")
    started = time.monotonic()
    gate = asyncio.Semaphore(max_in_flight)
    async with _client(base_url, api_key, request_timeout_s, max_in_flight) as client:

        async def one(spec: RequestSpec) -> Outcome:
            await asyncio.sleep(max(0.0, spec.at_s - (time.monotonic() - started)))
            async with gate:
                return await send_one(client, model, spec, started)

        return list(await asyncio.gather(*(one(s) for s in specs)))
