"""Runs the gateway and the fake vLLM for real on 127.0.0.1 ports, inside a test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from app.gateway import Gateway
from app.main import Runtime, create_app
from app.settings import GatewaySettings
from tests.fakes.fake_vllm import FakeVllm, FakeVllmConfig

ACME_KEY = "sk-acme-0123456789"
GLOBEX_KEY = "sk-globex-9876543210"
MODEL = "fake-model"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def tenants_document(**limits: Any) -> str:
    return json.dumps(
        {
            "tenants": [
                {"id": "acme", "api_key_sha256": digest(ACME_KEY), **limits},
                {"id": "globex", "api_key_sha256": digest(GLOBEX_KEY)},
            ]
        }
    )


def local_settings(tenants_path: Path, upstream_port: int, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "upstream_url": f"http://127.0.0.1:{upstream_port}",
        "tenants_file": tenants_path,
        "cloudwatch_enabled": False,
        "lifecycle_watch_enabled": False,
        "probe_interval_s": 0.05,
        "upstream_metrics_interval_s": 0.05,
        "upstream_timeout_s": 5.0,
        "upstream_connect_timeout_s": 1.0,
        "drain_min_s": 0.0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[int]:
    """Serve an ASGI app with uvicorn on a free 127.0.0.1 port; yields the port."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        lifespan="auto",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("server stopped during startup")
                await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


@dataclass
class Stack:
    fake: FakeVllm
    app: FastAPI
    url: str
    upstream_port: int

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    def client(self, key: str | None = ACME_KEY, timeout: float = 5.0) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def wait_ready(self, ready: bool = True, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.gateway.readiness()[0] != ready:
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_stack(
    tmp_path: Path,
    *,
    fake_config: FakeVllmConfig | None = None,
    runtime: Runtime | None = None,
    tenants: str | None = None,
    wait_ready: bool = True,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    fake = FakeVllm(fake_config or FakeVllmConfig())
    tenants_file = tmp_path / "tenants.json"
    tenants_file.write_text(tenants or tenants_document())
    async with serve(fake.app) as upstream_port:
        settings = local_settings(tenants_file, upstream_port, **overrides)
        app = create_app(
            settings, runtime or Runtime(install_signal_handlers=False, exit_process=lambda: None)
        )
        async with serve(app) as port:
            stack = Stack(fake, app, f"http://127.0.0.1:{port}", upstream_port)
            if wait_ready:
                await stack.wait_ready()
            yield stack


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], **extra}
