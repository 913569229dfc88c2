"""A small HTTP/1.1 keep-alive client for the one upstream on loopback.

Why not httpx: measured here, one httpx.AsyncClient shared by 64 concurrent requests
reached about 200 req/s against a fake upstream that serves thousands, because its pool
bookkeeping grows with the pool. This client keeps a plain stack of idle connections and
parses responses with httptools (the parser uvicorn uses), streaming body chunks as they
arrive. Closing a response before its end closes the connection, which is how vLLM learns
that the client went away and aborts the generation.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import cast

import httptools

# Body bytes held for a reader before the upstream socket stops being read: a client that
# reads slowly holds vLLM back through TCP instead of growing the gateway's memory.
MAX_BUFFERED_BYTES = 256 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached or broke the exchange."""


class UpstreamConnectError(UpstreamError):
    """No connection: refused, unreachable or the connect timed out."""


class UpstreamTimeout(UpstreamError):
    """Connected, but no (further) bytes arrived within the timeout."""


class UpstreamProtocolError(UpstreamError):
    """The connection closed mid-response or the response did not parse."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reading_paused = False
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.keep_alive = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0  # bytes in `chunks`
        self.complete = False
        self.received_any = False
        self.error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # Requests go out in one write; never hold one back waiting for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.error = UpstreamProtocolError(f"upstream sent an invalid response: {error}")
            self.close()
        if self.buffered > MAX_BUFFERED_BYTES and not self.reading_paused and not self.closed:
            assert self.transport is not None
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.error is None:
            self.error = UpstreamProtocolError("upstream closed the connection mid-response")
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        # Read now: llhttp forgets it once the message is complete.
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    def take_chunks(self) -> bytes:
        """All body bytes received so far, in one piece; reading resumes if it was paused."""
        if len(self.chunks) == 1:
            pending = self.chunks.popleft()
        else:
            pending = b"".join(self.chunks)
            self.chunks.clear()
        self.buffered = 0
        if self.reading_paused and not self.closed:
            assert self.transport is not None
            self.transport.resume_reading()
            self.reading_paused = False
        return pending

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout_s: float) -> None:
        """Wait for any news (bytes, end, close), at most `timeout_s`."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await self._waiter
        except TimeoutError:
            raise UpstreamTimeout(f"upstream sent nothing for {timeout_s:g} s") from None
        finally:
            self._waiter = None

    def send(self, data: bytes) -> None:
        self._reset()
        assert self.transport is not None
        self.transport.write(data)

    @property
    def reusable(self) -> bool:
        return (
            self.complete
            and not self.closed
            and self.keep_alive
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True


class UpstreamResponse:
    """Status and headers now; the body as it arrives (`chunks()`) or whole (`read()`)."""

    def __init__(self, client: UpstreamClient, connection: _Connection, timeout_s: float) -> None:
        self._client = client
        self._connection = connection
        self._timeout_s = timeout_s
        self._done = False
        self.status = connection.status
        self.headers = connection.headers

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            # Whatever has already arrived goes out in one piece: nothing is held back,
            # and a client that fell behind catches up with one write instead of many.
            if connection.chunks:
                yield connection.take_chunks()
            if connection.complete:
                return
            if connection.error is not None:
                raise connection.error
            await connection.wait(self._timeout_s)

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        """Give the connection back if the exchange ended cleanly, else close it."""
        if self._done:
            return
        self._done = True
        if self._connection.reusable and not self._connection.chunks:
            self._client._put_back(self._connection)
        else:
            self._connection.close()


class UpstreamClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        max_idle_connections: int,
    ) -> None:
        self._host = host
        self._port = port
        self._host_header = f"{host}:{port}".encode()
        self._connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self._max_idle = max_idle_connections
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, protocol = await loop.create_connection(_Connection, self._host, self._port)
        except TimeoutError:
            raise UpstreamConnectError(
                f"connecting to the upstream timed out after {self._connect_timeout_s:g} s"
            ) from None
        except OSError as error:
            raise UpstreamConnectError(
                f"cannot connect to the upstream: {error.strerror or error}"
            ) from None
        return protocol

    def _put_back(self, connection: _Connection) -> None:
        if len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.close()

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            transport = connection.transport
            if not connection.closed and transport is not None and not transport.is_closing():
                return connection
        return None

    def _encode(
        self, method: str, path: str, body: bytes, headers: Iterable[tuple[str, str]]
    ) -> bytes:
        lines = [
            f"{method} {path} HTTP/1.1".encode(),
            b"Host: " + self._host_header,
            b"Content-Length: " + str(len(body)).encode(),
        ]
        lines.extend(f"{name}: {value}".encode("latin-1") for name, value in headers)
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        *,
        timeout_s: float | None = None,
    ) -> UpstreamResponse:
        """Send one request and wait for the status line and headers."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        payload = self._encode(method, path, body, headers)
        connection = self._take_idle()
        reused = connection is not None
        if connection is None:
            connection = await self._connect()
        try:
            return await self._exchange(connection, payload, timeout)
        except UpstreamProtocolError:
            # A kept-alive connection the upstream closed just as we reused it: nothing was
            # received, so the request never reached it; one retry on a fresh connection.
            if not reused or connection.received_any:
                raise
        connection = await self._connect()
        return await self._exchange(connection, payload, timeout)

    async def _exchange(
        self, connection: _Connection, payload: bytes, timeout_s: float
    ) -> UpstreamResponse:
        try:
            connection.send(payload)
            while not connection.headers_done:
                if connection.error is not None:
                    raise connection.error
                await connection.wait(timeout_s)
        except BaseException:
            connection.close()
            raise
        return UpstreamResponse(self, connection, timeout_s)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
