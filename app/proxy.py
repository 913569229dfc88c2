"""Forwards admitted requests to the upstream: whole JSON answers or SSE streams unbuffered.

It owns what happens once a request holds an admission ticket: the circuit breaker, the
mapping of upstream failures to 502/504, latency and TTFT, and releasing the ticket when
the last byte has gone (or the client has gone: the upstream connection is then closed,
which makes vLLM abort the generation).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.access import access_record
from app.admission import CLIENT_CLOSED, Ticket
from app.circuit import CircuitBreaker, Permit
from app.errors import GatewayError, render
from app.metrics import GatewayMetrics
from app.upstream import (
    UpstreamClient,
    UpstreamConnectError,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# A stream the gateway ended because its client stopped reading (recorded, never sent).
STREAM_STALLED = 408


class ClientGone(Exception):
    """The client disconnected while we waited on the upstream."""


class _ProxiedStream(Response):
    """Relays an SSE stream; its clean-up runs however the exchange ends.

    Written against ASGI directly rather than as a StreamingResponse: one asyncio task
    watches for the client leaving (and cancels the relay, which closes the upstream
    connection), where Starlette's version spins up an anyio task group per stream, a
    measurable share of the gateway's CPU per streamed request. A client that stops
    reading blocks our writes (the server's flow control); if one write stays blocked for
    `stall_timeout_s`, the stream is ended the same way, so a stalled reader cannot keep
    its admission slot. One timer per stream checks that, re-armed every `stall_timeout_s`,
    rather than a timeout per chunk.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        on_close: Callable[[int], None],
        stall_timeout_s: float,
    ) -> None:
        # No Response.__init__: it would add the Content-Length of an empty body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self._content = content
        self._on_close = on_close
        self._stall_timeout_s = stall_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        stall_timeout_s = self._stall_timeout_s
        cut_short_by = 0  # CLIENT_CLOSED or STREAM_STALLED once we end the stream early
        writing_since = 0.0  # when the write in progress began; 0.0 between writes

        def cut_short(status: int) -> None:
            nonlocal cut_short_by
            if not cut_short_by:
                cut_short_by = status
                task.cancel()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            cut_short(CLIENT_CLOSED)

        timer: asyncio.TimerHandle

        def check_stall() -> None:
            nonlocal timer
            if writing_since and loop.time() - writing_since >= stall_timeout_s:
                log.warning("stream ended: the client read nothing for %g s", stall_timeout_s)
                cut_short(STREAM_STALLED)
                return
            timer = loop.call_at((writing_since or loop.time()) + stall_timeout_s, check_stall)

        watcher = loop.create_task(watch())
        timer = loop.call_later(stall_timeout_s, check_stall)
        try:
            writing_since = loop.time()
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            writing_since = 0.0
            async for chunk in self._content:
                writing_since = loop.time()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                writing_since = 0.0
            writing_since = loop.time()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not cut_short_by:
                raise
            task.uncancel()
        finally:
            watcher.cancel()
            timer.cancel()
            with contextlib.suppress(Exception):
                await self._content.aclose()
            self._on_close(cut_short_by)


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (the body is read)."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            task.uncancel()
            raise ClientGone from None
        raise
    finally:
        watcher.cancel()


