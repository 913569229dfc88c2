"""Prometheus exposition of the gateway's metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from app.deps import GatewayDep

router = APIRouter()


@router.get("/metrics")
async def metrics(gateway: GatewayDep) -> Response:
    # Point-in-time values are set when scraped, so they never go stale between events.
    gateway.metrics.circuit_state.set(int(gateway.circuit.state))
    gateway.metrics.ready.set(1 if gateway.readiness()[0] else 0)
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)
