"""One access line per finished request, written by the outermost middleware.

The handlers fill in what only they know (the tenant, whether it streamed, the time to the
first token, why it was shed) on the request's `AccessRecord`; the middleware adds the
route, the status and the duration to the last byte, and logs the line once the exchange
is over. It never logs the body, the query string or a header other than X-Request-Id:
prompts and keys stay out of the logs. With `RequestMetrics`, an inference request's line
also says whether it met the SLO and is an Embedded Metric Format document
(app/request_metrics.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.request_metrics import RequestMetrics

log = logging.getLogger("app.access")

SCOPE_KEY = "finsight.access"
MAX_ROUTE_CHARS = 256
MAX_REQUEST_ID_CHARS = 128


@dataclass(slots=True)
class AccessRecord:
    tenant: str | None = None
    stream: bool | None = None
    ttft_ms: float | None = None
    queue_ms: float | None = None  # time waited for a turn in the queue (0: ran at once)
    shed_reason: str | None = None
    # What the handler counted when it differs from what was sent (a client gone: 499).
    status: int | None = None


def access_record(scope: Scope) -> AccessRecord:
    """The request's record; a detached one when the middleware is not installed."""
    record = scope.get(SCOPE_KEY)
    return record if isinstance(record, AccessRecord) else AccessRecord()


def access_fields(
    scope: Scope, record: AccessRecord, status: int, duration_s: float
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "method": scope.get("method", ""),
        "route": scope.get("path", "")[:MAX_ROUTE_CHARS],
        "status": status,
        "duration_ms": round(duration_s * 1000, 2),
    }
    if record.tenant is not None:
        fields["tenant"] = record.tenant
    if record.stream is not None:
        fields["stream"] = record.stream
    if record.queue_ms is not None:
        fields["queue_ms"] = record.queue_ms
    if record.ttft_ms is not None:
        fields["ttft_ms"] = record.ttft_ms
    if record.shed_reason is not None:
        fields["shed_reason"] = record.shed_reason
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            fields["request_id"] = value[:MAX_REQUEST_ID_CHARS].decode("latin-1")
            break
    return fields


class AccessLog:
    def __init__(self, app: ASGIApp, request_metrics: RequestMetrics | None = None) -> None:
        self.app = app
        self.request_metrics = request_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        record = AccessRecord()
        scope[SCOPE_KEY] = record
        started = time.perf_counter()
        sent_status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal sent_status
            if message["type"] == "http.response.start":
                sent_status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # Nothing sent: an exception escaped, which the server answers with 500.
            status = record.status or sent_status or 500
            fields = access_fields(scope, record, status, time.perf_counter() - started)
            if self.request_metrics is not None:
                self.request_metrics.annotate(fields)
            method, route = fields["method"], fields["route"]
            log.info("%s %s %d", method, route, status, extra={"fields": fields})