class Proxy:
    def __init__(
        self,
        upstream: UpstreamClient,
        circuit: CircuitBreaker,
        metrics: GatewayMetrics,
        *,
        stream_stall_timeout_s: float = 30.0,
    ) -> None:
        self._upstream = upstream
        self._circuit = circuit
        self._metrics = metrics
        self._stream_stall_timeout_s = stream_stall_timeout_s

    def check_circuit(self, retry_after_s: int) -> Permit:
        """The circuit's leave for one request, to hand to `forward`; 503 if it is open."""
        permit = self._circuit.allow()
        if permit is None:
            self._metrics.record_shed("circuit_open")
            raise GatewayError(
                503,
                "The model server is failing; requests are refused until it recovers.",
                "service_unavailable",
                retry_after_s=max(retry_after_s, self._circuit.retry_after_s),
                shed_reason="circuit_open",
            )
        return permit

    async def _send(
        self,
        path: str,
        body: bytes,
        headers: list[tuple[str, str]],
        permit: Permit,
        stream: bool,
    ) -> UpstreamResponse:
        """One upstream exchange up to its headers, feeding the circuit breaker.

        Only evidence that vLLM is unwell counts as a failure: no connection, a connection
        broken before the headers, or the headers of a stream (which vLLM sends as soon as
        it takes the request) not coming in time. vLLM sends a whole answer's headers only
        once the generation is over, so a whole answer that outlasts the timeout is that
        tenant's long generation: its 504, no failure (the readiness probe, which also
        feeds the breaker, tells a wedged engine apart).
        """
        try:
            response = await self._upstream.request("POST", path, body, headers)
        except UpstreamTimeout as error:
            if stream:
                self._circuit.record_failure(permit)
                raise GatewayError(
                    504, f"The model server did not answer in time: {error}", "upstream_timeout"
                ) from None
            self._circuit.release_trial(permit)
            raise GatewayError(
                504,
                f"The answer took longer than {self._upstream.timeout_s:g} s to generate; "
                "ask for fewer tokens, or stream it.",
                "upstream_timeout",
            ) from None
        except UpstreamError as error:
            self._circuit.record_failure(permit)
            kind = "upstream_unreachable" if isinstance(error, UpstreamConnectError) else None
            raise GatewayError(
                502, f"The model server could not be reached: {error}", kind or "upstream_error"
            ) from None
        except BaseException:
            self._circuit.release_trial(permit)
            raise
        self._circuit.record_success(permit)
        return response

    @staticmethod
    def _whole_answer(upstream: UpstreamResponse, content: bytes) -> Response:
        """The upstream's complete answer as ours: passed on as sent, but a 5xx is our 502."""
        if upstream.status >= 500:
            try:
                detail = json.loads(content)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                detail = content[:200].decode(errors="replace")
            raise GatewayError(
                502, f"The model server failed (HTTP {upstream.status}): {detail}", "upstream_error"
            )
        media_type = (upstream.header(b"content-type") or b"application/json").decode()
        return Response(content, status_code=upstream.status, media_type=media_type)

    async def forward(
        self,
        request: Request,
        route: str,
        body: bytes,
        stream: bool,
        ticket: Ticket,
        on_done: Callable[[int], None],
        permit: Permit,
    ) -> Response:
        """Forward a validated body to the upstream's path of the same name as `route`;
        the ticket is released when the answer is complete."""
        started = time.perf_counter()
        headers = [("Content-Type", "application/json")]
        request_id = request.headers.get("x-request-id")
        if request_id:
            headers.append(("X-Request-Id", request_id[:128]))
        if stream:
            return await self._forward_stream(
                request, route, body, headers, ticket, on_done, started, permit
            )
        status = CLIENT_CLOSED
        try:
            response = await until_disconnect(request, self._whole(route, body, headers, permit))
            status = response.status_code
            return response
        except GatewayError as error:
            status = error.status
            raise
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        finally:
            ticket.release()
            self._metrics.latency.labels(route, "false").observe(time.perf_counter() - started)
            on_done(status)

    async def _whole(
        self, path: str, body: bytes, headers: list[tuple[str, str]], permit: Permit
    ) -> Response:
        upstream = await self._send(path, body, headers, permit, stream=False)
        try:
            content = await upstream.read()
        except UpstreamTimeout as error:
            raise GatewayError(
                504, f"The model server stalled: {error}", "upstream_timeout"
            ) from None
        except UpstreamError as error:
            raise GatewayError(
                502, f"The model server broke off: {error}", "upstream_error"
            ) from None
        finally:
            upstream.close()
        return self._whole_answer(upstream, content)

    async def _forward_stream(
        self,
        request: Request,
        route: str,
        body: bytes,
        headers: list[tuple[str, str]],
        ticket: Ticket,
        on_done: Callable[[int], None],
        started: float,
        permit: Permit,
    ) -> Response:
        try:
            upstream = await until_disconnect(
                request, self._send(route, body, headers, permit, stream=True)
            )
        except ClientGone:
            ticket.release()
            on_done(CLIENT_CLOSED)
            return Response(status_code=CLIENT_CLOSED)
        except BaseException as error:
            ticket.release()
            on_done(error.status if isinstance(error, GatewayError) else 500)
            raise
        if upstream.status != 200:
            # vLLM refused before streaming (a 4xx it checks itself, or a 5xx): answer whole.
            try:
                content = await upstream.read()
            except UpstreamError:
                content = b""
            finally:
                upstream.close()
                ticket.release()
            try:
                response = self._whole_answer(upstream, content)
            except GatewayError as failure:
                on_done(failure.status)
                return render(failure)
            on_done(upstream.status)
            return response

        ttft = self._metrics.ttft.labels(route)
        latency = self._metrics.latency.labels(route, "true")
        record = access_record(request.scope)

        # What the stream ended as, if not cut short by its client: the status it is counted as.
        outcome = 200

        async def relay() -> AsyncGenerator[bytes, None]:
            nonlocal outcome
            first = True
            try:
                async for chunk in upstream.chunks():
                    if first:
                        first_token_s = time.perf_counter() - started
                        ttft.observe(first_token_s)
                        record.ttft_ms = round(first_token_s * 1000, 2)
                        first = False
                    yield chunk
            except UpstreamError as error:
                outcome = 504 if isinstance(error, UpstreamTimeout) else 502
                log.warning("upstream stream broke off: %s", error)
                failure = {
                    "error": {
                        "message": f"The model server broke off the stream: {error}",
                        "type": "upstream_error",
                        "param": None,
                        "code": 502,
                    }
                }
                yield b"data: " + json.dumps(failure).encode() + b"\n\n"

        def close(cut_short_by: int) -> None:
            upstream.close()
            ticket.release()
            latency.observe(time.perf_counter() - started)
            on_done(cut_short_by or outcome)

        return _ProxiedStream(relay(), close, self._stream_stall_timeout_s)

    async def passthrough_get(self, path: str) -> Response:
        """A short GET (the model list), answered as the upstream answered it."""
        try:
            upstream = await self._upstream.request("GET", path, timeout_s=10.0)
            try:
                content = await upstream.read()
            finally:
                upstream.close()
        except UpstreamTimeout as error:
            raise GatewayError(
                504, f"The model server did not answer: {error}", "upstream_timeout"
            ) from None
        except UpstreamError as error:
            raise GatewayError(
                502, f"The model server could not be reached: {error}", "upstream_error"
            ) from None
        return self._whole_answer(upstream, content)
