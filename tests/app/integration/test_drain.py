"""Drain on SIGTERM with streams in flight: every stream finishes, new work gets 503, exit.

A gateway of its own (the package's stays up) in front of the package's vLLM. vLLM is
frozen (SIGSTOP) while the streams are admitted and the signal lands, so that all of them
are in flight then: the tiny model answers 240 tokens in about a second, often in one burst,
and would otherwise finish some or all of them first.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from openai.types import Completion

from tests.app.integration.conftest import FIGURES, make_client
from tests.processes import ClientTenant, GatewayServer, VllmServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

STREAMS = 8
TOKENS_EACH = 240  # near the 256-token context


def test_sigterm_lets_in_flight_streams_finish_refuses_new_requests_and_exits(
    start_gateway: Callable[..., GatewayServer], tenant: ClientTenant, vllm: VllmServer
) -> None:
    # The minimum drain keeps the port open (and answering 503) for a while even once the
    # streams are done, as it does for the load balancer: the window the checks below use.
    gateway = start_gateway(drain_deadline_s=60.0, drain_min_s=5.0)
    with make_client(gateway, tenant, timeout=120.0) as sdk, ThreadPoolExecutor(STREAMS) as pool:

        def read_stream(_: int) -> list[Completion]:
            stream = sdk.completions.create(
                model=vllm.model,
                prompt="Treasury yields",
                max_tokens=TOKENS_EACH,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
            return list(stream)

        vllm.freeze()
        try:
            streams = [pool.submit(read_stream, index) for index in range(STREAMS)]
            admitted = wait_until(
                lambda: gateway.metrics()["gateway_running_sequences"] == STREAMS, 30
            )
            assert admitted is not None, "the streams were not all admitted"
            gateway.signal(signal.SIGTERM)
            signalled_at = time.monotonic()
            in_flight_at_sigterm = gateway.metrics()["gateway_running_sequences"]

            assert wait_until(lambda: gateway.ready_status() == 503, 5) is not None, (
                "still ready after SIGTERM"
            )
            with pytest.raises(openai.APIStatusError) as refused:
                sdk.completions.create(model=vllm.model, prompt="x", max_tokens=1)
            assert refused.value.status_code == 503
            assert gateway.alive()
        finally:
            vllm.thaw()

        for stream in streams:
            chunks = stream.result(timeout=120)
            usage = chunks[-1].usage
            assert usage is not None and usage.completion_tokens == TOKENS_EACH
            finish_reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
            assert finish_reasons[-1] == "length"

    exit_code = gateway.wait_exit(timeout_s=30)
    drained_in_s = time.monotonic() - signalled_at
    FIGURES["gateway_drain_to_exit_s"] = drained_in_s
    FIGURES["gateway_streams_in_flight_at_sigterm"] = in_flight_at_sigterm
    # uvicorn finishes its graceful shutdown, then re-raises the SIGTERM it caught.
    assert exit_code in (0, -signal.SIGTERM), gateway.log_tail()
    assert "drain complete: no request in flight" in gateway.log_tail()
    # Every stream was in flight when the drain began: it had all of them to wait for.
    assert in_flight_at_sigterm == STREAMS
    assert drained_in_s < 60
