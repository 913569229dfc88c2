"""Liveness and readiness: flipping on probe failures and drain; the circuit breaker."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.app.stack import chat_body, running_stack
from tests.fakes.fake_vllm import FakeVllmConfig


def test_live_always_ready_only_after_a_successful_probe(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = FakeVllmConfig(mode="fail")
        async with (
            running_stack(tmp_path, fake_config=config, wait_ready=False) as stack,
            stack.client(None) as http,
        ):
            assert (await http.get("/health/live")).status_code == 200
            starting = await http.get("/health/ready")
            assert starting.status_code == 503
            assert "starting" in starting.json()["reason"]
            stack.fake.config.mode = "ok"
            await stack.wait_ready()
            assert (await http.get("/health/ready")).status_code == 200

    asyncio.run(scenario())


def test_two_failed_probes_make_it_not_ready_and_it_recovers(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack, stack.client(None) as http:
            probes_before = stack.fake.stats.probes
            stack.fake.config.mode = "fail"
            await stack.wait_ready(False)
            assert stack.gateway.probe.consecutive_failures >= 2
            refused = await http.get("/health/ready")
            assert refused.status_code == 503
            assert "failed" in refused.json()["reason"]
            stack.fake.config.mode = "ok"
            await stack.wait_ready(True)
            assert (await http.get("/health/ready")).status_code == 200
            # Health checks read the probe's result; they never probe themselves.
            probes = stack.fake.stats.probes
            for _ in range(20):
                await http.get("/health/ready")
            assert stack.fake.stats.probes - probes < 10
            assert probes > probes_before

    asyncio.run(scenario())


def test_a_hung_upstream_fails_the_probe_by_its_timeout(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path, probe_timeout_s=0.2) as stack:
            stack.fake.config.mode = "hang"
            await stack.wait_ready(False)
            assert "failed" in stack.gateway.readiness()[1]

    asyncio.run(scenario())


def test_upstream_down_opens_the_circuit_then_a_trial_closes_it(tmp_path: Path) -> None:
    # GIVEN a gateway whose upstream port stops answering
    async def scenario() -> None:
        async with (
            running_stack(
                tmp_path, circuit_failure_threshold=2, circuit_cooldown_s=0.5, probe_interval_s=5
            ) as stack,
            stack.client() as http,
        ):
            real_port = stack.gateway.upstream._port
            stack.gateway.upstream._port = 1  # nothing listens there
            stack.gateway.upstream.close()
            # WHEN requests fail to connect
            for _ in range(2):
                failed = await http.post("/v1/chat/completions", json=chat_body())
                assert failed.status_code == 502
                assert "could not be reached" in failed.json()["error"]["message"]
            # THEN the circuit is open: fail fast with 503 (readiness is the probe's to say)
            fast = await http.post("/v1/chat/completions", json=chat_body())
            assert fast.status_code == 503
            assert int(fast.headers["Retry-After"]) >= 1
            metrics = (await http.get("/metrics")).text
            assert "gateway_circuit_state 2.0" in metrics
            assert 'gateway_requests_shed_total{reason="circuit_open"} 1.0' in metrics
            # AND after the cool-down, one trial against the recovered upstream closes it
            stack.gateway.upstream._port = real_port
            await asyncio.sleep(0.55)
            ok = await http.post("/v1/chat/completions", json=chat_body())
            assert ok.status_code == 200
            assert (await http.get("/health/ready")).status_code == 200

    asyncio.run(scenario())


def test_a_stalled_upstream_is_504(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path, upstream_timeout_s=0.3) as stack, stack.client() as http:
            stack.fake.config.mode = "hang"
            response = await http.post("/v1/chat/completions", json=chat_body())
            assert response.status_code == 504
            assert "took longer than 0.3 s" in response.json()["error"]["message"]
            assert stack.gateway.admission.running == 0

    asyncio.run(scenario())
