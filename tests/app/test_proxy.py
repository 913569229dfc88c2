"""The proxy and the circuit breaker, with real HTTP against the fake vLLM: what counts as
evidence that the upstream is unwell, and the half-open trial."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.circuit import CircuitState
from tests.app.stack import GLOBEX_KEY, Stack, chat_body, running_stack
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
