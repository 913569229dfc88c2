"""The scaling signal under load: the gateway's sequences and vLLM's queue rise, then fall.

A bounded burst keeps the real vLLM busy for several seconds while both /metrics pages are
sampled, each by a thread of its own: 4 requests started together, each asking for 40
completions of 240 tokens for each of 2 prompts, so 320 sequences against the 128 that vLLM
runs at once on the CPU. The rest wait in its queue, which is what
`vllm:num_requests_waiting` counts. Few requests with many sequences each, so that all
reach vLLM at once: with 40 client threads, vLLM's engine took both cores as soon as the
first requests arrived and the other threads trickled in over seconds, never filling its
batch. Twice the batch keeps the burst long enough (about 7 s) for the sparse samples.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.app.integration.conftest import FIGURES, make_client
from tests.processes import (
    ClientTenant,
    GatewayServer,
    ScrapeError,
    VllmServer,
    scrape,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CONCURRENT_REQUESTS = 4
COMPLETIONS_EACH = 40
TOKENS_EACH = 240
PROMPTS = ["The S&P 500", "The Dow Jones"]
SEQUENCES_EACH = len(PROMPTS) * COMPLETIONS_EACH
# vLLM's default max_num_seqs for its OpenAI server on the CPU.
VLLM_MAX_RUNNING = 128
GATEWAY_RUNNING = "gateway_running_sequences"
GATEWAY_UPSTREAM_RUNNING = "gateway_upstream_num_requests_running"
GATEWAY_UPSTREAM_WAITING = "gateway_upstream_num_requests_waiting"
VLLM_RUNNING = "vllm:num_requests_running"
VLLM_WAITING = "vllm:num_requests_waiting"
# Seconds requests spent waiting in vLLM's queue, summed: unlike the gauge, no sampling gap
# can miss it.
VLLM_QUEUE_TIME_SUM = "vllm:request_queue_time_seconds_sum"


class Sampler(threading.Thread):
    """Reads one /metrics page over and over until stopped; keeps (seconds, values)."""

    def __init__(self, read: Callable[[], dict[str, float]], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self._read = read
        self._stop_sampling = stop
        self.started_at = time.monotonic()
        # (seconds since start when the read was sent, values)
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.errors = 0

    def run(self) -> None:
        while not self._stop_sampling.is_set():
            sent_at = time.monotonic() - self.started_at
            try:
                values = self._read()
            except ScrapeError:
                self.errors += 1
            else:
                self.samples.append((sent_at, values))
            self._stop_sampling.wait(0.05)

    def peak(self, *names: str) -> float:
        return max((sum(v.get(n, 0.0) for n in names) for _, v in self.samples), default=0.0)

    def series(self, *names: str) -> str:
        return " ".join(f"{t:.1f}s:{sum(v.get(n, 0.0) for n in names):g}" for t, v in self.samples)


def test_running_sequences_and_upstream_queue_rise_under_a_burst_and_fall_back(
    gateway: GatewayServer, tenant: ClientTenant, vllm: VllmServer
) -> None:
    before = gateway.metrics()
    assert before[GATEWAY_RUNNING] == 0
    queue_time_before = scrape(f"{vllm.url}/metrics").get(VLLM_QUEUE_TIME_SUM, 0.0)
    start_together = threading.Barrier(CONCURRENT_REQUESTS)
    burst_over = threading.Event()
    at_gateway = Sampler(gateway.metrics, burst_over)
    at_vllm = Sampler(lambda: scrape(f"{vllm.url}/metrics"), burst_over)

    # One client made beforehand (it is thread-safe): the barrier then releases requests,
    # not 40 client constructions competing for the CPU.
    sdk = make_client(gateway, tenant, timeout=120.0)

    def one_request(_: int) -> int:
        start_together.wait(timeout=30)
        reply = sdk.completions.create(
            model=vllm.model,
            prompt=PROMPTS,
            max_tokens=TOKENS_EACH,
            n=COMPLETIONS_EACH,
            extra_body={"ignore_eos": True},
        )
        assert reply.usage is not None
        return reply.usage.completion_tokens

    at_gateway.start()
    at_vllm.start()
    burst_started = time.monotonic()
    try:
        with ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
            tokens = list(pool.map(one_request, range(CONCURRENT_REQUESTS), timeout=300))
    finally:
        burst_over.set()
        at_gateway.join(timeout=30)
        at_vllm.join(timeout=30)
        sdk.close()
    burst_s = time.monotonic() - burst_started

    assert tokens == [SEQUENCES_EACH * TOKENS_EACH] * CONCURRENT_REQUESTS
    peak_running = at_gateway.peak(GATEWAY_RUNNING)
    peak_upstream_seen_by_gateway = at_gateway.peak(
        GATEWAY_UPSTREAM_RUNNING, GATEWAY_UPSTREAM_WAITING
    )
    peak_vllm = at_vllm.peak(VLLM_RUNNING, VLLM_WAITING)
    FIGURES["burst_s"] = burst_s
    FIGURES["burst_peak_gateway_running_sequences"] = peak_running
    FIGURES["burst_peak_upstream_queue_seen_by_gateway"] = peak_upstream_seen_by_gateway
    FIGURES["burst_peak_vllm_running_plus_waiting"] = peak_vllm
    FIGURES["burst_peak_vllm_waiting"] = at_vllm.peak(VLLM_WAITING)
    FIGURES["vllm_rss_after_burst_mib"] = vllm.rss_mib()
    scrape_errors = (
        gateway.metrics()["gateway_upstream_metrics_scrape_errors_total"]
        - before["gateway_upstream_metrics_scrape_errors_total"]
    )
    FIGURES["burst_gateway_failed_scrapes_of_vllm"] = scrape_errors
    # On 2 shared cores a /metrics page can take a second or more to come back during the
    # burst, so the samples are sparse: the checks are that each count rises well above
    # idle, not that a sample caught the exact peak.
    # at least two of the four requests' sequences seen in flight at once
    assert peak_running >= 2 * SEQUENCES_EACH, at_gateway.series(GATEWAY_RUNNING)
    assert peak_vllm > VLLM_MAX_RUNNING // 2, (
        f"{at_vllm.series(VLLM_RUNNING, VLLM_WAITING)}; errors {at_vllm.errors}"
    )
    # The 192 sequences beyond vLLM's 128 waited for a batch slot, seconds each. The gauge
    # is checked when a sample caught it; a /metrics page can take seconds to come back
    # under this load, so the queue-time sum is what must show the wait.
    queued_s = scrape(f"{vllm.url}/metrics")[VLLM_QUEUE_TIME_SUM] - queue_time_before
    FIGURES["burst_vllm_queue_time_sum_s"] = queued_s
    assert queued_s >= 1.0, at_vllm.series(VLLM_WAITING)
    assert peak_upstream_seen_by_gateway > VLLM_MAX_RUNNING // 2, (
        f"{at_gateway.series(GATEWAY_UPSTREAM_RUNNING, GATEWAY_UPSTREAM_WAITING)}; "
        f"the gateway's failed scrapes of vLLM during the burst: {scrape_errors:g}"
    )
    assert at_gateway.peak(GATEWAY_UPSTREAM_WAITING) >= 1, at_gateway.series(
        GATEWAY_UPSTREAM_WAITING
    )

    # Back to idle once the burst is answered.
    assert wait_until(lambda: gateway.metrics()[GATEWAY_RUNNING] == 0, 10) is not None
    assert wait_until(lambda: gateway.metrics()[GATEWAY_UPSTREAM_RUNNING] == 0, 10) is not None
    after = gateway.metrics()
    # A labelled counter has no sample until its first request, hence the default.
    assert after["gateway_requests_total"] - before.get("gateway_requests_total", 0.0) == (
        CONCURRENT_REQUESTS
    )
