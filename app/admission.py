"""Admission: a per-instance cap on ongoing requests and a per-tenant cap (fairness).

Both caps count sequences, not HTTP requests: vLLM runs `n` sequences for each prompt of a
request, so one request asking for 4 prompts x n=2 weighs 8 (its `cost`). Refusals are
immediate (503 or 429 with Retry-After): a queue here would only hide load from the
autoscaler, which scales on the number of requests in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.errors import GatewayError
from app.tenants import Tenant


class Ticket:
    """One admitted request; `release()` frees its slots exactly once."""

    __slots__ = ("_admission", "_released", "cost", "tenant_id")

    def __init__(self, admission: Admission, tenant_id: str, cost: int) -> None:
        self._admission = admission
        self._released = False
        self.tenant_id = tenant_id
        self.cost = cost

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission._release(self.tenant_id, self.cost)


class Admission:
    def __init__(
        self,
        max_ongoing_requests: int,
        retry_after_s: int,
        on_shed: Callable[[str], None] = lambda reason: None,
        on_change: Callable[[int], None] = lambda ongoing: None,
    ) -> None:
        self.max_ongoing_requests = max_ongoing_requests
        self._retry_after_s = retry_after_s
        self._on_shed = on_shed
        self._on_change = on_change
        self.ongoing = 0
        self._peak = 0
        self._per_tenant: dict[str, int] = {}
        self.draining = False
        self._idle: asyncio.Event | None = None

    def take_peak(self) -> int:
        """The most requests in flight at once since the last call (at least the current
        count): what a sampler would miss between two samples."""
        peak = max(self._peak, self.ongoing)
        self._peak = self.ongoing
        return peak

    def tenant_ongoing(self, tenant_id: str) -> int:
        return self._per_tenant.get(tenant_id, 0)

    def admit(self, tenant: Tenant, cost: int = 1) -> Ticket:
        """Take `cost` sequences' slots for the tenant, or refuse at once.

        A cost above either cap could never be admitted: validation refuses such a request
        with 400 before it gets here (see `app.validation`).
        """
        if self.draining:
            self._on_shed("draining")
            raise GatewayError(
                503,
                "This instance is draining; retry on another instance.",
                "service_unavailable",
                retry_after_s=self._retry_after_s,
                shed_reason="draining",
            )
        if self.ongoing + cost > self.max_ongoing_requests:
            self._on_shed("instance_full")
            raise GatewayError(
                503,
                f"This instance is at its limit of {self.max_ongoing_requests} ongoing "
                "requests (counted in sequences: prompts x n); retry shortly.",
                "service_unavailable",
                retry_after_s=self._retry_after_s,
                shed_reason="instance_full",
            )
        used = self._per_tenant.get(tenant.id, 0)
        if used + cost > tenant.max_concurrent_requests:
            self._on_shed("tenant_limit")
            raise GatewayError(
                429,
                f"Too many concurrent requests for this tenant (limit "
                f"{tenant.max_concurrent_requests} sequences per instance, counted as "
                "prompts x n); retry shortly.",
                "rate_limit_exceeded",
                retry_after_s=self._retry_after_s,
                shed_reason="tenant_limit",
            )
        self._per_tenant[tenant.id] = used + cost
        self.ongoing += cost
        if self.ongoing > self._peak:
            self._peak = self.ongoing
        self._on_change(self.ongoing)
        return Ticket(self, tenant.id, cost)

    def _release(self, tenant_id: str, cost: int) -> None:
        left = self._per_tenant[tenant_id] - cost
        if left:
            self._per_tenant[tenant_id] = left
        else:
            del self._per_tenant[tenant_id]
        self.ongoing -= cost
        self._on_change(self.ongoing)
        if self.ongoing == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait_idle(self) -> None:
        """Return once no admitted request is in flight (the drain waits on this)."""
        while self.ongoing:
            if self._idle is None:
                self._idle = asyncio.Event()
            await self._idle.wait()
