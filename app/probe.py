"""Readiness probe: a 1-token completion against the upstream, on its own interval.

Health requests only read the latest result, so a load balancer polling /health/ready
never multiplies work on the GPU. The same probe keeps the list of served models fresh.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from app.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)

# The header marks probes apart from traffic in the upstream's logs (and in test fakes).
PROBE_HEADERS = (("Content-Type", "application/json"), ("X-Gateway-Probe", "readiness"))


class ReadinessProbe:
    def __init__(
        self,
        upstream: UpstreamClient,
        *,
        interval_s: float,
        timeout_s: float,
        freshness_s: float,
        failures_to_unready: int,
        clock: Callable[[], float] = time.monotonic,
        on_result: Callable[[bool], None] = lambda ok: None,
    ) -> None:
        self._upstream = upstream
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._freshness_s = freshness_s
        self._failures_to_unready = failures_to_unready
        self._clock = clock
        self._on_result = on_result  # the circuit breaker hears every probe's outcome
        self.models: frozenset[str] = frozenset()
        self.last_success: float | None = None
        self.consecutive_failures = 0

    def healthy(self) -> tuple[bool, str]:
        if self.last_success is None:
            return False, "starting: no successful probe yet"
        if self.consecutive_failures >= self._failures_to_unready:
            return False, f"upstream probe failed {self.consecutive_failures} times in a row"
        if self._clock() - self.last_success > self._freshness_s:
            return False, f"no successful probe in the last {self._freshness_s:g} s"
        return True, "ready"

    async def probe_once(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                models = await self._list_models()
                await self._one_token(min(models))
        except (UpstreamError, TimeoutError, ValueError, KeyError, TypeError) as error:
            self.consecutive_failures += 1
            # While vLLM loads its model (30-90 s) failures are expected: keep them quiet.
            level = logging.INFO if self.last_success is None else logging.WARNING
            log.log(
                level,
                "readiness probe failed (%d in a row): %s",
                self.consecutive_failures,
                error or type(error).__name__,
            )
            self._on_result(False)
            return False
        self.models = models
        self.last_success = self._clock()
        self.consecutive_failures = 0
        self._on_result(True)
        return True

    async def _list_models(self) -> frozenset[str]:
        response = await self._upstream.request("GET", "/v1/models", timeout_s=self._timeout_s)
        try:
            body = await response.read()
        finally:
            response.close()
        if response.status != 200:
            raise ValueError(f"/v1/models answered {response.status}")
        models = frozenset(str(card["id"]) for card in json.loads(body)["data"])
        if not models:
            raise ValueError("the upstream serves no model")
        return models

    async def _one_token(self, model: str) -> None:
        payload = json.dumps({"model": model, "prompt": "ping", "max_tokens": 1}).encode()
        response = await self._upstream.request(
            "POST", "/v1/completions", payload, PROBE_HEADERS, timeout_s=self._timeout_s
        )
        try:
            await response.read()
        finally:
            response.close()
        if response.status != 200:
            raise ValueError(f"1-token completion answered {response.status}")

    async def run(self) -> None:
        while True:
            await self.probe_once()
            await asyncio.sleep(self._interval_s)
