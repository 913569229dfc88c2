"""The factory: nothing at import time, settings from the environment, clear refusals."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest

from app.main import create_app
from app.settings import SettingsError


def test_importing_the_app_reads_nothing_and_starts_nothing() -> None:
    code = (
        "import os, sys, threading\n"
        "for k in list(os.environ):\n"
        "    k.startswith('GATEWAY_') and os.environ.pop(k)\n"
        "import app.main\n"
        "assert threading.active_count() == 1\n"
        "assert 'torch' not in sys.modules and 'vllm' not in sys.modules\n"
        "assert 'boto3' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_create_app_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TENANTS_FILE", "/nonexistent/tenants.json")
    monkeypatch.setenv("GATEWAY_CLOUDWATCH_ENABLED", "false")
    monkeypatch.setenv("GATEWAY_LIFECYCLE_WATCH_ENABLED", "false")
    monkeypatch.setenv("GATEWAY_UPSTREAM_URL", "http://127.0.0.1:9001")
    app = create_app()
    assert app.state.settings.upstream_port == 9001
    assert str(app.state.settings.tenants_file) == "/nonexistent/tenants.json"

    async def live() -> int:
        # Liveness needs no started services, so it answers without the lifespan.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            return (await http.get("/health/live")).status_code

    assert asyncio.run(live()) == 200


def test_create_app_refuses_bad_settings_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_TENANTS_FILE", "/etc/tenants.json")
    monkeypatch.setenv("GATEWAY_CLOUDWATCH_ENABLED", "false")
    monkeypatch.setenv("GATEWAY_LIFECYCLE_WATCH_ENABLED", "false")
    monkeypatch.setenv("GATEWAY_MAX_RUNNING_SEQUENCES", "-3")
    with pytest.raises(SettingsError, match="GATEWAY_MAX_RUNNING_SEQUENCES"):
        create_app()
