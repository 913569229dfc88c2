"""Readiness follows the model server: 503 once vLLM is stopped, 200 again once it is back.

The gateway keeps running throughout, as on an instance where systemd restarts vLLM. This
is the one test that stops the session's vLLM; it leaves it restarted and healthy.
"""

from __future__ import annotations

import signal
import time

import openai
import pytest

from tests.app.integration.conftest import FIGURES, PROBE_INTERVAL_S
from tests.processes import GatewayServer, VllmServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_ready_turns_503_when_vllm_stops_and_200_when_it_is_back(
    gateway: GatewayServer, client: openai.OpenAI, vllm: VllmServer
) -> None:
    assert gateway.ready_status() == 200

    # GIVEN vLLM stopped as `systemctl stop` would (SIGTERM), whatever is left then killed.
    vllm.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    vllm.wait_exit(timeout_s=60)
    vllm.stop(grace_s=5)

    # THEN two failed probes later the gateway is not ready, and says why.
    assert wait_until(lambda: gateway.ready_status() == 503, 10 * PROBE_INTERVAL_S + 5) is not None
    unready_after_s = time.monotonic() - stopped_at
    FIGURES["gateway_unready_after_vllm_stop_s"] = unready_after_s
    with pytest.raises(openai.APIStatusError) as failed:
        client.completions.create(model=vllm.model, prompt="The S&P 500", max_tokens=4)
    assert failed.value.status_code in (502, 503)

    # WHEN vLLM comes back on the same port, the gateway turns ready without a restart.
    vllm.start()
    FIGURES["vllm_restart_to_healthy_s"] = vllm.wait_up()
    assert wait_until(lambda: gateway.ready_status() == 200, 10 * PROBE_INTERVAL_S + 5) is not None
    reply = client.completions.create(
        model=vllm.model, prompt="The S&P 500", max_tokens=32, temperature=0.0
    )
    assert reply.choices[0].text.startswith(" closed 0.8% higher")
    assert unready_after_s < 10 * PROBE_INTERVAL_S + 5
