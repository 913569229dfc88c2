"""The issue's proof: a burst through the real gateway waits in its fair queue, and counts.

The gateway (real uvicorn, real HTTP on 127.0.0.1) runs 4 sequences at once before the
fake vLLM (slots for those 4 plus the probe's reserve), queues up to 12 more, at most 6 from
one tenant, for at most 2 s, and publishes its scaling signal into moto's CloudWatch every
0.1 s. Several tenants send a burst, one of them a batch beyond its share:
- nothing is refused while the queue has room and the deadline holds;
- the Demand published exceeds the concurrency cap (the queue does not hide it);
- the dequeue is fair: a lone tenant's request reaches vLLM after at most one request of
  each other waiting tenant, not behind the whole batch;
- the batch beyond its share gets 429, a full queue 503, a request past its deadline 503,
  each with Retry-After;
- a queued client that disconnects frees its place at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from app.main import Runtime
from tests.app.stack import MODEL, Stack, digest, running_stack
from tests.fakes.fake_vllm import FakeVllmConfig

NAMESPACE = "FinSight/QueueTest"
GROUP = "finsight-queue-test"
MAX_RUNNING = 4
MAX_QUEUED = 12
TENANT_MAX_QUEUED = 6
MAX_QUEUE_WAIT_S = 2.0
TOKEN_DELAY_MS = 20.0
SHORT_TOKENS = 5  # about 0.1 s upstream
# About 0.5 s upstream: the burst's first four still run while the others queue, and its
# last round starts about 1 s in, within the deadline.
BURST_TOKENS = 25
LONG_TOKENS = 150  # about 3 s upstream: longer than the queue's deadline
# Tenant -> its running cap; "capped" may run 1 sequence at once.
TENANTS = {"batch": 8, "lone": 8, "other": 8, "capped": 1}


def key(tenant: str) -> str:
    return f"sk-{tenant}-0123456789"


def tenants_json() -> str:
    return json.dumps(
        {
            "tenants": [
                {"id": name, "api_key_sha256": digest(key(name)), "max_concurrent_requests": cap}
                for name, cap in TENANTS.items()
            ]
        }
    )


def body(marker: str, tokens: int) -> dict[str, Any]:
    # The marker travels in the prompt, so the fake's record of bodies gives the order in
    # which requests reached vLLM.
    return {"model": MODEL, "prompt": marker, "max_tokens": tokens}


def arrival_order(stack: Stack) -> list[str]:
    return [str(b["prompt"]) for b in stack.fake.stats.bodies]


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def until(condition: Any, timeout_s: float = 3.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


def published(client: Any, name: str) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    points: list[dict[str, Any]] = client.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": "AutoScalingGroupName", "Value": GROUP}],
        StartTime=now - dt.timedelta(minutes=5),
        EndTime=now + dt.timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum", "Sum"],
    )["Datapoints"]
    return points


async def queued_raw_request(port: int, marker: str) -> asyncio.StreamWriter:
    """A whole request sent on a raw socket, left to wait for its answer."""
    payload = json.dumps(body(marker, SHORT_TOKENS)).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + key("lone").encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
    )
    await writer.drain()
    return writer


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_a_burst_waits_fairly_is_counted_in_demand_and_sheds_only_at_the_bounds(
    tmp_path: Path, aws_env: None
) -> None:
    async def scenario(cloudwatch: Any) -> None:
        runtime = Runtime(
            boto3_client=lambda service, region_name: cloudwatch,
            install_signal_handlers=False,
            exit_process=lambda: None,
        )
        config = FakeVllmConfig(
            tokens=LONG_TOKENS, token_delay_ms=TOKEN_DELAY_MS, slots=MAX_RUNNING + 2
        )
        async with running_stack(
            tmp_path,
            fake_config=config,
            runtime=runtime,
            tenants=tenants_json(),
            max_running_sequences=MAX_RUNNING,
            max_queued_sequences=MAX_QUEUED,
            tenant_max_queued_sequences=TENANT_MAX_QUEUED,
            max_queue_wait_s=MAX_QUEUE_WAIT_S,
            cloudwatch_enabled=True,
            autoscaling_group_name=GROUP,
            cloudwatch_namespace=NAMESPACE,
            cloudwatch_interval_s=0.1,
        ) as stack:
            clients = {
                name: httpx.AsyncClient(
                    base_url=stack.url,
                    headers={"Authorization": f"Bearer {key(name)}"},
                    timeout=10,
                )
                for name in TENANTS
            }
            try:
                await burst(stack, clients, cloudwatch)
                await bounds(stack, clients)
            finally:
                for client in clients.values():
                    await client.aclose()

    async def burst(stack: Stack, clients: dict[str, httpx.AsyncClient], cloudwatch: Any) -> None:
        admission = stack.gateway.admission

        def send(tenant: str, marker: str, tokens: int = SHORT_TOKENS) -> asyncio.Task[Any]:
            request = clients[tenant].post("/v1/completions", json=body(marker, tokens))
            return asyncio.ensure_future(request)

        # GIVEN the batch tenant sends 10 at once: 4 run, its share of 6 waits
        batch = [
            send("batch", f"batch-{i}", BURST_TOKENS)
            for i in range(MAX_RUNNING + TENANT_MAX_QUEUED)
        ]
        await until(lambda: admission.tenant_queued("batch") == TENANT_MAX_QUEUED)
        # WHEN it sends one more, beyond its share, THEN that one is refused with 429
        beyond = await clients["batch"].post("/v1/completions", json=body("beyond", 1))
        assert (beyond.status_code, beyond.headers["Retry-After"]) == (429, "1")
        assert f"its limit is {TENANT_MAX_QUEUED} waiting" in beyond.json()["error"]["message"]
        # WHEN two other tenants send one request each while the batch waits
        lone = send("lone", "lone", BURST_TOKENS)
        await until(lambda: admission.tenant_queued("lone") == 1)
        other = send("other", "other", BURST_TOKENS)
        await until(lambda: admission.tenant_queued("other") == 1)
        demand = admission.demand
        replies = await asyncio.gather(*batch, lone, other)
        # THEN nothing was refused: the queue had room and the deadline held
        assert [r.status_code for r in replies] == [200] * len(replies)
        assert demand == MAX_RUNNING + TENANT_MAX_QUEUED + 2
        # AND the lone request reached vLLM after the 4 running and at most one request of
        # each other waiting tenant (batch, other), not behind the batch's 6
        order = arrival_order(stack)
        assert "beyond" not in order
        assert order.index("lone") <= MAX_RUNNING + 2, order
        assert order.index("other") <= MAX_RUNNING + 2, order
        # AND the Demand published exceeds what runs: the queue hides none of it
        async with asyncio.timeout(3):
            while not any(p["Maximum"] >= demand for p in published(cloudwatch, "Demand")):
                await asyncio.sleep(0.05)
        assert max(p["Maximum"] for p in published(cloudwatch, "Demand")) > MAX_RUNNING
        async with asyncio.timeout(3):
            while sum(p["Sum"] for p in published(cloudwatch, "Shed")) < 1:
                await asyncio.sleep(0.05)
        assert sum(p["Sum"] for p in published(cloudwatch, "Shed")) == 1
        assert published(cloudwatch, "QueueDepth")

    async def bounds(stack: Stack, clients: dict[str, httpx.AsyncClient]) -> None:
        admission = stack.gateway.admission
        metrics = clients["lone"]

        def send(tenant: str, marker: str, tokens: int = SHORT_TOKENS) -> asyncio.Task[Any]:
            request = clients[tenant].post("/v1/completions", json=body(marker, tokens))
            return asyncio.ensure_future(request)

        # GIVEN 4 long requests running (capped's one fills its own cap) ...
        long = [send("capped", "capped-long", LONG_TOKENS)]
        long += [send("other", f"other-long-{i}", LONG_TOKENS) for i in range(3)]
        await until(lambda: admission.running == MAX_RUNNING)
        # ... a request of capped's, waiting on its own cap, and a raw client's, waiting
        capped = send("capped", "capped-waits")
        await until(lambda: admission.tenant_queued("capped") == 1)
        writer = await queued_raw_request(int(stack.url.rsplit(":", 1)[1]), "raw")
        await until(lambda: admission.tenant_queued("lone") == 1)
        # ... and the queue filled to its bound of 12
        fill = [send("batch", f"fill-{i}") for i in range(TENANT_MAX_QUEUED)]
        fill += [send("other", f"fill-other-{i}") for i in range(MAX_QUEUED - 8)]
        await until(lambda: admission.queued == MAX_QUEUED)
        # WHEN one more comes, THEN the full queue refuses it at once: 503, Retry-After
        full = await clients["lone"].post("/v1/completions", json=body("full", 1))
        assert (full.status_code, full.headers["Retry-After"]) == (503, "1")
        assert f"at most {MAX_QUEUED}" in full.json()["error"]["message"]
        # WHEN the raw client disconnects, THEN its place is free at once
        writer.transport.abort()
        await until(lambda: admission.queued == MAX_QUEUED - 1, timeout_s=0.5)
        text = (await metrics.get("/metrics")).text
        assert metric_value(text, "gateway_queued_sequences") == MAX_QUEUED - 1
        assert 'gateway_requests_shed_total{reason="client_gone"} 1.0' in text
        # WHEN the deadline passes before any long request ends, THEN every waiter is shed
        # with 503 queue_timeout and Retry-After
        late = await capped
        assert (late.status_code, late.headers["Retry-After"]) == (503, "1")
        assert f"within {MAX_QUEUE_WAIT_S:g} s" in late.json()["error"]["message"]
        assert [r.status_code for r in await asyncio.gather(*fill)] == [503] * len(fill)
        assert admission.queued == 0
        assert [r.status_code for r in await asyncio.gather(*long)] == [200] * MAX_RUNNING
        assert "raw" not in arrival_order(stack)
        text = (await metrics.get("/metrics")).text
        timed_out = 'gateway_requests_shed_total{reason="queue_timeout"}'
        assert f"{timed_out} {float(1 + len(fill))}" in text
        assert 'gateway_queue_wait_seconds_count{tenant="capped"} 1.0' in text
        assert admission.demand == 0

    with mock_aws():
        asyncio.run(scenario(boto3.client("cloudwatch", region_name="us-east-1")))
