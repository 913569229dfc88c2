"""The emulated A10G engine: the simulator's replica model served over vLLM's OpenAI HTTP API.

A test double for the one thing that cannot run here, the GPU. It speaks what the gateway
uses of vLLM (`/health`, `/v1/models`, `/v1/completions`, `/v1/chat/completions` with or
without SSE, `/metrics` with `vllm:num_requests_running` and `vllm:num_requests_waiting`)
and times every sequence with `infra.sim.replica_model.ReplicaModel`: processor sharing
among at most `max_num_seqs` running sequences, the rest waiting in FIFO order. Time runs
`speed` times faster than the wall clock, as the local fleet's clock does.

A prompt costs one token per whitespace-separated word; a request generates exactly its
`max_tokens` (as a benchmark's `ignore_eos` does), so a replayed trace's token counts hold.
The listener opens only after `--ready-after` seconds, as vLLM's does after its load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from infra.sim.replica_model import A10G_VLLM, ReplicaModel

DEFAULT_MAX_TOKENS = 64
TICK_S = 0.02  # wall-clock seconds between two scheduler steps while there is work


@dataclass
class Sequence:
    prompt_units: float
    output_tokens: int
    progress: float = 0.0  # decode-token equivalents done
    emitted: int = 0  # tokens handed to the client so far
    done: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def tokens_ready(self) -> int:
        return max(0, min(self.output_tokens, math.floor(self.progress - self.prompt_units)))


class EmulatedEngine:
    """The scheduler: FIFO admission up to `max_num_seqs`, equal shares among the running."""

    def __init__(self, model: ReplicaModel, speed: float) -> None:
        self.model = model
        self.speed = speed
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.requests_total = 0
        self._wake = asyncio.Event()

    def submit(self, sequences: list[Sequence], probe: bool = False) -> None:
        # A readiness probe (one token, a few prompt tokens) needs almost no KV cache, which
        # is what bounds the batch on an A10G: vLLM runs it at once, not behind the queue.
        if probe:
            self.running.extend(sequences)
        else:
            self.waiting.extend(sequences)
        self._wake.set()

    def cancel(self, sequences: list[Sequence]) -> None:
        for sequence in sequences:
            sequence.done = True
            if sequence in self.waiting:
                self.waiting.remove(sequence)
            if sequence in self.running:
                self.running.remove(sequence)

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
                last = time.monotonic()
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.step((now - last) * self.speed)
            last = now

    def step(self, model_s: float) -> None:
        """Advance every running sequence by `model_s` seconds of A10G time."""
        while self.waiting and len(self.running) < self.model.max_num_seqs:
            self.running.append(self.waiting.popleft())
        share = self.model.per_sequence_speed(len(self.running)) * model_s
        for sequence in list(self.running):
            sequence.progress += share
            if sequence.tokens_ready >= sequence.output_tokens:
                sequence.done = True
                self.running.remove(sequence)
            if sequence.tokens_ready > sequence.emitted or sequence.done:
                sequence.changed.set()


def _prompt_texts(body: dict[str, Any], chat: bool) -> list[str]:
    if chat:
        messages = body.get("messages") or []
        return [" ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))]
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return [str(p) for p in prompt]
    return [str(prompt)]


def build_app(model_name: str, engine: EmulatedEngine) -> Starlette:
    def error(status: int, message: str, kind: str) -> JSONResponse:
        body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
        return JSONResponse(body, status_code=status)

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def models(request: Request) -> Response:
        card = {"id": model_name, "object": "model", "owned_by": "vllm", "max_model_len": 8192}
        return JSONResponse({"object": "list", "data": [card]})

    async def metrics(request: Request) -> Response:
        label = f'{{model_name="{model_name}"}}'
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{label} {float(len(engine.running))}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{label} {float(len(engine.waiting))}",
            "# TYPE emulated_engine_requests_total counter",
            f"emulated_engine_requests_total {float(engine.requests_total)}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n")

    async def generate(request: Request, chat: bool) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error(400, "body is not JSON", "BadRequestError")
        if body.get("model") != model_name:
            return error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        output = max_tokens or DEFAULT_MAX_TOKENS
        texts = _prompt_texts(body, chat)
        prompt_tokens = [max(1, len(text.split())) for text in texts]
        n = int(body.get("n") or 1)
        sequences = [
            Sequence(engine.model.prefill_units(tokens), output)
            for tokens in prompt_tokens
            for _ in range(n)
        ]
        probe = "x-gateway-probe" in request.headers
        if not probe:
            engine.requests_total += 1
        engine.submit(sequences, probe=probe)
        request_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        usage = {
            "prompt_tokens": sum(prompt_tokens),
            "completion_tokens": output * len(sequences),
            "total_tokens": sum(prompt_tokens) + output * len(sequences),
        }
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _stream(sequences, request_id, chat, include_usage, usage),
                media_type="text/event-stream",
            )
        try:
            for sequence in sequences:
                while not sequence.done:
                    sequence.changed.clear()
                    await sequence.changed.wait()
        finally:
            engine.cancel([s for s in sequences if not s.done])
        choices: list[dict[str, Any]] = []
        for index, sequence in enumerate(sequences):
            text = " tok" * sequence.output_tokens
            if chat:
                message = {"role": "assistant", "content": text}
                choices.append({"index": index, "message": message, "finish_reason": "length"})
            else:
                choices.append({"index": index, "text": text, "finish_reason": "length"})
        return JSONResponse(
            {
                "id": request_id,
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": model_name,
                "choices": choices,
                "usage": usage,
            }
        )

    async def _stream(
        sequences: list[Sequence],
        request_id: str,
        chat: bool,
        include_usage: bool,
        usage: dict[str, int],
    ) -> AsyncIterator[bytes]:
        kind = "chat.completion.chunk" if chat else "text_completion"
        try:
            while not all(s.done and s.emitted >= s.output_tokens for s in sequences):
                pending = [s for s in sequences if s.tokens_ready <= s.emitted and not s.done]
                if len(pending) == len(sequences):
                    for s in pending:
                        s.changed.clear()
                    waits = [asyncio.ensure_future(s.changed.wait()) for s in pending]
                    try:
                        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for wait in waits:
                            wait.cancel()
                for index, sequence in enumerate(sequences):
                    fresh = sequence.tokens_ready - sequence.emitted
                    if fresh <= 0:
                        continue
                    sequence.emitted += fresh
                    finish = "length" if sequence.emitted >= sequence.output_tokens else None
                    text = " tok" * fresh
                    choice: dict[str, Any] = (
                        {"index": index, "delta": {"content": text}, "finish_reason": finish}
                        if chat
                        else {"index": index, "text": text, "finish_reason": finish}
                    )
                    chunk = {
                        "id": request_id,
                        "object": kind,
                        "created": int(time.time()),
                        "model": model_name,
                        "choices": [choice],
                    }
                    yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            if include_usage:
                tail: dict[str, Any] = {
                    "id": request_id,
                    "object": kind,
                    "model": model_name,
                    "choices": [],
                    "usage": usage,
                }
                yield b"data: " + json.dumps(tail).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            engine.cancel([s for s in sequences if not s.done])

    async def completions(request: Request) -> Response:
        return await generate(request, chat=False)

    async def chat_completions(request: Request) -> Response:
        return await generate(request, chat=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        scheduler = asyncio.get_running_loop().create_task(engine.run(), name="emulated-engine")
        try:
            yield
        finally:
            scheduler.cancel()

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the emulated A10G engine (no GPU).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="finsight-tiny")
    parser.add_argument("--speed", type=float, default=1.0, help="clock speed-up, > 0")
    parser.add_argument("--ready-after", type=float, default=0.0, help="wall-clock seconds")
    args = parser.parse_args(argv)
    if not args.speed > 0:
        parser.error(f"--speed must be above 0, got {args.speed}")
    # The replica's boot (scaled): nothing listens until the weights would be loaded.
    time.sleep(max(0.0, args.ready_after))
    engine = EmulatedEngine(A10G_VLLM, args.speed)
    uvicorn.run(
        build_app(args.model, engine),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
