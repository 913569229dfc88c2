"""Liveness and readiness, as the load balancer and systemd see them."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse

from app.deps import GatewayDep

router = APIRouter()


@router.get("/health/live")
async def live() -> JSONResponse:
    return JSONResponse({"status": "live"})


@router.get("/health/ready")
async def ready(gateway: GatewayDep) -> JSONResponse:
    ok, reason = gateway.readiness()
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "reason": reason},
        status_code=200 if ok else 503,
    )
