"""Faults around the gateway, against the named fake upstream: what the client and the load
balancer see when the model server dies, hangs or is slow, or CloudWatch is unreachable.

The same "killed mid-stream" fault against the real vLLM CPU server is in
test_faults_vllm.py (integration).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.processes import GatewayServer, http_get, make_tenant, running, wait_until, write_tenants
from tests.stress.harness import (
    DroppingEndpoint,
    FakeUpstream,
    Reply,
    completion_body,
    gateway_env,
    percentile,
    request,
)

PROBE_INTERVAL_S = 1.0


def _post(gateway: GatewayServer, authorization: str, body: bytes) -> Reply:
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    return asyncio.run(request(gateway.port, "POST", "/v1/completions", body, headers))


def read_stream_killing_upstream(
    gateway_url: str, authorization: str, model: str, upstream: Any, max_tokens: int
) -> tuple[list[str], float, str | None]:
    """Stream a completion, kill the upstream after the third event, read on to the end.

    Returns the events received, the monotonic time of the kill, and the transport error
    the client met (None when the gateway closed the stream cleanly).
    """
    events: list[str] = []
    killed_at = 0.0
    body = {"model": model, "prompt": "The market", "max_tokens": max_tokens, "stream": True}
    # vLLM would stop at the end-of-text token; the fault must land mid-answer.
    body["ignore_eos"] = True
    try:
        with (
            httpx.Client(timeout=30) as client,
            client.stream(
                "POST",
                gateway_url + "/v1/completions",
                json=body,
                headers={"Authorization": authorization},
            ) as response,
        ):
            assert response.status_code == 200
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(line[len("data: ") :])
                if len(events) == 3:
                    upstream.kill()
                    killed_at = time.monotonic()
    except httpx.HTTPError as error:
        return events, killed_at, f"{type(error).__name__}: {error}"
    return events, killed_at, None


def test_upstream_killed_mid_stream_gives_a_clean_error_then_unready_then_recovery(
    tmp_path: Path, logs_dir: Path, figures: dict[str, Any]
) -> None:
    tenant = make_tenant("acme")
    write_tenants(tmp_path / "tenants.json", [tenant])
    upstream = FakeUpstream(logs_dir / "upstream.log", tokens=200, token_delay_ms=20)
    gateway = GatewayServer(
        logs_dir / "gateway.log",
        gateway_env(
            upstream.url,
            tmp_path / "tenants.json",
            probe_interval_s=PROBE_INTERVAL_S,
            probe_failures_to_unready=2,
        ),
    )
    with running(upstream, gateway):
        upstream.start()
        upstream.wait_up()
        gateway.start()
        gateway.wait_ready()

        events, killed_at, transport_error = read_stream_killing_upstream(
            gateway.url, tenant.authorization, upstream.model, upstream, max_tokens=200
        )
        unready_after = wait_until(lambda: not gateway.ready(), 4 * PROBE_INTERVAL_S)
        unready_after_kill = None if unready_after is None else time.monotonic() - killed_at
        while_down = _post(gateway, tenant.authorization, completion_body(upstream.model))

        # The model server comes back on the same port.
        upstream.start()
        upstream.wait_up()
        recovered_after = wait_until(gateway.ready, 6 * PROBE_INTERVAL_S)
        after = _post(gateway, tenant.authorization, completion_body(upstream.model))

    # The client's stream ends cleanly (no broken transfer), with an error event it can
    # read and without the [DONE] that would claim a complete answer.
    assert transport_error is None, transport_error
    assert len(events) >= 3 and events[-1] != "[DONE]", events[-3:]
    error = json.loads(events[-1])["error"]
    assert error["type"] == "upstream_error" and "broke off" in error["message"], error
    # Readiness turns false within two probe intervals (plus the polling granularity).
    assert unready_after_kill is not None
    assert unready_after_kill <= 2 * PROBE_INTERVAL_S + 0.3, unready_after_kill
    # While it is down, requests fail fast and clearly, never hang.
    assert while_down.status in (502, 503), while_down
    assert while_down.elapsed_s < 2.0
    # And it recovers by itself when the upstream returns.
    assert recovered_after is not None, gateway.log()[-2000:]
    assert after.status == 200, after

    figures.update(
        {
            "events_before_error": len(events) - 1,
            "unready_after_kill_s": round(unready_after_kill, 2),
            "probe_interval_s": PROBE_INTERVAL_S,
            "status_while_down": while_down.status,
            "ready_again_after_restart_s": round(recovered_after, 2),
        }
    )


def test_upstream_hanging_fails_the_probe_opens_the_circuit_fails_fast_and_recovers(
    tmp_path: Path, logs_dir: Path, figures: dict[str, Any]
) -> None:
    tenant = make_tenant("acme")
    write_tenants(tmp_path / "tenants.json", [tenant])
    upstream = FakeUpstream(logs_dir / "upstream.log", tokens=4)
    timeout_s, threshold, cooldown_s = 1.0, 3, 2.0
    gateway = GatewayServer(
        logs_dir / "gateway.log",
        gateway_env(
            upstream.url,
            tmp_path / "tenants.json",
            upstream_timeout_s=timeout_s,
            circuit_failure_threshold=threshold,
            circuit_cooldown_s=cooldown_s,
            # A whole answer outlasting the timeout is the tenant's own 504; the breaker's
            # evidence of a hung engine is the 1-token probe timing out.
            probe_interval_s=0.2,
            probe_timeout_s=0.3,
        ),
    )
    body = completion_body(upstream.model)
    with running(upstream, gateway):
        upstream.start()
        upstream.wait_up()
        gateway.start()
        gateway.wait_ready()
        upstream.set_mode("hang")
        hung_at = time.monotonic()

        timeouts = [_post(gateway, tenant.authorization, body) for _ in range(2)]
        opened = wait_until(lambda: "gateway_circuit_state 2.0" in gateway.metrics_text(), 10)
        opened_after_s = time.monotonic() - hung_at
        seen_before_fast = upstream.stats()["generation_requests"]
        fast = [_post(gateway, tenant.authorization, body) for _ in range(5)]
        ready_while_hung = gateway.ready()
        seen_while_open = upstream.stats()["generation_requests"] - seen_before_fast

        # The upstream heals: the probe's success closes the circuit and readies the instance.
        upstream.set_mode("ok")
        healed_at = time.monotonic()
        ready_after = wait_until(gateway.ready, 5.0)
        closed = wait_until(lambda: "gateway_circuit_state 0.0" in gateway.metrics_text(), 5)
        closed_after_s = time.monotonic() - healed_at
        after = [_post(gateway, tenant.authorization, body) for _ in range(3)]

    for reply in timeouts:
        assert reply.status == 504, reply
        assert json.loads(reply.body)["error"]["type"] == "upstream_timeout"
        assert timeout_s <= reply.elapsed_s < timeout_s + 1.0, reply.elapsed_s
    assert opened is not None, gateway.log()[-2000:]
    for reply in fast:
        assert reply.status == 503, reply
        assert reply.headers.get("retry-after"), reply.headers
        assert reply.elapsed_s < 0.25, reply.elapsed_s
    assert seen_while_open == 0
    assert not ready_while_hung
    assert ready_after is not None
    assert closed is not None
    assert all(r.status == 200 for r in after), after

    figures.update(
        {
            "timeout_s": timeout_s,
            "circuit_open_after_hang_s": round(opened_after_s, 2),
            "fast_fail_p99_s": round(percentile([r.elapsed_s for r in fast], 0.99), 4),
            "upstream_calls_while_open": seen_while_open,
            "circuit_closed_after_heal_s": round(closed_after_s, 2),
        }
    )


def test_a_slow_tenant_cannot_block_another_beyond_its_fairness_cap(
    tmp_path: Path, logs_dir: Path, figures: dict[str, Any]
) -> None:
    # GIVEN an instance running 8, each tenant capped at 4 running and 4 queued for at most
    # 1 s, an upstream with 8 slots, a tenant whose answers take 3 s and another whose
    # answers take 0.1 s
    greedy, other = make_tenant("greedy"), make_tenant("other")
    write_tenants(tmp_path / "tenants.json", [greedy, other])
    upstream = FakeUpstream(logs_dir / "upstream.log", tokens=60, token_delay_ms=50, slots=8)
    cap = 4
    gateway = GatewayServer(
        logs_dir / "gateway.log",
        gateway_env(
            upstream.url,
            tmp_path / "tenants.json",
            max_running_sequences=8,
            tenant_max_queued_sequences=cap,
            max_queue_wait_s=1.0,
            default_tenant_max_concurrent_requests=cap,
        ),
    )

    async def scenario() -> tuple[list[Reply], list[Reply]]:
        def send(tenant: Any, max_tokens: int) -> Any:
            return request(
                gateway.port,
                "POST",
                "/v1/completions",
                completion_body(upstream.model, max_tokens=max_tokens),
                {"Authorization": tenant.authorization, "Content-Type": "application/json"},
            )

        # WHEN the slow tenant floods the instance with 16 concurrent slow requests
        flood = [asyncio.create_task(send(greedy, 60)) for _ in range(16)]
        await asyncio.sleep(0.3)
        # and the other tenant keeps sending short ones, two at a time, meanwhile
        quick: list[Reply] = []
        while len(quick) < 20:
            quick.extend(await asyncio.gather(send(other, 2), send(other, 2)))
        return list(await asyncio.gather(*flood)), quick

    with running(upstream, gateway):
        upstream.start()
        upstream.wait_up()
        gateway.start()
        gateway.wait_ready()
        flooded, quick = asyncio.run(scenario())

    # THEN the slow tenant ran exactly its cap; as many waited and were shed at the
    # deadline (its own requests held its cap throughout), the rest refused at once with 429
    admitted = [r for r in flooded if r.status == 200]
    timed_out = [r for r in flooded if r.status == 503]
    refused = [r for r in flooded if r.status == 429]
    assert (len(admitted), len(timed_out), len(refused)) == (cap, cap, 16 - 2 * cap), [
        r.status for r in flooded
    ]
    assert all(r.headers.get("retry-after") for r in refused + timed_out)
    assert all(1.0 <= r.elapsed_s < 2.0 for r in timed_out), [r.elapsed_s for r in timed_out]
    assert min(r.elapsed_s for r in admitted) >= 2.5
    # and the other tenant was never blocked behind it: every request served, in about its
    # own service time, while the slow answers were still running
    assert all(r.status == 200 for r in quick), [r.status for r in quick]
    quick_p99 = percentile([r.elapsed_s for r in quick], 0.99)
    assert quick_p99 < 1.0, quick_p99

    figures.update(
        {
            "slow_tenant_admitted": len(admitted),
            "slow_tenant_refused_429": len(refused),
            "slow_tenant_shed_at_deadline_503": len(timed_out),
            "fairness_cap": cap,
            "other_tenant_requests": len(quick),
            "other_tenant_p99_s": round(quick_p99, 3),
            "slow_answer_s": round(min(r.elapsed_s for r in admitted), 2),
        }
    )


def test_cloudwatch_unreachable_leaves_serving_alone_and_the_publisher_backs_off(
    tmp_path: Path, logs_dir: Path, figures: dict[str, Any]
) -> None:
    tenant = make_tenant("acme")
    write_tenants(tmp_path / "tenants.json", [tenant])
    cloudwatch = DroppingEndpoint()
    cloudwatch.start()
    interval_s = 0.1
    upstream = FakeUpstream(logs_dir / "upstream.log", tokens=4)
    env = gateway_env(
        upstream.url,
        tmp_path / "tenants.json",
        cloudwatch_enabled=True,
        cloudwatch_interval_s=interval_s,
        autoscaling_group_name="finsight-serving-test",
        aws_region="us-east-1",
    )
    env["AWS_ENDPOINT_URL_CLOUDWATCH"] = cloudwatch.url
    gateway = GatewayServer(logs_dir / "gateway.log", env)
    body = completion_body(upstream.model)
    try:
        with running(upstream, gateway):
            upstream.start()
            upstream.wait_up()
            gateway.start()
            gateway.wait_ready()
            started = time.monotonic()
            replies: list[Reply] = []
            ready_all_along = True
            while time.monotonic() - started < 7.0:
                replies.append(_post(gateway, tenant.authorization, body))
                ready_all_along &= http_get(gateway.url + "/health/ready")[0] == 200
                time.sleep(0.05)
            metrics = gateway.metrics_text()
            log = gateway.log()
    finally:
        cloudwatch.stop()

    # Serving is unaffected: every request answered, fast, and the instance stays ready.
    assert all(r.status == 200 for r in replies), [r.status for r in replies if r.status != 200]
    p99 = percentile([r.elapsed_s for r in replies], 0.99)
    assert p99 < 0.5, p99
    assert ready_all_along
    # The publisher tried, failed, and backed off: after the n-th failure in a row it waits
    # at least interval x 2^n (a slow attempt only lengthens a gap), so a fixed 0.1 s
    # interval's ~70 attempts in the same time shrink to a handful.
    attempts = cloudwatch.attempts
    assert 4 <= len(attempts) <= 10, len(attempts)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    for failures, gap in enumerate(gaps, start=1):
        assert gap >= 0.95 * interval_s * 2**failures, gaps
    errors = next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("gateway_cloudwatch_publish_errors_total ")
    )
    assert errors >= len(attempts) - 1
    assert "publishing to CloudWatch failed" in log

    figures.update(
        {
            "requests_served": len(replies),
            "serving_p99_s": round(p99, 4),
            "publish_attempts_in_7s": len(attempts),
            "gaps_s": [round(g, 2) for g in gaps],
        }
    )
