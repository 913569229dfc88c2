"""What the gateway adds: latency through it vs directly to the same fast fake upstream.

One run, on loopback: the fake vLLM in its own process, the gateway in its own uvicorn
process, and this process as the load generator (keep-alive connections, one per
concurrent client). Rounds alternate direct and through-the-gateway so that drift in the
machine's load hits both alike; the figures are medians over rounds. Bounded in count and
time: a few thousand requests, under about a minute. The served gateway logs at warning, so
the access line's own cost is measured apart, in this process: the plain line beside the
Embedded Metric Format line an instance writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.access import AccessRecord, access_fields
from app.logs import JsonFormatter
from app.request_metrics import RequestMetrics, SloTargets
from app.upstream import UpstreamClient

KEY = "sk-bench-tenant"
MODEL = "fake-model"
TOKENS = 16
ROUNDS = 5
REQUESTS = {1: 150, 64: 600}  # per round and side
BUDGET_S = 45.0
GOAL_P50_MS, GOAL_P99_MS = 1.0, 3.0
ACCESS_LINES = 20_000  # per measurement of the access line; 5 measurements per kind


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _processes(tmp: Path) -> Iterator[tuple[int, int, int]]:
    upstream_port, gateway_port = _free_port(), _free_port()
    tenants = tmp / "tenants.json"
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    tenants.write_text(json.dumps({"tenants": [{"id": "bench", "api_key_sha256": digest}]}))
    env = {
        **os.environ,
        "GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}",
        "GATEWAY_TENANTS_FILE": str(tenants),
        "GATEWAY_CLOUDWATCH_ENABLED": "false",
        "GATEWAY_LIFECYCLE_WATCH_ENABLED": "false",
        "GATEWAY_MAX_RUNNING_SEQUENCES": "1000",
        "GATEWAY_DEFAULT_TENANT_MAX_CONCURRENT_REQUESTS": "1000",
        "GATEWAY_PROBE_INTERVAL_S": "0.5",
        "GATEWAY_LOG_LEVEL": "warning",
    }
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.fake_vllm", "--port", str(upstream_port),
         "--tokens", str(TOKENS)],
    )  # fmt: skip
    gateway = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app",
         "--host", "127.0.0.1", "--port", str(gateway_port), "--no-access-log",
         "--log-level", "warning", "--loop", "uvloop", "--http", "httptools"],
        env=env,
    )  # fmt: skip
    try:
        yield upstream_port, gateway_port, gateway.pid
    finally:
        for process in (gateway, upstream):
            process.terminate()
        for process in (gateway, upstream):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


async def _wait_ready(port: int, deadline_s: float = 20.0) -> None:
    client = UpstreamClient(
        "127.0.0.1", port, connect_timeout_s=1, timeout_s=2, max_idle_connections=1
    )
    ends = time.monotonic() + deadline_s
    try:
        while time.monotonic() < ends:
            with contextlib.suppress(Exception):
                response = await client.request("GET", "/health/ready")
                await response.read()
                response.close()
                if response.status == 200:
                    return
            await asyncio.sleep(0.1)
    finally:
        client.close()
    raise RuntimeError("the gateway did not become ready")


@dataclass
class Round:
    latencies_ms: list[float]
    elapsed_s: float
    errors: int

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s


async def _round(port: int, concurrency: int, count: int, stream: bool) -> Round:
    body = json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "How did the index close today?"}],
            "max_tokens": TOKENS,
            "stream": stream,
        }
    ).encode()
    headers = [("Content-Type", "application/json"), ("Authorization", f"Bearer {KEY}")]
    client = UpstreamClient(
        "127.0.0.1", port, connect_timeout_s=2, timeout_s=10, max_idle_connections=concurrency
    )
    latencies: list[float] = []
    errors = 0
    remaining = 0

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            began = time.perf_counter()
            response = await client.request("POST", "/v1/chat/completions", body, headers)
            await response.read()
            response.close()
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status != 200:
                errors += 1

    try:
        # Warm the connections outside the measurement.
        remaining = concurrency * 4
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        latencies.clear()
        errors = 0
        remaining = count
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    finally:
        client.close()
    return Round(latencies, elapsed, errors)


async def _measure(upstream_port: int, gateway_port: int, gateway_pid: int) -> list[str]:
    await _wait_ready(gateway_port)
    started = time.monotonic()
    lines = [
        f"{'clients':>7} {'mode':>10} | {'direct p50/p99 ms':>18} | {'gateway p50/p99 ms':>18} "
        f"| {'added p50/p99 ms':>17} | {'req/s direct/gw (ratio)':>24} | gw CPU/req"
    ]
    for concurrency in (1, 64):
        for stream in (False, True):
            direct: list[Round] = []
            via: list[Round] = []
            cpu_s = 0.0
            for _ in range(ROUNDS):
                if time.monotonic() - started > BUDGET_S:
                    break
                direct.append(
                    await _round(upstream_port, concurrency, REQUESTS[concurrency], stream)
                )
                cpu_before = _cpu_s(gateway_pid)
                via.append(await _round(gateway_port, concurrency, REQUESTS[concurrency], stream))
                cpu_s += _cpu_s(gateway_pid) - cpu_before
            if not via:
                lines.append(
                    f"{concurrency:>7} {'stream' if stream else 'whole':>10} | skipped: out of time"
                )
                continue

            def med(rounds: list[Round], q: int) -> float:
                return statistics.median(r.percentile(q) for r in rounds)

            added50 = statistics.median(
                g.percentile(50) - d.percentile(50) for d, g in zip(direct, via, strict=True)
            )
            added99 = statistics.median(
                g.percentile(99) - d.percentile(99) for d, g in zip(direct, via, strict=True)
            )
            rps_d = statistics.median(r.rps for r in direct)
            rps_g = statistics.median(r.rps for r in via)
            errors = sum(r.errors for r in direct + via)
            cpu_ms = cpu_s * 1000 / sum(len(r.latencies_ms) for r in via)
            lines.append(
                f"{concurrency:>7} {'stream' if stream else 'whole':>10} | "
                f"{med(direct, 50):>8.2f} / {med(direct, 99):>7.2f} | "
                f"{med(via, 50):>8.2f} / {med(via, 99):>7.2f} | "
                f"{added50:>+7.2f} / {added99:>+7.2f} | "
                f"{rps_d:>7.0f} / {rps_g:>6.0f} ({rps_g / rps_d:.2f}) | {cpu_ms:.2f} ms"
                + (f"  ({errors} non-200)" if errors else "")
            )
    # The machine may be shared: its load says how far to trust the p99s.
    lines.append(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    lines.append(
        f"goal: added p50 <= {GOAL_P50_MS} ms, p99 <= {GOAL_P99_MS} ms; "
        f"{TOKENS} tokens per answer, medians of {ROUNDS} interleaved rounds, "
        f"{time.monotonic() - started:.0f} s"
    )
    return lines


def _access_line_us(request_metrics: RequestMetrics | None) -> float:
    """Median µs to build and format one streamed request's access line."""
    scope = {
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"content-type", b"application/json"), (b"x-request-id", b"req-0123")],
    }
    record = AccessRecord(tenant="bench", stream=True, ttft_ms=84.21, queue_ms=0.0, status=200)
    formatter = JsonFormatter()
    log_record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "POST", (), None)
    samples = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(ACCESS_LINES):
            fields = access_fields(scope, record, 200, 0.91234)
            if request_metrics is not None:
                request_metrics.annotate(fields)
            log_record.fields = fields
            formatter.format(log_record)
        samples.append((time.perf_counter() - began) / ACCESS_LINES * 1e6)
    return statistics.median(samples)


def _access_line_cost() -> str:
    plain = _access_line_us(None)
    emf = _access_line_us(
        RequestMetrics(
            namespace="FinsightServing",
            autoscaling_group_name="finsight-serving-prod",
            default_targets=SloTargets.from_seconds(5, 65),
        )
    )
    return (
        f"access line (built and formatted): plain {plain:.1f} µs, EMF {emf:.1f} µs "
        f"(ratio {emf / plain:.2f})"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, _processes(Path(tmp)) as ports:
        try:
            import uvloop

            lines = uvloop.run(_measure(*ports))
        except ImportError:
            lines = asyncio.run(_measure(*ports))
    lines.append(_access_line_cost())
    print("\n".join(lines))
