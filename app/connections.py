"""Client connections: a process-wide cap on HTTP exchanges in flight, and no connection
kept open behind an answer that left the request body unread.

uvicorn holds a connection open while a client sends its body, however slowly, and keeps
it alive after an answer that did not read the body (a 401, a 413 by Content-Length, a 408,
a refusal while not ready), reading the rest of that body for as long as it comes. Such an
answer first reads and discards what the client still sends within `linger_s` (so that a
client that sent its whole body at once reads its answer on a kept-alive connection, with
no reset); if the body is still incomplete then, the answer carries `Connection: close`,
which makes uvicorn close the connection once it is sent. The cap bounds what slow clients
can hold at once; past it, an exchange gets a fast 503 (health checks excepted: the load
balancer must still see the instance's state).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access import access_record

_CLOSE = (b"connection", b"close")
_EXEMPT_PREFIX = "/health/"


def _declares_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return bool(value.strip(b" \t0"))
        if name == b"transfer-encoding":
            return True
    return False


class ConnectionGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_connections: int,
        retry_after_s: int,
        max_drain_bytes: int,
        linger_s: float = 1.0,
    ) -> None:
        self.app = app
        self.max_connections = max_connections
        self.max_drain_bytes = max_drain_bytes
        self.linger_s = linger_s
        self._retry_after = str(retry_after_s).encode()
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_connections and not scope["path"].startswith(_EXEMPT_PREFIX):
            await self._refuse(scope, send)
            return
        body_pending = _declares_body(scope)

        async def receive_noting_body() -> Message:
            nonlocal body_pending
            message = await receive()
            if not message.get("more_body", False):
                body_pending = False
            return message

        async def send_closing_if_unread(message: Message) -> None:
            nonlocal body_pending
            if message["type"] == "http.response.start" and body_pending:
                body_pending = False
                if not await self._drain(receive):
                    message["headers"] = [*message.get("headers", ()), _CLOSE]
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, receive_noting_body, send_closing_if_unread)
        finally:
            self.in_flight -= 1

    async def _drain(self, receive: Receive) -> bool:
        """Read and drop the rest of the body; False if it did not all come in time."""
        left = self.max_drain_bytes
        try:
            async with asyncio.timeout(self.linger_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return False
                    left -= len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return True
                    if left < 0:
                        return False
        except TimeoutError:
            return False

    async def _refuse(self, scope: Scope, send: Send) -> None:
        access_record(scope).shed_reason = "connection_limit"
        gateway = getattr(scope["app"].state, "gateway", None) if "app" in scope else None
        if gateway is not None:
            gateway.metrics.record_shed("connection_limit")
        body = (
            b'{"error": {"message": "This instance is at its limit of %d requests in '
            b'progress; retry shortly.", "type": "service_unavailable", "param": null, '
            b'"code": 503}}' % self.max_connections
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", self._retry_after),
            _CLOSE,
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
