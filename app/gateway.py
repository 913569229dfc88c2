"""The gateway's services, wired together once per app, and its readiness verdict."""

from __future__ import annotations

from dataclasses import dataclass

from app.admission import Admission
from app.circuit import CircuitBreaker
from app.drain import Drainer
from app.imds import LifecycleWatcher
from app.metrics import GatewayMetrics
from app.probe import ReadinessProbe
from app.proxy import Proxy
from app.settings import GatewaySettings
from app.tenants import TenantRegistry
from app.upstream import UpstreamClient
from app.upstream_load import UpstreamLoad


@dataclass
class Gateway:
    settings: GatewaySettings
    metrics: GatewayMetrics
    tenants: TenantRegistry
    upstream: UpstreamClient
    circuit: CircuitBreaker
    admission: Admission
    probe: ReadinessProbe
    upstream_load: UpstreamLoad
    proxy: Proxy
    drainer: Drainer
    lifecycle: LifecycleWatcher | None = None  # with the lifecycle watcher on (on AWS)

    def readiness(self) -> tuple[bool, str]:
        if self.drainer.draining:
            return False, f"draining: {self.drainer.reason}"
        # The probe alone speaks for the model server: an open circuit (fed by the probe
        # and by connection failures) refuses requests, but never takes the instance out
        # of the load balancer on its own.
        return self.probe.healthy()
