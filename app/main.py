"""The composition root: `create_app()` wires settings, services, routes and background tasks.

Run it as an instance does: `uvicorn --factory app.main:create_app --host 0.0.0.0 --port 8000`.
Importing this module does nothing; settings are read and clients made inside the factory
and the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import IO, Any

import httpx
from fastapi import FastAPI

from app.access import AccessLog
from app.admission import Admission
from app.circuit import CircuitBreaker
from app.cloudwatch import CloudWatchPublisher
from app.connections import ConnectionGuard
from app.drain import Drainer
from app.errors import install_error_handlers
from app.fast_path import GenerationFastPath
from app.gateway import Gateway
from app.imds import InstanceMetadata, LifecycleWatcher, counts_in_group_average
from app.lifecycle import LifecycleCompleter
from app.logs import configure_logging
from app.metrics import GatewayMetrics
from app.probe import ReadinessProbe
from app.proxy import Proxy
from app.request_metrics import RequestMetrics
from app.routes import health, metrics, openai_api
from app.settings import GatewaySettings, load_settings
from app.tenants import TenantRegistry, TenantsDocumentError, file_source, secret_source
from app.upstream import UpstreamClient
from app.upstream_load import UpstreamLoad

log = logging.getLogger("app")


def _exit_like_sigterm(previous: Any) -> Callable[[], None]:
    """After a drain, hand SIGTERM to the server's own handler so that it shuts down."""

    def exit_process() -> None:
        if callable(previous):
            previous(signal.SIGTERM, None)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    return exit_process


@dataclass
class Runtime:
    """What the gateway does to the world outside HTTP; tests swap these for fakes."""

    boto3_client: Callable[..., Any] | None = None
    install_signal_handlers: bool = True
    exit_process: Callable[[], None] | None = None
    imds_transport: httpx.AsyncBaseTransport | None = None
    log_stream: IO[str] | None = None  # None: stderr, which systemd appends to the log file

    def client(self, service: str, region: str | None) -> Any:
        if self.boto3_client is not None:
            return self.boto3_client(service, region_name=region)
        import boto3

        make_client: Callable[..., Any] = boto3.client
        return make_client(service, region_name=region)


def build_gateway(
    settings: GatewaySettings,
    runtime: Runtime,
    exit_process: Callable[[], None],
    metadata: InstanceMetadata | None,
) -> Gateway:
    gateway_metrics = GatewayMetrics(settings.max_queue_wait_s)
    if settings.tenants_secret_id is not None:
        source = secret_source(
            runtime.client("secretsmanager", settings.aws_region), settings.tenants_secret_id
        )
    else:
        assert settings.tenants_file is not None
        source = file_source(settings.tenants_file)
    tenants = TenantRegistry(
        source,
        default_max_concurrent_requests=settings.default_tenant_max_concurrent_requests,
        default_max_tokens=settings.default_max_tokens,
    )
    upstream = UpstreamClient(
        settings.upstream_host,
        settings.upstream_port,
        connect_timeout_s=settings.upstream_connect_timeout_s,
        timeout_s=settings.upstream_timeout_s,
        max_idle_connections=settings.upstream_max_idle_connections,
    )
    circuit = CircuitBreaker(settings.circuit_failure_threshold, settings.circuit_cooldown_s)
    queue_wait = gateway_metrics.queue_wait
    admission = Admission(
        settings.queue_limits,
        max_queue_wait_s=settings.max_queue_wait_s,
        retry_after_s=settings.retry_after_s,
        on_shed=gateway_metrics.record_shed,
        on_change=gateway_metrics.set_queue,
        on_queued=lambda tenant_id, waited_s: queue_wait.labels(tenant_id).observe(waited_s),
    )
    completer: LifecycleCompleter | None = None
    watcher: LifecycleWatcher | None = None
    if metadata is not None:
        assert settings.autoscaling_group_name and settings.lifecycle_hook_name
        completer = LifecycleCompleter(
            runtime.client("autoscaling", settings.aws_region),
            autoscaling_group_name=settings.autoscaling_group_name,
            hook_name=settings.lifecycle_hook_name,
            instance_id=metadata.instance_id,
            lifecycle_state=lambda: watcher.state if watcher is not None else None,
        )
    drainer = Drainer(
        admission,
        deadline_s=settings.drain_deadline_s,
        min_s=settings.drain_min_s,
        complete_lifecycle=completer,
        exit_process=exit_process,
    )
    if metadata is not None:
        watcher = LifecycleWatcher(
            metadata, drainer.begin, interval_s=settings.imds_poll_interval_s
        )
    return Gateway(
        settings=settings,
        metrics=gateway_metrics,
        tenants=tenants,
        upstream=upstream,
        circuit=circuit,
        admission=admission,
        probe=ReadinessProbe(
            upstream,
            interval_s=settings.probe_interval_s,
            timeout_s=settings.probe_timeout_s,
            freshness_s=settings.probe_freshness_s,
            failures_to_unready=settings.probe_failures_to_unready,
            on_result=lambda ok: circuit.record_success() if ok else circuit.record_failure(),
        ),
        upstream_load=UpstreamLoad(
            upstream, gateway_metrics, interval_s=settings.upstream_metrics_interval_s
        ),
        proxy=Proxy(
            upstream,
            circuit,
            gateway_metrics,
            stream_stall_timeout_s=settings.stream_stall_timeout_s,
        ),
        drainer=drainer,
        lifecycle=watcher,
    )


