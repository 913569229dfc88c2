"""Reads the upstream's own load (vLLM's running and waiting requests) from its /metrics."""

from __future__ import annotations

import asyncio
import logging

from app.metrics import UPSTREAM_RUNNING, UPSTREAM_WAITING, GatewayMetrics, parse_upstream_gauges
from app.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)


class UpstreamLoad:
    def __init__(
        self, upstream: UpstreamClient, metrics: GatewayMetrics, *, interval_s: float
    ) -> None:
        self._upstream = upstream
        self._metrics = metrics
        self._interval_s = interval_s
        self.running: float | None = None
        self.waiting: float | None = None

    async def scrape_once(self) -> bool:
        try:
            async with asyncio.timeout(max(1.0, self._interval_s)):
                response = await self._upstream.request("GET", "/metrics")
                try:
                    text = (await response.read()).decode()
                finally:
                    response.close()
            if response.status != 200:
                raise ValueError(f"/metrics answered {response.status}")
            gauges = parse_upstream_gauges(text)
        except (UpstreamError, TimeoutError, ValueError) as error:
            self._metrics.upstream_scrape_errors.inc()
            log.debug("reading the upstream's /metrics failed: %s", error)
            return False
        self.running = gauges.get(UPSTREAM_RUNNING)
        self.waiting = gauges.get(UPSTREAM_WAITING)
        if self.running is not None:
            self._metrics.upstream_running.set(self.running)
        if self.waiting is not None:
            self._metrics.upstream_waiting.set(self.waiting)
        return True

    async def run(self) -> None:
        while True:
            await self.scrape_once()
            await asyncio.sleep(self._interval_s)
