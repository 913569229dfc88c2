"""Request dependencies: the gateway's services and the calling tenant.

Async on purpose: FastAPI runs plain `def` dependencies in a thread pool, which costs more
than the work they do.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from app.errors import GatewayError
from app.gateway import Gateway
from app.tenants import Tenant


async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def get_tenant(
    gateway: GatewayDep, authorization: Annotated[str | None, Header()] = None
) -> Tenant:
    try:
        return gateway.tenants.authenticate(authorization)
    except GatewayError:
        gateway.metrics.requests.labels("-", "auth", "401").inc()
        raise


TenantDep = Annotated[Tenant, Depends(get_tenant)]