def _queue_depth(gateway: Gateway) -> float:
    """Sequences queued here plus vLLM's own waiting requests (when last read)."""
    waiting = gateway.upstream_load.waiting
    return gateway.admission.queued + (waiting or 0.0)


def _hold_reason(gateway: Gateway, watcher: LifecycleWatcher | None) -> str | None:
    """Why this instance must publish nothing now, if it must not: its numbers would pull
    the group's average down while it takes no traffic."""
    # A warm-pool instance runs the gateway too: IMDS says when it is InService.
    if watcher is not None and not counts_in_group_average(watcher.state):
        return "this instance is not in service"
    ready, reason = gateway.readiness()  # draining, or vLLM not (yet) serving
    return None if ready else f"not ready ({reason})"


async def _reload_tenants(gateway: Gateway) -> None:
    """One reload; any failure keeps the tenants in force, is counted and logged, never raised
    (the periodic loop must outlive it, or revoked keys would keep working)."""
    try:
        count = await asyncio.to_thread(gateway.tenants.reload)
        log.info("tenants reloaded: %d", count)
    except TenantsDocumentError as error:
        gateway.metrics.tenants_reload_errors.inc()
        log.error("%s; the previous tenants stay in force", error)
    except Exception:
        gateway.metrics.tenants_reload_errors.inc()
        log.exception("reloading the tenants failed; the previous tenants stay in force")


async def _reload_tenants_forever(gateway: Gateway) -> None:
    while True:
        await asyncio.sleep(gateway.settings.tenants_reload_s)
        await _reload_tenants(gateway)


def create_app(settings: GatewaySettings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or load_settings()
    runtime = runtime or Runtime()
    configure_logging(settings.log_level, runtime.log_stream)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        previous_sigterm = signal.getsignal(signal.SIGTERM)
        exit_process = runtime.exit_process
        if exit_process is None:
            exit_process = (
                _exit_like_sigterm(previous_sigterm)
                if runtime.install_signal_handlers
                else lambda: log.warning("drained; exit is left to the server")
            )
        metadata = (
            InstanceMetadata(settings.imds_url, runtime.imds_transport)
            if settings.lifecycle_watch_enabled
            else None
        )
        gateway = build_gateway(settings, runtime, exit_process, metadata)
        # The tenants must load at start: a gateway that authenticates nobody is useless.
        count = await asyncio.to_thread(gateway.tenants.reload)
        log.info("gateway starting: %d tenants, upstream %s", count, settings.upstream_url)
        app.state.gateway = gateway
        tasks = [
            loop.create_task(gateway.probe.run(), name="readiness-probe"),
            loop.create_task(gateway.upstream_load.run(), name="upstream-load"),
            loop.create_task(_reload_tenants_forever(gateway), name="tenants-reload"),
        ]
        watcher = gateway.lifecycle
        if watcher is not None:
            tasks.append(loop.create_task(watcher.run(), name="lifecycle-watcher"))
        if settings.cloudwatch_enabled:
            assert settings.autoscaling_group_name
            publisher = CloudWatchPublisher(
                runtime.client("cloudwatch", settings.aws_region),
                gateway.metrics,
                namespace=settings.cloudwatch_namespace,
                autoscaling_group_name=settings.autoscaling_group_name,
                interval_s=settings.cloudwatch_interval_s,
                read_demand=lambda: gateway.admission.demand,
                read_demand_peak=gateway.admission.take_peak,
                read_queue_depth=lambda: _queue_depth(gateway),
                read_refused_total=lambda: gateway.metrics.refused_total,
                hold_reason=lambda: _hold_reason(gateway, watcher),
            )
            tasks.append(loop.create_task(publisher.run(), name="cloudwatch-publisher"))
        if runtime.install_signal_handlers:
            loop.add_signal_handler(signal.SIGTERM, gateway.drainer.begin, "SIGTERM")
            loop.add_signal_handler(
                signal.SIGHUP, lambda: loop.create_task(_reload_tenants(gateway))
            )
        try:
            yield
        finally:
            if runtime.install_signal_handlers:
                loop.remove_signal_handler(signal.SIGHUP)
                loop.remove_signal_handler(signal.SIGTERM)
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(signal.SIGTERM, previous_sigterm)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            gateway.upstream.close()
            if metadata is not None:
                await metadata.aclose()

    app = FastAPI(
        title="finsight-serving gateway", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(GenerationFastPath)
    app.add_middleware(
        ConnectionGuard,
        max_connections=settings.max_connections,
        retry_after_s=settings.retry_after_s,
        max_drain_bytes=settings.max_body_bytes,
    )
    # Added last: outermost, so it times the fast path too. Its lines carry the per-request
    # metrics, for the group the scaling signal names (none on a local run).
    app.add_middleware(AccessLog, request_metrics=RequestMetrics.from_settings(settings))
    app.router.routes.extend(openai_api.generation_routes)
    app.include_router(openai_api.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    return app
