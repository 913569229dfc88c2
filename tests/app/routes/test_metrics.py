"""The Prometheus exposition: traffic by tenant/route/status, latency, TTFT, upstream load."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.app.stack import GLOBEX_KEY, chat_body, running_stack
from tests.fakes.fake_vllm import FakeVllmConfig


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_report_traffic_latency_and_upstream_load(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = FakeVllmConfig(token_delay_ms=30, slots=1)
        async with (
            running_stack(tmp_path, fake_config=config) as stack,
            stack.client() as acme,
            stack.client(GLOBEX_KEY) as globex,
        ):
            await acme.post("/v1/chat/completions", json=chat_body(max_tokens=2))
            await acme.post(
                "/v1/completions",
                json={"model": "fake-model", "prompt": "x", "stream": True, "max_tokens": 2},
            )
            await globex.post("/v1/chat/completions", json=chat_body(model="nope"))
            # Three requests at once on one upstream slot: two wait in vLLM's queue.
            busy = [
                asyncio.ensure_future(globex.post("/v1/chat/completions", json=chat_body()))
                for _ in range(3)
            ]
            async with asyncio.timeout(3):
                while stack.gateway.upstream_load.waiting != 2:
                    await asyncio.sleep(0.01)
            during = samples((await acme.get("/metrics")).text)
            assert during[("gateway_running_sequences", ())] == 3
            assert during[("gateway_queued_sequences", ())] == 0
            assert during[("gateway_upstream_num_requests_waiting", ())] == 2
            assert during[("gateway_upstream_num_requests_running", ())] == 1
            await asyncio.gather(*busy)
            after = samples((await acme.get("/metrics")).text)

        def requests(tenant: str, route: str, status: str) -> float:
            labels = (("route", route), ("status", status), ("tenant", tenant))
            return after.get(("gateway_requests_total", labels), 0)

        assert requests("acme", "/v1/chat/completions", "200") == 1
        assert requests("acme", "/v1/completions", "200") == 1
        assert requests("globex", "/v1/chat/completions", "404") == 1
        assert requests("globex", "/v1/chat/completions", "200") == 3
        assert after[("gateway_running_sequences", ())] == 0
        latency = (("route", "/v1/chat/completions"), ("stream", "false"))
        assert after[("gateway_request_duration_seconds_count", latency)] == 4
        ttft = (("route", "/v1/completions"),)
        assert after[("gateway_time_to_first_token_seconds_count", ttft)] == 1
        assert after[("gateway_ready", ())] == 1
        assert after[("gateway_circuit_state", ())] == 0

    asyncio.run(scenario())


def test_the_prompt_never_reaches_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "quarterly-earnings-SECRET-PROMPT"

    async def scenario() -> None:
        async with running_stack(tmp_path) as stack, stack.client() as http:
            stack.fake.config.mode = "fail"
            body = chat_body(messages=[{"role": "user", "content": secret}])
            await http.post("/v1/chat/completions", json=body)
            await http.post("/v1/chat/completions", json={**body, "stream": True})
            await http.post("/v1/chat/completions", json={**body, "n": 99})

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    assert caplog.records
    assert secret not in caplog.text
