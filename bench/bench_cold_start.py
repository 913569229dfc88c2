"""Cold start: the weights' load time through S3 on this machine, and what the boot timelines
are worth in GPU-hours on the reference days.

1. A local S3 endpoint (moto_server on 127.0.0.1) holds shards of safetensors-sized files;
   the image's own `fetch-model.sh` copies them the way an instance does with
   `model_load = "download"` (the AWS CLI, 32 parallel requests), and a 16-reader ranged-GET
   loop (the Run:ai streamer's concurrency, boto3) reads them into memory the way
   `model_load = "stream"` does, minus the GPU. Prints seconds per GB for both. The
   streamer itself is not installed in the CPU vLLM venv, so it is not run here.
   Then the tiny model is served by the CPU vLLM straight from that endpoint through the
   streamer (`.venv-runai`, `local/vllm_server.sh` with `VLLM_LOAD_FORMAT=runai_streamer`,
   the command line the integration tests use): healthy time and the load vLLM logs.
2. The simulator on the reference days (`fleet check`'s: Thanksgiving week 2026) with the
   baked timeline (before), the streamed one (after), and the Stopped warm pool, each with
   the market-hours floor of 2 and with a floor of 1: GPU-hours and whether each trading
   day meets the SLO. The simulator draws its boots from `boot_timeline(...)`; the bench
   swaps which timeline it reads, nothing else.

Measured on the 2-core build machine (moto_server is the bottleneck, not the network):
about 6-9 s/GB for both the streamed access pattern and the download; the tiny model
streamed by vLLM was healthy in 60-80 s, as from local disk. The streamer library itself
failed on 128 MB shards from moto_server ("File access error" after good 206 answers), so
its own rate is not measured here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING
from unittest import mock

from infra.policy import FLEET_POLICY
from infra.policy.cold_start import WeightPath, boot_timeline
from infra.sim import aws as sim_aws
from infra.sim.check import REFERENCE_DAYS, REFERENCE_START, trading_dates
from infra.sim.metrics import latency_summary
from infra.sim.runner import Simulation, run_configs
from infra.sim.trace import local_midnight
from infra.sim.traffic import Scenario, generate

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ROOT = Path(__file__).resolve().parents[1]
FETCH_MODEL = ROOT / "ami" / "scripts" / "fetch-model.sh"
BUCKET = "finsight-models"
PREFIX = "bench-model/"
SHARDS = 4
SHARD_BYTES = int(os.environ.get("BENCH_SHARD_MB", "128")) * 1024**2
STREAM_READERS = 16
RANGE_BYTES = 16 * 1024**2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _moto_server() -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _stream_read(client: S3Client, keys: list[str]) -> int:
    """Ranged GETs of every shard, 16 in flight, into memory: the streamer's access pattern."""
    ranges = []
    for key in keys:
        size = client.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
        ranges += [
            (key, start, min(start + RANGE_BYTES, size) - 1)
            for start in range(0, size, RANGE_BYTES)
        ]

    def get(part: tuple[str, int, int]) -> int:
        key, first, last = part
        reply = client.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={first}-{last}")
        body = reply["Body"]
        return len(body.read())

    with ThreadPoolExecutor(STREAM_READERS) as pool:
        return sum(pool.map(get, ranges))


def measure_s3_load() -> None:
    import boto3

    aws_cli = shutil.which("aws")
    total = SHARDS * SHARD_BYTES
    with _moto_server() as endpoint, tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, **_aws_env(endpoint)}
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}config.json", Body=b"{}")
        keys = []
        for shard in range(SHARDS):
            key = f"{PREFIX}model-{shard + 1:05d}-of-{SHARDS:05d}.safetensors"
            client.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(SHARD_BYTES))
            keys.append(key)
        print(f"S3 load through moto_server on 127.0.0.1, {SHARDS} x {SHARD_BYTES / 1e6:.0f} MB")

        started = time.perf_counter()
        read = _stream_read(client, keys)
        elapsed = time.perf_counter() - started
        assert read == total
        print(
            f"  stream (16 ranged GETs in flight, to memory)  {elapsed:6.1f} s  "
            f"{elapsed / (total / 1e9):6.1f} s/GB"
        )

        if aws_cli is None:
            print("  download: no `aws` CLI on this machine; skipped")
            return
        target = Path(scratch) / "model"
        override = Path(scratch) / "vllm-model.env"
        started = time.perf_counter()
        subprocess.run(
            [str(FETCH_MODEL)],
            env={
                **env,
                "VLLM_MODEL_LOCATION": f"s3://{BUCKET}/{PREFIX}",
                "VLLM_MODEL_LOAD": "download",
                "FINSIGHT_FETCHED_MODEL_DIR": str(target),
                "FINSIGHT_MODEL_OVERRIDE": str(override),
                "FINSIGHT_INSTANCE_STORE_GLOB": str(Path(scratch) / "no-nvme*"),
            },
            check=True,
            timeout=600,
        )
        elapsed = time.perf_counter() - started
        copied = sum(path.stat().st_size for path in target.glob("*.safetensors"))
        assert copied == total
        print(
            f"  download (fetch-model.sh, aws s3 sync x32)     {elapsed:6.1f} s  "
            f"{elapsed / (total / 1e9):6.1f} s/GB"
        )


@contextlib.contextmanager
def _timeline(path: WeightPath) -> Iterator[None]:
    """The simulator's boots drawn from `path`'s timeline (fresh or warm pool, as it asks)."""

    def chosen(path_: WeightPath = path, warm_pool: bool = False) -> object:
        return boot_timeline(path, warm_pool)

    with mock.patch.object(sim_aws, "boot_timeline", chosen):
        yield


