"""Drain: in-flight streams finish, new requests get 503, the lifecycle action completes once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.stub import Stubber

from app.main import Runtime
from tests.app.stack import ACME_KEY, GLOBEX_KEY, chat_body, running_stack, serve, tenants_document
from tests.fakes.fake_imds import FakeImds
from tests.fakes.fake_vllm import FakeVllm, FakeVllmConfig

GROUP = "finsight-test-asg"
HOOK = "finsight-drain"


def stubbed_autoscaling(instance_id: str) -> tuple[Any, Stubber, list[str]]:
    """A real boto3 client whose CompleteLifecycleAction is answered by a Stubber
    (moto does not implement it); `calls` records each call made."""
    client = boto3.client(
        "autoscaling", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    calls: list[str] = []
    client.meta.events.register(
        "before-parameter-build.auto-scaling.CompleteLifecycleAction",
        lambda **kwargs: calls.append(kwargs["params"]["InstanceId"]),
    )
    stubber = Stubber(client)
    stubber.add_response(
        "complete_lifecycle_action",
        {},
        {
            "LifecycleHookName": HOOK,
            "AutoScalingGroupName": GROUP,
            "LifecycleActionResult": "CONTINUE",
            "InstanceId": instance_id,
        },
    )
    stubber.activate()
    return client, stubber, calls


async def read_stream(http: httpx.AsyncClient) -> list[str]:
    events = []
    body = chat_body(stream=True, max_tokens=10)
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(line)
    return events


def test_lifecycle_terminated_drains_in_flight_streams_then_completes_once(
    tmp_path: Path,
) -> None:
    imds = FakeImds()
    client, stubber, calls = stubbed_autoscaling(imds.instance_id)
    exits: list[float] = []

    async def scenario() -> None:
        runtime = Runtime(
            boto3_client=lambda service, region_name: client,
            install_signal_handlers=False,
            exit_process=lambda: exits.append(time.monotonic()),
            imds_transport=httpx.ASGITransport(app=imds.app),
        )
        # 10 tokens at 80 ms: each stream takes about 0.8 s.
        config = FakeVllmConfig(token_delay_ms=80)
        async with running_stack(
            tmp_path, fake_config=config, runtime=runtime, lifecycle_watch_enabled=True,
            autoscaling_group_name=GROUP, lifecycle_hook_name=HOOK,
            imds_poll_interval_s=0.05, drain_deadline_s=10,
        ) as stack, stack.client() as acme, stack.client(GLOBEX_KEY) as globex:  # fmt: skip
            streams = [asyncio.ensure_future(read_stream(acme)) for _ in range(2)]
            while stack.gateway.admission.running < 2:
                await asyncio.sleep(0.01)
            # WHEN the ASG marks the instance for termination
            imds.lifecycle_state = "Terminated"
            async with asyncio.timeout(2):
                while not stack.gateway.drainer.draining:
                    await asyncio.sleep(0.01)
            # THEN it is not ready and new requests are refused at once
            ready = await globex.get("/health/ready")
            assert ready.status_code == 503 and "draining" in ready.json()["reason"]
            refused = await globex.post("/v1/chat/completions", json=chat_body())
            assert refused.status_code == 503 and "draining" in refused.json()["error"]["message"]
            assert not exits and not calls
            # AND the admitted streams finish whole
            for events in await asyncio.gather(*streams):
                assert len(events) == 11 and events[-1] == "data: [DONE]"
            async with asyncio.timeout(3):
                await stack.gateway.drainer.finished.wait()

    asyncio.run(scenario())
    assert calls == [imds.instance_id]
    assert len(exits) == 1
    stubber.assert_no_pending_responses()


def test_a_stop_into_the_warm_pool_drains_without_completing_a_lifecycle_action(
    tmp_path: Path,
) -> None:
    imds = FakeImds()
    # GIVEN an instance warmed for the pool: the ASG stops it, and systemd sends SIGTERM
    imds.lifecycle_state = "Warmed:Stopped"
    client, _, calls = stubbed_autoscaling(imds.instance_id)
    exits: list[str] = []

    async def scenario() -> None:
        runtime = Runtime(
            boto3_client=lambda service, region_name: client,
            install_signal_handlers=False,
            exit_process=lambda: exits.append("x"),
            imds_transport=httpx.ASGITransport(app=imds.app),
        )
        async with running_stack(
            tmp_path, runtime=runtime, lifecycle_watch_enabled=True,
            autoscaling_group_name=GROUP, lifecycle_hook_name=HOOK, imds_poll_interval_s=0.05,
        ) as stack:  # fmt: skip
            lifecycle = stack.gateway.lifecycle
            assert lifecycle is not None
            async with asyncio.timeout(2):
                while lifecycle.state is None:
                    await asyncio.sleep(0.01)
            stack.gateway.drainer.begin("SIGTERM")
            async with asyncio.timeout(3):
                await stack.gateway.drainer.finished.wait()

    asyncio.run(scenario())
    # THEN it exits, and asks nothing of a termination hook that is not waiting for it
    assert exits == ["x"]
    assert calls == []


def test_sigterm_drains_and_a_deadline_bounds_the_wait(tmp_path: Path) -> None:
    exits: list[str] = []

    async def scenario() -> None:
        runtime = Runtime(install_signal_handlers=True, exit_process=lambda: exits.append("x"))
        config = FakeVllmConfig(token_delay_ms=100, tokens=100)  # a 10 s stream
        async with (
            running_stack(
                tmp_path, fake_config=config, runtime=runtime, drain_deadline_s=0.5
            ) as stack,
            stack.client() as http,
        ):
            long_stream = asyncio.ensure_future(read_stream_long(http))
            while stack.gateway.admission.running < 1:
                await asyncio.sleep(0.01)
            began = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)
            async with asyncio.timeout(3):
                await stack.gateway.drainer.finished.wait()
            assert 0.4 < time.monotonic() - began < 2
            assert stack.gateway.drainer.reason == "SIGTERM"
            assert exits == ["x"]
            long_stream.cancel()

    asyncio.run(scenario())


async def read_stream_long(http: httpx.AsyncClient) -> None:
    body = chat_body(stream=True, max_tokens=100)
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        async for _ in response.aiter_bytes():
            pass


def test_a_real_server_drains_a_stream_on_sigterm_and_exits(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.json"
    tenants.write_text(tenants_document())

    async def scenario() -> None:
        fake = FakeVllm(FakeVllmConfig(token_delay_ms=60))
        async with serve(fake.app) as upstream_port:
            env = {
                **os.environ,
                "GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}",
                "GATEWAY_TENANTS_FILE": str(tenants),
                "GATEWAY_CLOUDWATCH_ENABLED": "false",
                "GATEWAY_LIFECYCLE_WATCH_ENABLED": "false",
                "GATEWAY_PROBE_INTERVAL_S": "0.1",
                "GATEWAY_DRAIN_DEADLINE_S": "10",
                "GATEWAY_DRAIN_MIN_S": "0",
            }
            gateway = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app",
                 "--host", "127.0.0.1", "--port", "0", "--log-level", "info"],
                env=env, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                port = await asyncio.to_thread(_port_from_log, gateway)
                headers = {"Authorization": f"Bearer {ACME_KEY}"}
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10
                ) as http:
                    async with asyncio.timeout(15):
                        while (await http.get("/health/ready")).status_code != 200:
                            await asyncio.sleep(0.1)
                    stream = asyncio.ensure_future(read_stream(http))
                    while fake.stats.running < 1:
                        await asyncio.sleep(0.01)
                    gateway.send_signal(signal.SIGTERM)
                    events = await stream
                    assert events[-1] == "data: [DONE]" and len(events) == 11
                code = await asyncio.to_thread(gateway.wait, 15)
                assert code in (0, -signal.SIGTERM)
            finally:
                if gateway.poll() is None:
                    gateway.kill()

    asyncio.run(scenario())


def _port_from_log(process: subprocess.Popen[str]) -> int:
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if "Uvicorn running on" in line:
            return int(line.split("http://127.0.0.1:")[1].split()[0])
    raise AssertionError("the gateway did not start")


def test_an_idle_drain_still_stays_up_for_the_minimum_time(tmp_path: Path) -> None:
    exits: list[float] = []

    async def scenario() -> None:
        runtime = Runtime(
            install_signal_handlers=False, exit_process=lambda: exits.append(time.monotonic())
        )
        async with running_stack(tmp_path, runtime=runtime, drain_min_s=0.4) as stack:
            began = time.monotonic()
            stack.gateway.drainer.begin("test")
            async with stack.client() as http:
                refused = await http.post("/v1/chat/completions", json=chat_body())
                assert refused.status_code == 503
            async with asyncio.timeout(3):
                await stack.gateway.drainer.finished.wait()
            assert exits and exits[0] - began >= 0.4

    asyncio.run(scenario())
