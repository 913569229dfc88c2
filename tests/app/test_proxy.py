"""The proxy and the circuit breaker, with real HTTP against the fake vLLM: what counts as
evidence that the upstream is unwell, and the half-open trial."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.circuit import CircuitState
from tests.app.stack import (
    ACME_KEY,
    GLOBEX_KEY,
    MODEL,
    Stack,
    chat_body,
    running_stack,
    tenants_document,
)
from tests.fakes.fake_vllm import FakeVllmConfig


async def until_reached_upstream(stack: Stack, generation_requests: int) -> None:
    async with asyncio.timeout(5):
        while stack.fake.stats.generation_requests < generation_requests:
            await asyncio.sleep(0.01)


def test_a_request_admitted_before_the_trial_leaving_lets_no_second_trial_through(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        # One probe at start, then none: only the requests below feed the breaker.
        config = FakeVllmConfig(token_delay_ms=100, tokens=100)
        async with (
            running_stack(
                tmp_path, fake_config=config, probe_interval_s=300, circuit_failure_threshold=1,
                circuit_cooldown_s=0.1,
            ) as stack,
            stack.client() as http,
        ):  # fmt: skip
            # GIVEN a slow request let through while the circuit was closed
            earlier = asyncio.ensure_future(http.post("/v1/chat/completions", json=chat_body()))
            await until_reached_upstream(stack, 1)
            # AND the circuit opened since, and is now half-open with its trial in flight
            stack.gateway.circuit.record_failure()
            async with asyncio.timeout(2):
                while stack.gateway.circuit.state is not CircuitState.HALF_OPEN:
                    await asyncio.sleep(0.01)
            trial = asyncio.ensure_future(http.post("/v1/chat/completions", json=chat_body()))
            await until_reached_upstream(stack, 2)
            # WHEN the earlier request's client leaves
            earlier.cancel()
            async with asyncio.timeout(3):
                while stack.fake.stats.cancelled < 1:
                    await asyncio.sleep(0.01)
            # THEN no second trial goes through while the first is in flight
            async with stack.client(GLOBEX_KEY) as other:  # streamed: its headers come at once
                body = chat_body(stream=True)
                refused = await other.post("/v1/chat/completions", json=body)
            assert refused.status_code == 503
            assert "failing" in refused.json()["error"]["message"]
            trial.cancel()
            async with asyncio.timeout(3):
                while stack.gateway.admission.running:
                    await asyncio.sleep(0.01)

    asyncio.run(scenario())


def test_a_tenants_long_generations_neither_open_the_circuit_nor_unready_the_instance(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        # GIVEN generations of 1 s, longer than the upstream timeout of 0.3 s, and a probe
        # that ran once (so the requests alone feed the breaker)
        config = FakeVllmConfig(token_delay_ms=100, tokens=10)
        async with (
            running_stack(
                tmp_path, fake_config=config, upstream_timeout_s=0.3, probe_interval_s=300,
                circuit_failure_threshold=2,
            ) as stack,
            stack.client(ACME_KEY) as acme,
            stack.client(GLOBEX_KEY) as globex,
        ):  # fmt: skip
            # WHEN one tenant sends, at once, more whole-answer requests than the threshold
            answers = await asyncio.gather(
                *(acme.post("/v1/chat/completions", json=chat_body()) for _ in range(4))
            )
            # THEN each is that tenant's 504
            assert [a.status_code for a in answers] == [504] * 4
            # AND the circuit stays closed, the instance ready, the other tenant served
            assert stack.gateway.circuit.state is CircuitState.CLOSED
            assert (await globex.get("/health/ready")).status_code == 200
            short = await globex.post("/v1/chat/completions", json=chat_body(max_tokens=1))
            assert short.status_code == 200
            assert "took longer than 0.3 s" in answers[0].json()["error"]["message"]

    asyncio.run(scenario())


def test_refused_connections_open_the_circuit_and_readiness_follows_the_probe(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with (
            running_stack(tmp_path, circuit_failure_threshold=2, probe_interval_s=0.05) as stack,
            stack.client() as http,
        ):
            gateway = stack.gateway
            real_port = gateway.upstream._port
            # WHEN nothing listens on the upstream's port any more
            gateway.upstream._port = 1
            gateway.upstream.close()
            # THEN connections are refused, the circuit opens and requests fail fast
            async with asyncio.timeout(5):
                while gateway.circuit.state is not CircuitState.OPEN:
                    await http.post("/v1/chat/completions", json=chat_body())
            fast = await http.post("/v1/chat/completions", json=chat_body())
            assert fast.status_code == 503
            # AND the probe, refused too, takes the instance out of service
            await stack.wait_ready(False)
            assert "probe failed" in (await http.get("/health/ready")).json()["reason"]
            # AND WHEN the upstream is back, the probe's success closes the circuit
            gateway.upstream._port = real_port
            await stack.wait_ready(True)
            assert gateway.circuit.state is CircuitState.CLOSED
            assert (await http.post("/v1/chat/completions", json=chat_body())).status_code == 200

    asyncio.run(scenario())


def test_failing_probes_open_the_circuit_without_any_request(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path, circuit_failure_threshold=3) as stack:
            stack.fake.config.mode = "fail"
            async with asyncio.timeout(5):
                while stack.gateway.circuit.state is not CircuitState.OPEN:
                    await asyncio.sleep(0.01)
            assert stack.fake.stats.generation_requests == 0
            stack.fake.config.mode = "ok"
            async with asyncio.timeout(5):
                while stack.gateway.circuit.state is not CircuitState.CLOSED:
                    await asyncio.sleep(0.01)

    asyncio.run(scenario())


def requests_counted(stack: Stack, status: int, route: str = "/v1/completions") -> float:
    value: float = stack.gateway.metrics.requests.labels("acme", route, str(status))._value.get()
    return value


async def open_stream_and_stop_reading(stack: Stack, body: dict[str, Any]) -> socket.socket:
    """A client that reads the response's head, then nothing more (a tiny receive buffer, so
    that the kernel holds little on its behalf)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", urlsplit(stack.url).port or 80))
    payload = json.dumps(body).encode()
    head = (
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ACME_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    await loop.sock_sendall(sock, head.encode() + payload)
    received = b""
    while b"\r\n\r\n" not in received:
        received += await loop.sock_recv(sock, 1024)
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return sock


def test_a_client_that_stops_reading_is_cut_off_with_its_slot_freed_and_memory_bounded(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        # GIVEN an upstream that streams 160 MB as fast as it can
        tokens, padding = 20_000, 8_000
        config = FakeVllmConfig(tokens=tokens, token_padding=padding)
        async with running_stack(
            tmp_path, fake_config=config, tenants=tenants_document(max_tokens=1_000_000),
            stream_stall_timeout_s=2.0,
        ) as stack:  # fmt: skip
            # WHEN a client asks for it streamed and stops reading after the head
            body = {"model": MODEL, "prompt": "hi", "max_tokens": tokens, "stream": True}
            sock = await open_stream_and_stop_reading(stack, body)
            try:
                # THEN the upstream is held back (TCP back-pressure), not drained into the
                # gateway's memory: what it has sent levels off far below the whole
                sent, previous = stack.fake.stats.streamed_bytes, -1
                async with asyncio.timeout(5):
                    while sent != previous:
                        await asyncio.sleep(0.2)
                        sent, previous = stack.fake.stats.streamed_bytes, sent
                assert stack.gateway.admission.running == 1  # still before the deadline
                assert sent < tokens * padding / 4, sent
                # AND after the stall deadline its slot is freed and the stream counted stalled
                async with asyncio.timeout(5):
                    while stack.gateway.admission.running:
                        await asyncio.sleep(0.05)
                assert requests_counted(stack, 408) == 1
                assert requests_counted(stack, 200) == 0
            finally:
                sock.close()

    asyncio.run(scenario())


def test_streams_are_counted_as_they_end(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = FakeVllmConfig(token_delay_ms=20, tokens=50)
        async with running_stack(tmp_path, fake_config=config) as stack, stack.client() as http:
            route = "/v1/chat/completions"
            body = chat_body(stream=True)
            # A client that leaves mid-stream: 499
            async with http.stream("POST", route, json=body) as response:
                async for _ in response.aiter_bytes():
                    break
            # The upstream breaking off mid-stream: 502
            stack.fake.config.mode = "drop"
            async with http.stream("POST", route, json=body) as response:
                await response.aread()
            # A stream to its end: 200
            stack.fake.config.mode = "ok"
            async with http.stream("POST", route, json=chat_body(stream=True, max_tokens=2)) as r:
                await r.aread()
            async with asyncio.timeout(3):
                while stack.gateway.admission.running:
                    await asyncio.sleep(0.01)
            counted = {status: requests_counted(stack, status, route) for status in (200, 499, 502)}
            assert counted == {200: 1, 499: 1, 502: 1}

    asyncio.run(scenario())
