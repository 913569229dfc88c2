"""The proxy and the circuit breaker, with real HTTP against the fake vLLM: what counts as
evidence that the upstream is unwell, and the half-open trial."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.circuit import CircuitState
from tests.app.stack import ACME_KEY, GLOBEX_KEY, Stack, chat_body, running_stack
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
                while stack.gateway.admission.ongoing:
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
