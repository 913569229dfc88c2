"""Fixtures for the local-replica tests: one real vLLM CPU server per session, gateways in front.

vLLM takes tens of seconds to start, so one server serves the whole session; only the
readiness test stops and restarts it, and leaves it healthy. Process logs are shown
under the report of any test that fails.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.processes import (
    STARTED,
    TINY_MODEL_DIR,
    VLLM_VENV,
    ClientTenant,
    GatewayServer,
    VllmServer,
    gateway_env,
    make_tenant,
    write_tenants,
)

# What the tests measured (start-up times, memory, drain time), printed after the run.
FIGURES: dict[str, float] = {}

# The readiness probe runs often here so that a stop shows within a second or two; in
# production it runs every 5 s.
PROBE_INTERVAL_S = 0.5
GATEWAY_SETTINGS: dict[str, str | float] = {
    "probe_interval_s": PROBE_INTERVAL_S,
    "probe_timeout_s": 5.0,
    # The bursts below oversubscribe 2 cores shared with vLLM's engine; a connect to vLLM
    # has been seen to wait past the 2 s default there, which is not what is tested here.
    "upstream_connect_timeout_s": 10.0,
    "upstream_metrics_interval_s": 0.1,
    # Admission counts sequences (prompts x n): the queue-depth burst sends all of its
    # 4 x 2 prompts x n=40 on to vLLM at once, for vLLM's own queue to fill.
    "max_running_sequences": 320,
    "max_n": 40,
    "drain_deadline_s": 60.0,
}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for process in STARTED:
            report.sections.append(
                (f"{process.name} log ({process.log_path}), last lines", process.log_tail())
            )
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("local replica figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value:.1f}")


def _tiny_model(tmp_factory: pytest.TempPathFactory) -> Path:
    """The model `make tiny-model` made, or one made now for this session."""
    if not (VLLM_VENV / ".installed").exists():
        pytest.fail(f"{VLLM_VENV} is not installed: run `make vllm-venv` (make test does)")
    model_dir = TINY_MODEL_DIR
    if not (model_dir / "finsight_model.json").exists():
        model_dir = tmp_factory.mktemp("tiny-model")
        subprocess.run(
            [
                str(VLLM_VENV / "bin" / "python"),
                "local/make_tiny_model.py",
                "--out",
                str(model_dir),
            ],
            cwd=TINY_MODEL_DIR.parents[1],
            check=True,
            timeout=300,
        )
    return model_dir


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replica-logs")


# Package scope, not session: vLLM's CPU worker keeps a core busy even when idle, so a
# server kept until the session ends would starve the stress suite's own vLLM start.
@pytest.fixture(scope="package")
def vllm(tmp_path_factory: pytest.TempPathFactory, logs_dir: Path) -> Iterator[VllmServer]:
    server = VllmServer(logs_dir / "vllm.log", model_dir=_tiny_model(tmp_path_factory))
    server.start()
    try:
        FIGURES["vllm_time_to_healthy_s"] = server.wait_up()
        FIGURES["vllm_rss_idle_mib"] = server.rss_mib()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tenant() -> ClientTenant:
    # Room for the concurrency tests: the per-tenant cap is not what they exercise.
    # Sequences, as admission counts them: the queue-depth burst's 4 requests x 2 x n=40.
    return make_tenant("acme", max_concurrent_requests=320, max_tokens=256)


@pytest.fixture(scope="session")
def tenants_file(tmp_path_factory: pytest.TempPathFactory, tenant: ClientTenant) -> Path:
    path = tmp_path_factory.mktemp("tenants") / "tenants.json"
    write_tenants(path, [tenant])
    return path


@pytest.fixture(scope="package")
def start_gateway(
    vllm: VllmServer, tenants_file: Path, logs_dir: Path
) -> Iterator[Callable[..., GatewayServer]]:
    """Starts gateways in front of the session's vLLM; all are stopped at the end."""
    started: list[GatewayServer] = []

    def start(**overrides: str | float) -> GatewayServer:
        log_path = logs_dir / f"gateway-{len(started)}.log"
        env = gateway_env(vllm.url, tenants_file, **(GATEWAY_SETTINGS | overrides))
        gateway = GatewayServer(log_path, env)
        started.append(gateway)
        gateway.start()
        gateway.wait_ready()
        return gateway

    yield start
    for gateway in started:
        gateway.stop(grace_s=10.0)


@pytest.fixture(scope="package")
def gateway(start_gateway: Callable[..., GatewayServer]) -> GatewayServer:
    """The session's gateway in front of the session's vLLM."""
    return start_gateway()


def make_client(gateway: GatewayServer, tenant: ClientTenant, **options: Any) -> openai.OpenAI:
    # No retries: a test must see the gateway's first answer, 503s included.
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=tenant.key, max_retries=0, **options)


@pytest.fixture
def client(gateway: GatewayServer, tenant: ClientTenant) -> Iterator[openai.OpenAI]:
    with make_client(gateway, tenant, timeout=60.0) as sdk:
        yield sdk
