"""Drain under load: SIGTERM with N streams in flight loses none of them.

The gateway runs as gateway.service runs it, with the lifecycle watcher on: instance
metadata comes from a fake IMDS and CompleteLifecycleAction goes to a fake Auto Scaling
endpoint, both on 127.0.0.1 (moto does not implement that call, and botocore's Stubber
cannot reach into another process).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.processes import GatewayServer, http_get, make_tenant, running, wait_until, write_tenants
from tests.stress.harness import (
    FakeAwsEndpoint,
    FakeImds,
    FakeUpstream,
    Reply,
    completion_body,
    gateway_env,
    request,
    sse_events,
)

STREAMS = 24
QUEUED_AT_DRAIN = 4
TOKENS = 40
TOKEN_DELAY_MS = 60.0  # each stream lasts about 2.4 s
DRAIN_DEADLINE_S = 20.0
GROUP = "finsight-serving-test"
HOOK = "finsight-serving-test-drain"


def _demand(metrics: str) -> float:
    """Sequences running plus queued, from the gateway's /metrics."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(("gateway_running_sequences ", "gateway_queued_sequences ")):
            total += float(line.split()[1])
    return total


@pytest.mark.parametrize("trigger", ["sigterm", "lifecycle-terminated"])
def test_drain_with_streams_in_flight_completes_every_stream_and_the_lifecycle_once(
    trigger: str, tmp_path: Path, logs_dir: Path, figures: dict[str, Any]
) -> None:
    """Scale-in reaches the gateway two ways: systemd's SIGTERM, or the instance's lifecycle
    state turning Terminated in IMDS (the gateway polls it); both must drain the same."""
    tenants = [make_tenant("acme", max_concurrent_requests=STREAMS), make_tenant("globex")]
    write_tenants(tmp_path / "tenants.json", tenants)
    imds, autoscaling = FakeImds(), FakeAwsEndpoint()
    imds.start()
    autoscaling.start()
    upstream = FakeUpstream(
        logs_dir / "upstream.log", tokens=TOKENS, token_delay_ms=TOKEN_DELAY_MS, slots=64
    )
    env = gateway_env(
        upstream.url,
        tmp_path / "tenants.json",
        # Some streams wait in the queue when the drain starts: they are served too.
        max_running_sequences=STREAMS - QUEUED_AT_DRAIN,
        lifecycle_watch_enabled=True,
        autoscaling_group_name=GROUP,
        lifecycle_hook_name=HOOK,
        imds_url=imds.url,
        imds_poll_interval_s=0.5,
        aws_region="us-east-1",
        drain_deadline_s=DRAIN_DEADLINE_S,
    )
    env["AWS_ENDPOINT_URL_AUTO_SCALING"] = autoscaling.url
    gateway = GatewayServer(logs_dir / "gateway.log", env)
    acme, globex = tenants
    try:
        with running(upstream, gateway):
            upstream.start()
            upstream.wait_up()
            gateway.start()
            gateway.wait_ready()
            result = asyncio.run(
                _drain_under_load(gateway, imds, trigger, acme.authorization, globex)
            )
            assert gateway.proc is not None
            exit_code = gateway.proc.wait(timeout=DRAIN_DEADLINE_S + 10)
            exited_after_s = time.monotonic() - result["triggered_at"]
    finally:
        imds.stop()
        autoscaling.stop()

    streams: list[Reply] = result["streams"]
    # Every stream ran to its end, those queued at the drain too: all tokens, then [DONE].
    complete = 0
    for reply in streams:
        events = sse_events(reply.body)
        if (
            reply.status == 200
            and events[-1:] == ["[DONE]"]
            and len(events) == TOKENS + 1
            and not any('"error"' in e for e in events)
        ):
            complete += 1
    lost = STREAMS - complete
    assert lost == 0, [(r.status, r.error, r.body[-200:]) for r in streams][:3]

    # New requests during the drain were refused with 503 and Retry-After, readiness too.
    refused: list[Reply] = result["refused"]
    assert refused and all(r.status == 503 for r in refused), [r.status for r in refused]
    assert all(r.headers.get("retry-after") for r in refused)
    assert all("draining" in json.loads(r.body)["error"]["message"] for r in refused)
    assert result["unready_after_s"] <= 2.0

    # CompleteLifecycleAction exactly once, for this instance and hook, after the streams.
    calls = autoscaling.actions("CompleteLifecycleAction")
    assert len(calls) == 1, autoscaling.calls
    params = calls[0].params
    assert params["LifecycleHookName"] == HOOK
    assert params["AutoScalingGroupName"] == GROUP
    assert params["InstanceId"] == imds.instance_id
    assert params["LifecycleActionResult"] == "CONTINUE"
    assert calls[0].at >= result["last_stream_end"] - 0.05

    # The process exited by itself, cleanly, within the deadline. uvicorn re-raises the
    # SIGTERM it captured once its shutdown is done, and systemd counts death by SIGTERM
    # as a clean stop, so -SIGTERM is as clean as 0; the log shows the orderly shutdown.
    assert exit_code in (0, -signal.SIGTERM), gateway.log()[-2000:]
    assert "Application shutdown complete" in gateway.log()
    assert exited_after_s <= DRAIN_DEADLINE_S, exited_after_s

    figures.update(
        {
            "streams_in_flight_n": STREAMS,
            "streams_lost": lost,
            "refused_during_drain": len(refused),
            "complete_lifecycle_action_calls": len(calls),
            "trigger": trigger,
            "exit_after_trigger_s": round(exited_after_s, 2),
            "drain_deadline_s": DRAIN_DEADLINE_S,
        }
    )


async def _drain_under_load(
    gateway: GatewayServer, imds: FakeImds, trigger: str, authorization: str, other: Any
) -> Any:
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    ends: list[float] = []

    async def stream() -> Reply:
        reply = await request(
            gateway.port,
            "POST",
            "/v1/completions",
            completion_body("fake-model", stream=True),
            headers,
            timeout_s=DRAIN_DEADLINE_S + 10,
        )
        ends.append(time.monotonic())
        return reply

    tasks = [asyncio.create_task(stream()) for _ in range(STREAMS)]
    # Wait until all N are streaming or queued, then pull the plug.
    in_flight = await asyncio.to_thread(
        wait_until,
        lambda: _demand(http_get(gateway.url + "/metrics")[1].decode()) == STREAMS,
        10.0,
    )
    assert in_flight is not None, "the streams never were all in flight"
    if trigger == "sigterm":
        gateway.signal(signal.SIGTERM)
    else:
        imds.lifecycle_state = "Terminated"
    triggered_at = time.monotonic()
    went_unready = await asyncio.to_thread(
        wait_until, lambda: http_get(gateway.url + "/health/ready")[0] == 503, 2.0
    )
    assert went_unready is not None, f"readiness did not turn false on {trigger}"
    # New work, from the same tenant and from another one, while the streams still run.
    refused = [
        await request(
            gateway.port,
            "POST",
            "/v1/completions",
            completion_body("fake-model", stream=stream_),
            {"Authorization": who, "Content-Type": "application/json"},
        )
        for who in (authorization, other.authorization)
        for stream_ in (False, True)
    ]
    streams = await asyncio.gather(*tasks)
    return {
        "streams": streams,
        "refused": refused,
        "unready_after_s": went_unready,
        "triggered_at": triggered_at,
        "last_stream_end": max(ends),
    }