def simulate_reference_days() -> None:
    trace = generate(Scenario(), FLEET_POLICY.schedule, REFERENCE_START, REFERENCE_DAYS, seed=0)
    market = FLEET_POLICY.market_hours
    dates = trading_dates(trace, FLEET_POLICY.schedule)
    print(
        f"reference days {REFERENCE_START} + {REFERENCE_DAYS} ({len(dates)} trading), "
        "config policy-aws"
    )
    print(
        f"  {'boot':<24}{'floor':>6}{'GPU-h':>8}{'days in SLO':>13}{'worst p99 TTFT':>16}"
        f"{'burst->cap p50/max':>20}"
    )
    for label, path, warm in (
        ("baked (before)", WeightPath.BAKED, False),
        ("stream (after)", WeightPath.STREAM, False),
        ("stream + warm pool", WeightPath.STREAM, True),
    ):
        for floor in (market.min_replicas, 1):
            policy = dataclasses.replace(
                FLEET_POLICY, market_hours=dataclasses.replace(market, min_replicas=floor)
            )
            mechanics = dataclasses.replace(sim_aws.AwsMechanics(), warm_pool=warm)
            with _timeline(path):
                outcome = run_configs(
                    trace, Simulation(policy, seed=0, mechanics=mechanics), ("policy-aws",)
                )
            run, report = outcome.run("policy-aws"), outcome.report("policy-aws")
            slo = policy.slo
            met, worst = 0, 0.0
            for date in dates:
                begins = dt_midnight(date)
                mask = (trace.arrival_s >= begins) & (trace.arrival_s < begins + 86_400)
                day = latency_summary(run.ttft_s[mask], run.e2e_s[mask], slo)
                met += day.meets_slo
                worst = max(worst, day.p99_ttft_s)
            burst = (
                f"{report.burst_to_capacity_s:.0f}/{report.burst_to_capacity_max_s:.0f} s"
                if report.burst_to_capacity_s is not None and report.burst_to_capacity_max_s
                else "n/a"
            )
            print(
                f"  {label:<24}{floor:>6}{report.gpu_hours:>8.1f}{met:>9}/{len(dates)}"
                f"{worst:>14.2f} s{burst:>20}"
            )


def dt_midnight(date: dt.date) -> float:
    return local_midnight(date, FLEET_POLICY.schedule.zone)


TINY_MODEL = ROOT / ".serve" / "model"
RUNAI_VENV = ROOT / ".venv-runai"


def serve_tiny_model_from_s3() -> None:
    """The CPU vLLM serving the tiny model from moto_server through the Run:ai streamer."""
    import boto3

    if not (RUNAI_VENV / ".installed").exists() or not TINY_MODEL.is_dir():
        print("  vLLM from S3: run `make runai-venv` first (make bench does); skipped")
        return
    with _moto_server() as endpoint, tempfile.TemporaryDirectory() as scratch:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        size = 0
        for path in TINY_MODEL.iterdir():
            if path.is_file():
                client.put_object(Bucket=BUCKET, Key=f"tiny/{path.name}", Body=path.read_bytes())
                size += path.stat().st_size
        port = _free_port()
        env = {
            **os.environ,
            **_aws_env(endpoint),
            # moto answers path-style requests only.
            "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0",
            "RUNAI_STREAMER_CONCURRENCY": "16",
            "RUNAI_STREAMER_MEMORY_LIMIT": str(4 * 1024**3),
            "VLLM_LOAD_FORMAT": "runai_streamer",
            "VLLM_VENV": str(RUNAI_VENV),
            # The config and tokenizer files the streamer pulls land here, not in ~/.cache.
            "XDG_CACHE_HOME": scratch,
            "VLLM_CACHE_ROOT": str(Path(scratch) / "vllm"),
        }
        log_path = Path(scratch) / "vllm.log"
        started = time.perf_counter()
        with log_path.open("w") as log:
            server = subprocess.Popen(
                [str(ROOT / "local" / "vllm_server.sh"), f"s3://{BUCKET}/tiny/", "tiny", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            healthy = _wait_healthy(port, server, deadline_s=300)
            answer = _complete(port)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        text = log_path.read_text()
        if healthy is None:
            print("  vLLM from S3: not healthy; log tail:\n" + text[-2000:])
            return
        # The CPU runner logs no load time; the streamer's progress bar does (whole seconds).
        bar = re.search(r"Runai Model Streamer: 100% Completed \| \d+/\d+ \[(\d+):(\d+)<", text)
        load = f"{int(bar.group(1)) * 60 + int(bar.group(2))} s" if bar else "an unlogged time"
        print(
            f"  vLLM (CPU) from s3://{BUCKET}/tiny/ via runai_streamer: healthy in "
            f"{healthy - started:.0f} s, {size / 1e6:.1f} MB of weights streamed in {load}; "
            f"completion: {answer!r}"
        )


def _wait_healthy(port: int, server: subprocess.Popen[bytes], deadline_s: float) -> float | None:
    import urllib.request

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and server.poll() is None:
        url = f"http://127.0.0.1:{port}/health"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as reply:
            if reply.status == 200:
                return time.perf_counter()
        time.sleep(1)
    return None


def _complete(port: int) -> str:
    import json
    import urllib.request

    body = json.dumps({"model": "tiny", "prompt": "Revenue", "max_tokens": 4}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        return str(json.loads(reply.read())["choices"][0]["text"])


def main() -> None:
    measure_s3_load()
    serve_tiny_model_from_s3()
    simulate_reference_days()
