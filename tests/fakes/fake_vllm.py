"""A fake of vLLM's OpenAI-compatible server, for tests and benchmarks that cannot run a GPU.

It speaks the same HTTP contract the gateway relies on: `/v1/chat/completions` and
`/v1/completions` (JSON, or SSE framed as `data: {...}\\n\\n` ... `data: [DONE]\\n\\n`),
`/v1/models`, `/health`, and `/metrics` with `vllm:num_requests_running` and
`vllm:num_requests_waiting`. Generation is simulated: `tokens` tokens (or `max_tokens` if
smaller), one every `token_delay_ms`, at most `slots` requests running at once and the rest
waiting, as vLLM's scheduler would report them.

Modes, switchable at runtime (`FakeVllm.config.mode`, or `POST /fake/mode` when it runs as a
process): `ok`; `fail` (every route answers 500, /health too); `hang` (requests are accepted
and never answered, as a wedged engine would); `drop` (a stream breaks off after two
chunks, as when the engine process dies mid-generation).

In-process: `FakeVllm(FakeVllmConfig(...)).app` is an ASGI app.
As a process: `python -m tests.fakes.fake_vllm --port 8001 [--token-delay-ms 5] [--tokens 16]
[--slots 8] [--mode ok] [--model fake-model]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

Mode = Literal["ok", "fail", "hang", "drop"]
MODES: tuple[Mode, ...] = ("ok", "fail", "hang", "drop")
T = TypeVar("T")


@dataclass
class FakeVllmConfig:
    model: str = "fake-model"
    tokens: int = 16
    token_delay_ms: float = 0.0
    slots: int = 256
    mode: Mode = "ok"
    max_model_len: int = 256
    token_padding: int = 0  # extra characters in each streamed token, for tests of volume


@dataclass
class FakeVllmStats:
    """What the fake saw, so tests can assert on what reached the upstream."""

    generation_requests: int = 0  # completions, readiness probes apart
    probes: int = 0
    completed: int = 0  # readiness probes apart
    cancelled: int = 0
    streamed_bytes: int = 0  # SSE bytes handed to the server by streams so far
    running: int = 0
    waiting: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


class _Disconnected(Exception):
    pass


class _EngineDied(Exception):
    """Raised inside a stream so that the server drops the connection mid-response."""


class FakeVllm:
    """One fake upstream: its config (mutable), its counters and its ASGI app."""

    def __init__(self, config: FakeVllmConfig | None = None) -> None:
        self.config = config or FakeVllmConfig()
        self.stats = FakeVllmStats()
        self._slots: asyncio.Semaphore | None = None
        self.app = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/fake/mode", self._set_mode, methods=["POST"]),
                Route("/fake/stats", self._stats, methods=["GET"]),
            ]
        )

    # The semaphore binds to the running loop, so it is made on first use, not here.
    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.slots)
        return self._slots

    @staticmethod
    def _error(status: int, message: str, kind: str) -> JSONResponse:
        body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
        return JSONResponse(body, status_code=status)

    async def _health(self, request: Request) -> Response:
        if self.config.mode == "fail":
            return Response(status_code=500)
        if self.config.mode == "hang":
            with contextlib.suppress(_Disconnected):
                await _until_disconnect(request, asyncio.Event().wait())
            return Response(status_code=499)
        return Response(status_code=200)

    async def _models(self, request: Request) -> Response:
        if self.config.mode == "fail":
            return self._error(500, "engine dead", "InternalServerError")
        card = {
            "id": self.config.model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": self.config.model,
            "parent": None,
            "max_model_len": self.config.max_model_len,
        }
        return JSONResponse({"object": "list", "data": [card]})

    async def _metrics(self, request: Request) -> Response:
        label = f'{{model_name="{self.config.model}"}}'
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{label} {float(self.stats.running)}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{label} {float(self.stats.waiting)}",
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{label} {min(1.0, self.stats.running / 64):.3f}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n")

    async def _set_mode(self, request: Request) -> Response:
        mode = (await request.json()).get("mode")
        if mode not in MODES:
            return self._error(400, f"mode must be one of {MODES}", "BadRequestError")
        self.config.mode = cast(Mode, mode)
        return JSONResponse({"mode": mode})

    async def _stats(self, request: Request) -> Response:
        s = self.stats
        return JSONResponse(
            {
                "generation_requests": s.generation_requests,
                "probes": s.probes,
                "completed": s.completed,
                "cancelled": s.cancelled,
                "running": s.running,
                "waiting": s.waiting,
            }
        )

    async def _completions(self, request: Request) -> Response:
        return await self._generate(request, chat=False)

    async def _chat(self, request: Request) -> Response:
        return await self._generate(request, chat=True)

    async def _generate(self, request: Request, *, chat: bool) -> Response:
        probe = "x-gateway-probe" in request.headers
        if probe:
            self.stats.probes += 1
        else:
            self.stats.generation_requests += 1
            self.stats.headers.append(dict(request.headers))
        if self.config.mode == "fail":
            return self._error(500, "engine dead", "InternalServerError")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._error(400, "body is not JSON", "BadRequestError")
        if not probe:
            self.stats.bodies.append(body)
        if body.get("model") != self.config.model:
            message = f"The model `{body.get('model')}` does not exist."
            return self._error(404, message, "NotFoundError")
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        count = min(self.config.tokens, max_tokens) if max_tokens else self.config.tokens
        request_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            stream = self._stream(request_id, chat, count, include_usage)
            return StreamingResponse(stream, media_type="text/event-stream")
        try:
            await _until_disconnect(request, self._run(count))
        except _Disconnected:
            self.stats.cancelled += 1
            return Response(status_code=499)
        if not probe:
            self.stats.completed += 1
        return JSONResponse(self._full_body(request_id, chat, count))

    async def _run(self, count: int) -> None:
        """Occupy a slot while generating `count` tokens (waiting first if none is free)."""
        self.stats.waiting += 1
        try:
            await self._semaphore().acquire()
        finally:
            self.stats.waiting -= 1
        self.stats.running += 1
        try:
            if self.config.mode == "hang":
                await asyncio.Event().wait()
            if self.config.token_delay_ms > 0:
                await asyncio.sleep(count * self.config.token_delay_ms / 1000)
        finally:
            self.stats.running -= 1
            self._semaphore().release()

    def _full_body(self, request_id: str, chat: bool, count: int) -> dict[str, Any]:
        text = "".join(f" tok{i}" for i in range(count))
        usage = {"prompt_tokens": 5, "completion_tokens": count, "total_tokens": 5 + count}
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "length",
            }
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
            kind = "text_completion"
        return {
            "id": request_id,
            "object": kind,
            "created": int(time.time()),
            "model": self.config.model,
            "choices": [choice],
            "usage": usage,
        }

    def _chunk(self, request_id: str, chat: bool, index: int, count: int) -> bytes:
        finish = "length" if index == count - 1 else None
        text = f" tok{index}" + "x" * self.config.token_padding
        if chat:
            delta: dict[str, Any] = {"content": text}
            if index == 0:
                delta["role"] = "assistant"
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            kind = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish}
            kind = "text_completion"
        chunk = {
            "id": request_id,
            "object": kind,
            "created": int(time.time()),
            "model": self.config.model,
            "choices": [choice],
        }
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    async def _stream(
        self, request_id: str, chat: bool, count: int, include_usage: bool
    ) -> AsyncIterator[bytes]:
        self.stats.waiting += 1
        try:
            await self._semaphore().acquire()
        finally:
            self.stats.waiting -= 1
        self.stats.running += 1
        finished = False
        try:
            if self.config.mode == "hang":
                await asyncio.Event().wait()
            for index in range(count):
                if self.config.token_delay_ms > 0:
                    await asyncio.sleep(self.config.token_delay_ms / 1000)
                if index == 2 and self.config.mode == "drop":
                    raise _EngineDied("fake engine died mid-stream")
                chunk = self._chunk(request_id, chat, index, count)
                self.stats.streamed_bytes += len(chunk)
                yield chunk
            if include_usage:
                usage: dict[str, Any] = {
                    "id": request_id,
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": int(time.time()),
                    "model": self.config.model,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 5,
                        "completion_tokens": count,
                        "total_tokens": 5 + count,
                    },
                }
                yield b"data: " + json.dumps(usage).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
            finished = True
        finally:
            self.stats.running -= 1
            self._semaphore().release()
            if finished:
                self.stats.completed += 1
            else:
                self.stats.cancelled += 1


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, abandoning it if the client goes away, as vLLM aborts such requests."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work_task = asyncio.ensure_future(work)
    watch_task = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({work_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch_task.cancel()
    if work_task.done():
        return work_task.result()
    work_task.cancel()
    raise _Disconnected


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Run the fake vLLM OpenAI server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--token-delay-ms", type=float, default=0.0)
    parser.add_argument("--slots", type=int, default=256)
    parser.add_argument("--mode", choices=MODES, default="ok")
    args = parser.parse_args(argv)
    fake = FakeVllm(
        FakeVllmConfig(
            model=args.model,
            tokens=args.tokens,
            token_delay_ms=args.token_delay_ms,
            slots=args.slots,
            mode=args.mode,
        )
    )
    uvicorn.run(
        fake.app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
