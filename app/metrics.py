"""The gateway's Prometheus metrics, in a registry of its own (made by the app factory)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

# Seconds; LLM requests run from tens of milliseconds to minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# Shed reasons that are not refusals: the client left on its own (recorded as 499).
NOT_REFUSALS = frozenset({"client_gone"})
QUEUE_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)

UPSTREAM_RUNNING = "vllm:num_requests_running"
UPSTREAM_WAITING = "vllm:num_requests_waiting"


def queue_wait_buckets(max_queue_wait_s: float) -> tuple[float, ...]:
    """The wait buckets up to the deadline, which is a bucket itself (a wait never exceeds it
    by more than a loop turn)."""
    below = tuple(b for b in QUEUE_WAIT_BUCKETS if b < max_queue_wait_s)
    return (*below, max_queue_wait_s)


class GatewayMetrics:
    def __init__(self, max_queue_wait_s: float = 30.0) -> None:
        # Requests refused since start (every shed reason but a client leaving): the
        # CloudWatch publisher sends the increase of each period as `Shed`.
        self.refused_total = 0
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Requests answered, by tenant, route and HTTP status.",
            ["tenant", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "End-to-end latency of admitted requests, to the last byte.",
            ["route", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Time from admission to the first streamed chunk from the upstream.",
            ["route"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.running = Gauge(
            "gateway_running_sequences",
            "Sequences (prompts x n) sent to the upstream and not yet finished.",
            registry=r,
        )
        self.queued = Gauge(
            "gateway_queued_sequences",
            "Sequences waiting in the gateway's queue for their turn.",
            registry=r,
        )
        self.queue_wait = Histogram(
            "gateway_queue_wait_seconds",
            "Time requests that had to wait spent in the queue (started, timed out or gone).",
            ["tenant"],
            buckets=queue_wait_buckets(max_queue_wait_s),
            registry=r,
        )
        self.shed = Counter(
            "gateway_requests_shed",
            "Requests refused before reaching the upstream, or whose client left while "
            "they were queued, by reason.",
            ["reason"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "gateway_circuit_state",
            "Upstream circuit breaker: 0 closed, 1 half-open, 2 open.",
            registry=r,
        )
        self.ready = Gauge("gateway_ready", "1 when /health/ready answers 200.", registry=r)
        self.upstream_running = Gauge(
            "gateway_upstream_num_requests_running",
            f"The upstream's {UPSTREAM_RUNNING}, as last read from its /metrics.",
            registry=r,
        )
        self.upstream_waiting = Gauge(
            "gateway_upstream_num_requests_waiting",
            f"The upstream's {UPSTREAM_WAITING} (its queue), as last read from its /metrics.",
            registry=r,
        )
        self.upstream_scrape_errors = Counter(
            "gateway_upstream_metrics_scrape_errors",
            "Failed reads of the upstream's /metrics.",
            registry=r,
        )
        self.cloudwatch_errors = Counter(
            "gateway_cloudwatch_publish_errors",
            "Failed publications of the scaling metrics to CloudWatch.",
            registry=r,
        )
        self.tenants_reload_errors = Counter(
            "gateway_tenants_reload_errors",
            "Failed reloads of the tenants document (the previous one stays in force).",
            registry=r,
        )

    def record_shed(self, reason: str) -> None:
        self.shed.labels(reason).inc()
        if reason not in NOT_REFUSALS:
            self.refused_total += 1

    def set_queue(self, running: int, queued: int) -> None:
        self.running.set(running)
        self.queued.set(queued)


def parse_upstream_gauges(text: str) -> dict[str, float]:
    """Sum vLLM's running and waiting gauges over their labels (one sample per model)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (UPSTREAM_RUNNING, UPSTREAM_WAITING):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals
