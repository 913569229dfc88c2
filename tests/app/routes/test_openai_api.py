"""The OpenAI routes through the gateway: the SDK, auth, validation, fairness, admission."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.app.stack import ACME_KEY, GLOBEX_KEY, MODEL, chat_body, running_stack, tenants_document
from tests.fakes.fake_vllm import FakeVllmConfig


def test_openai_sdk_chat_completion_streaming_and_models(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack:
            client = openai.AsyncOpenAI(api_key=ACME_KEY, base_url=f"{stack.url}/v1")
            whole = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
            assert whole.choices[0].message.content == " tok0 tok1 tok2 tok3"
            stream = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True
            )
            pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
            assert pieces == [" tok0", " tok1", " tok2"]
            completion = await client.completions.create(model=MODEL, prompt="hi", max_tokens=2)
            assert completion.choices[0].text == " tok0 tok1"
            text_stream = await client.completions.create(
                model=MODEL, prompt="hi", max_tokens=2, stream=True
            )
            assert [c.choices[0].text async for c in text_stream] == [" tok0", " tok1"]
            models = await client.models.list()
            assert [m.id for m in models.data] == [MODEL]
            await client.close()

    asyncio.run(scenario())


def test_stream_chunks_are_relayed_as_they_arrive(tmp_path: Path) -> None:
    # GIVEN an upstream that emits one token every 100 ms
    async def scenario() -> None:
        config = FakeVllmConfig(token_delay_ms=100, tokens=10)
        async with running_stack(tmp_path, fake_config=config) as stack, stack.client() as http:
            loop = asyncio.get_running_loop()
            began = loop.time()
            arrivals = []
            body = chat_body(max_tokens=10, stream=True)
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        arrivals.append(loop.time() - began)
            # THEN the first token arrives long before the last (no buffering)
            assert len(arrivals) == 11  # 10 tokens and [DONE]
            assert arrivals[0] < 0.6
            assert arrivals[-1] - arrivals[0] > 0.6

    asyncio.run(scenario())


def test_missing_or_wrong_key_is_401_in_openai_shape(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack:
            for key in (None, "sk-not-a-tenant"):
                async with stack.client(key) as http:
                    response = await http.post("/v1/chat/completions", json=chat_body())
                assert response.status_code == 401
                error = response.json()["error"]
                assert error["type"] == "invalid_request_error" and error["message"]
            assert stack.fake.stats.generation_requests == 0
            async with stack.client("sk-wrong") as http:
                assert (await http.get("/v1/models")).status_code == 401
            client = openai.AsyncOpenAI(api_key="sk-wrong", base_url=f"{stack.url}/v1")
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(model=MODEL, messages=[])
            await client.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), 400, "'model'"),
        (json.dumps(chat_body(model="gpt-unknown")).encode(), 404, "does not exist"),
        (json.dumps(chat_body(max_tokens="many")).encode(), 400, "'max_tokens' must be an integer"),
        (json.dumps(chat_body(max_tokens=0)).encode(), 400, "at least 1"),
        (json.dumps(chat_body(max_tokens=100_000)).encode(), 400, "tenant's limit of 64"),
        (json.dumps(chat_body(max_completion_tokens=65)).encode(), 400, "tenant's limit of 64"),
        (json.dumps(chat_body(n=9)).encode(), 400, "'n' must be between 1 and 4"),
        (json.dumps(chat_body(n=True)).encode(), 400, "'n' must be an integer"),
        (json.dumps(chat_body(stream="yes")).encode(), 400, "'stream' must be a boolean"),
        (json.dumps({"model": MODEL, "messages": "hi"}).encode(), 400, "'messages'"),
        (json.dumps({"model": MODEL, "messages": ["hi"]}).encode(), 400, "'messages'"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem_and_nothing_goes_upstream(
    tmp_path: Path, body: bytes, status: int, needle: str
) -> None:
    async def scenario() -> None:
        tenants = tenants_document(max_tokens=64)
        async with running_stack(tmp_path, tenants=tenants) as stack, stack.client() as http:
            response = await http.post(
                "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == status, response.text
            assert needle in response.json()["error"]["message"]
            assert stack.fake.stats.generation_requests == 0
            # The same tenant is still served afterwards.
            assert (await http.post("/v1/chat/completions", json=chat_body())).status_code == 200

    asyncio.run(scenario())


def test_completions_prompt_is_required(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack, stack.client() as http:
            response = await http.post("/v1/completions", json={"model": MODEL})
            assert response.status_code == 400
            assert "'prompt'" in response.json()["error"]["message"]
            assert stack.fake.stats.generation_requests == 0

    asyncio.run(scenario())


def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path, max_body_bytes=2048) as stack, stack.client() as http:
            big = chat_body(messages=[{"role": "user", "content": "x" * 4096}])
            response = await http.post("/v1/chat/completions", json=big)
            assert response.status_code == 413
            assert "larger than 2048 bytes" in response.json()["error"]["message"]

            # A chunked body (no Content-Length) is counted as it arrives.
            async def chunks() -> Any:
                for _ in range(5):
                    yield b"x" * 1000

            response = await http.post("/v1/chat/completions", content=chunks())
            assert response.status_code == 413
            assert stack.fake.stats.generation_requests == 0

            # A declared length too long for int() is as much over the limit as any other.
            # Straight to the app: uvicorn's own parser would refuse it before the gateway.
            transport = httpx.ASGITransport(app=stack.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as direct:
                response = await direct.post(
                    "/v1/chat/completions",
                    content=b"{}",
                    headers={"Authorization": f"Bearer {ACME_KEY}", "Content-Length": "9" * 5000},
                )
            assert response.status_code == 413

    asyncio.run(scenario())


def test_a_tenant_at_its_cap_waits_its_turn_and_beyond_its_queue_share_gets_429(
    tmp_path: Path,
) -> None:
    # GIVEN acme may run 2 requests at once and have 1 waiting; the upstream is slow
    async def scenario() -> None:
        config = FakeVllmConfig(token_delay_ms=20)  # each request takes about 0.3 s
        tenants = tenants_document(max_concurrent_requests=2)
        async with (
            running_stack(
                tmp_path, fake_config=config, tenants=tenants, tenant_max_queued_sequences=1
            ) as stack,
            stack.client() as acme,
            stack.client(GLOBEX_KEY) as globex,
        ):
            slow = [
                asyncio.ensure_future(acme.post("/v1/chat/completions", json=chat_body()))
                for _ in range(2)
            ]
            while stack.gateway.admission.tenant_running("acme") < 2:
                await asyncio.sleep(0.005)
            # WHEN acme sends a third, then a fourth
            third = asyncio.ensure_future(acme.post("/v1/chat/completions", json=chat_body()))
            while stack.gateway.admission.tenant_queued("acme") < 1:
                await asyncio.sleep(0.005)
            fourth = await acme.post("/v1/chat/completions", json=chat_body())
            # THEN the third waits for a turn, the fourth is refused with 429 and Retry-After
            assert fourth.status_code == 429
            assert fourth.headers["Retry-After"] == "1"
            assert "its limit is 1 waiting" in fourth.json()["error"]["message"]
            # ... while globex runs at once, ahead of acme's waiting request
            other = await globex.post("/v1/chat/completions", json=chat_body(max_tokens=1))
            assert other.status_code == 200
            assert not third.done()
            assert [r.status_code for r in await asyncio.gather(*slow, third)] == [200] * 3
            text = (await globex.get("/metrics")).text
            assert 'gateway_requests_shed_total{reason="tenant_queue_full"} 1.0' in text
            assert 'gateway_queue_wait_seconds_count{tenant="acme"} 1.0' in text
            assert stack.gateway.admission.demand == 0

    asyncio.run(scenario())


def test_an_instance_at_its_cap_queues_and_sheds_at_the_bound_and_the_deadline(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        config = FakeVllmConfig(token_delay_ms=100)  # each held request takes 1.6 s
        async with (
            running_stack(
                tmp_path,
                fake_config=config,
                max_running_sequences=2,
                max_queued_sequences=1,
                tenant_max_queued_sequences=1,
                max_queue_wait_s=0.3,
            ) as stack,
            stack.client() as acme,
            stack.client(GLOBEX_KEY) as globex,
        ):
            held = [
                asyncio.ensure_future(acme.post("/v1/chat/completions", json=chat_body())),
                asyncio.ensure_future(globex.post("/v1/chat/completions", json=chat_body())),
            ]
            while stack.gateway.admission.running < 2:
                await asyncio.sleep(0.005)
            loop = asyncio.get_running_loop()
            began = loop.time()
            waiting = asyncio.ensure_future(globex.post("/v1/chat/completions", json=chat_body()))
            while stack.gateway.admission.queued < 1:
                await asyncio.sleep(0.005)
            # A full queue refuses at once.
            full = await acme.post("/v1/chat/completions", json=chat_body())
            assert (full.status_code, full.headers["Retry-After"]) == (503, "1")
            assert "at most 1" in full.json()["error"]["message"]
            # The waiting request is shed at its deadline, long before a slot frees.
            late = await waiting
            assert 0.3 <= loop.time() - began < 1.2
            assert (late.status_code, late.headers["Retry-After"]) == (503, "1")
            assert "within 0.3 s" in late.json()["error"]["message"]
            assert stack.gateway.admission.queued == 0
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
            assert stack.gateway.admission.demand == 0
            text = (await globex.get("/metrics")).text
            for reason in ("queue_full", "queue_timeout"):
                assert f'gateway_requests_shed_total{{reason="{reason}"}} 1.0' in text

    asyncio.run(scenario())


def test_upstream_4xx_passes_through_and_5xx_becomes_502(tmp_path: Path) -> None:
    async def scenario() -> None:
        # One probe only (at start): the gateway keeps the model list it learned then.
        async with (
            running_stack(tmp_path, probe_interval_s=300) as stack,
            stack.client() as http,
        ):
            # The upstream refuses a model the gateway believes it serves: its 404 and its
            # message come back as sent, whole or streamed.
            stack.fake.config.model = "renamed-model"
            for stream in (False, True):
                refused = await http.post("/v1/chat/completions", json=chat_body(stream=stream))
                assert refused.status_code == 404
                assert refused.json()["error"]["message"] == f"The model `{MODEL}` does not exist."
            stack.fake.config.model = MODEL
            stack.fake.config.mode = "fail"
            response = await http.post("/v1/chat/completions", json=chat_body())
            assert response.status_code == 502
            assert "engine dead" in response.json()["error"]["message"]
            streamed = await http.post("/v1/chat/completions", json=chat_body(stream=True))
            assert streamed.status_code == 502
            models = await http.get("/v1/models")
            assert models.status_code == 502
            assert stack.gateway.admission.running == 0

    asyncio.run(scenario())


def test_request_id_is_forwarded_and_the_key_is_not(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack, stack.client() as http:
            headers = {"X-Request-Id": "req-42"}
            await http.post("/v1/chat/completions", json=chat_body(), headers=headers)
            seen = stack.fake.stats.headers[-1]
            assert seen.get("x-request-id") == "req-42"
            assert "authorization" not in seen

    asyncio.run(scenario())


def test_client_disconnect_cancels_the_upstream_request(tmp_path: Path) -> None:
    # GIVEN an upstream that streams slowly (a long generation)
    async def scenario() -> None:
        config = FakeVllmConfig(token_delay_ms=50, tokens=200)
        async with running_stack(tmp_path, fake_config=config) as stack, stack.client() as http:
            body = chat_body(stream=True)
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                async for _ in response.aiter_bytes():
                    break  # WHEN the client leaves after the first chunk
            # THEN the upstream sees its request cancelled, and the slot is freed
            async with asyncio.timeout(3):
                while stack.fake.stats.cancelled < 1 or stack.gateway.admission.running:
                    await asyncio.sleep(0.01)
            assert stack.fake.stats.completed == 0

            # The same for a non-streaming request the upstream is still working on.
            task = asyncio.ensure_future(http.post("/v1/chat/completions", json=chat_body()))
            while stack.fake.stats.generation_requests < 2:  # it reached the upstream
                await asyncio.sleep(0.01)
            task.cancel()
            async with asyncio.timeout(3):
                while stack.fake.stats.cancelled < 2 or stack.gateway.admission.running:
                    await asyncio.sleep(0.01)
            assert stack.fake.stats.completed == 0

    asyncio.run(scenario())


def test_not_ready_before_the_model_list_is_known(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = FakeVllmConfig(mode="fail")
        async with (
            running_stack(tmp_path, fake_config=config, wait_ready=False) as stack,
            stack.client() as http,
        ):
            response = await http.post("/v1/chat/completions", json=chat_body())
            assert response.status_code == 503
            assert "not ready" in response.json()["error"]["message"]

    asyncio.run(scenario())


def test_http_error_paths_keep_the_openai_shape(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack, stack.client() as http:
            missing = await http.get("/v1/nothing-here")
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == 404
            wrong_method = await http.get("/v1/chat/completions")
            assert wrong_method.status_code == 405
            assert wrong_method.json()["error"]["code"] == 405

    asyncio.run(scenario())


def test_a_stream_broken_off_upstream_ends_with_an_error_event(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack, stack.client() as http:
            stack.fake.config.mode = "drop"
            events = []
            body = chat_body(stream=True, max_tokens=8)
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
            assert len(events) == 3
            error = json.loads(events[-1])["error"]
            assert error["code"] == 502 and "broke off" in error["message"]
            assert stack.gateway.admission.running == 0
            stack.fake.config.mode = "ok"
            client = openai.AsyncOpenAI(api_key=ACME_KEY, base_url=f"{stack.url}/v1")
            stack.fake.config.mode = "drop"
            with pytest.raises(openai.APIError, match="broke off"):
                stream = await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
                )
                async for _ in stream:
                    pass
            await client.close()

    asyncio.run(scenario())


def test_a_client_leaving_mid_body_is_no_server_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack:
            port = int(stack.url.rsplit(":", 1)[1])
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
                b"Authorization: Bearer " + ACME_KEY.encode() + b"\r\n"
                b"Content-Length: 1000\r\n\r\n" + b'{"model": '
            )
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.close()
            counter = stack.gateway.metrics.requests.labels("acme", "/v1/chat/completions", "499")
            async with asyncio.timeout(3):
                while not counter._value.get():
                    await asyncio.sleep(0.02)
            assert stack.fake.stats.generation_requests == 0

    asyncio.run(scenario())
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# ---------------------------------------------------------------- issue 13 regressions


def test_a_request_counts_its_prompts_times_n_against_the_tenant(tmp_path: Path) -> None:
    # GIVEN acme may run 8 sequences at once and the upstream is slow
    async def scenario() -> None:
        config = FakeVllmConfig(token_delay_ms=50)
        tenants = tenants_document(max_concurrent_requests=8)
        async with (
            running_stack(tmp_path, fake_config=config, tenants=tenants) as stack,
            stack.client() as http,
        ):
            # WHEN one request asks for 4 prompts x n=2
            body = {"model": MODEL, "prompt": ["a", "b", "c", "d"], "n": 2, "max_tokens": 8}
            held = asyncio.ensure_future(http.post("/v1/completions", json=body))
            async with asyncio.timeout(3):
                while stack.fake.stats.generation_requests < 1:
                    await asyncio.sleep(0.005)
            assert stack.gateway.admission.tenant_running("acme") == 8
            # THEN it holds 8 slots: the next single prompt waits for them
            assert stack.gateway.admission.running == 8
            one_more = asyncio.ensure_future(
                http.post("/v1/completions", json={"model": MODEL, "prompt": "x"})
            )
            async with asyncio.timeout(3):
                while stack.gateway.admission.tenant_queued("acme") < 1:
                    await asyncio.sleep(0.005)
            assert (await held).status_code == 200
            assert (await one_more).status_code == 200
            assert stack.gateway.admission.running == 0
            # A request that could never be granted is a 400, not a 429 to retry forever,
            # and thousands of prompts in one request are refused outright.
            nine = await http.post("/v1/completions", json={**body, "prompt": ["a"] * 3, "n": 3})
            assert nine.status_code == 400
            assert "9 sequences" in nine.json()["error"]["message"]
            many = await http.post("/v1/completions", json={**body, "prompt": ["x"] * 5000})
            assert many.status_code == 400
            assert many.json()["error"]["param"] == "prompt"
            assert stack.fake.stats.generation_requests == 2

    asyncio.run(scenario())


def test_the_tenants_max_tokens_is_sent_when_the_request_sets_none(tmp_path: Path) -> None:
    async def scenario() -> None:
        tenants = tenants_document(max_tokens=64)
        async with running_stack(tmp_path, tenants=tenants) as stack, stack.client() as http:
            # The review's request: as many tokens as the context allows, without a cap.
            body = {"model": MODEL, "prompt": "x", "min_tokens": 8, "ignore_eos": True}
            assert (await http.post("/v1/completions", json=body)).status_code == 200
            assert stack.fake.stats.bodies[-1] == {**body, "max_tokens": 64}
            assert (await http.post("/v1/chat/completions", json=chat_body())).status_code == 200
            assert stack.fake.stats.bodies[-1]["max_tokens"] == 64
            above = await http.post("/v1/completions", json={**body, "min_tokens": 8000})
            assert above.status_code == 400 and above.json()["error"]["param"] == "min_tokens"
            assert len(stack.fake.stats.bodies) == 2

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "field", ["priority", "kv_transfer_params", "chat_template_kwargs", "guided_regex", "tools"]
)
def test_fields_the_product_does_not_offer_are_400_naming_the_field(
    tmp_path: Path, field: str
) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack, stack.client() as http:
            response = await http.post("/v1/chat/completions", json=chat_body(**{field: 1}))
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["param"] == field and f"'{field}'" in error["message"]
            assert stack.fake.stats.generation_requests == 0
            client = openai.AsyncOpenAI(api_key=ACME_KEY, base_url=f"{stack.url}/v1")
            with pytest.raises(openai.BadRequestError, match=field):
                await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "x"}], extra_body={field: 1}
                )
            await client.close()

    asyncio.run(scenario())


def test_model_list_and_unknown_model_reveal_only_what_a_client_needs(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack, stack.client() as http:
            listed = (await http.get("/v1/models")).json()
            assert listed["object"] == "list"
            assert [set(card) for card in listed["data"]] == [
                {"id", "object", "created", "owned_by"}
            ]
            missing = await http.post("/v1/chat/completions", json=chat_body(model="gpt-x"))
            assert missing.status_code == 404
            assert MODEL not in missing.json()["error"]["message"]

    asyncio.run(scenario())


def test_a_lowercase_bearer_scheme_is_accepted(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack:
            headers = {"Authorization": f"bearer {ACME_KEY}"}
            async with httpx.AsyncClient(base_url=stack.url, headers=headers) as http:
                assert (
                    await http.post("/v1/chat/completions", json=chat_body())
                ).status_code == 200

    asyncio.run(scenario())


async def _raw_exchange(
    port: int, head: bytes, body_part: bytes, *, read_timeout_s: float
) -> tuple[bytes, bool]:
    """Send a request head and part of its body, never the rest; return the answer's bytes
    and whether the server closed the connection after it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body_part)
        await writer.drain()
        received = b""
        closed = False
        async with asyncio.timeout(read_timeout_s):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    closed = True
                    break
                received += chunk
        return received, closed
    except TimeoutError:
        return received, False
    finally:
        writer.close()


def _head(key: str | None, length: int = 1000) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n".encode() if key else b""
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        + auth
        + b"Content-Length: %d\r\n\r\n" % length
    )


def test_a_body_dribbled_past_the_deadline_is_408_and_the_connection_closed(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path, body_timeout_s=0.5) as stack:
            port = int(stack.url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_head(ACME_KEY))
            began = asyncio.get_running_loop().time()
            answer = b""
            # One byte every 100 ms: never idle long, never done.
            async with asyncio.timeout(5):
                while not answer.endswith(b"}"):
                    writer.write(b" ")
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.1):
                            answer += await reader.read(65536)
                rest = await reader.read(65536)
            elapsed = asyncio.get_running_loop().time() - began
            writer.close()
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"connection: close" in answer.lower()
            assert b"did not arrive within 0.5 s" in answer
            assert rest == b""  # closed by the server
            assert 0.5 <= elapsed < 3
            assert stack.fake.stats.generation_requests == 0

    asyncio.run(scenario())


def test_an_answer_that_leaves_the_body_unread_closes_the_connection(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path) as stack:
            port = int(stack.url.rsplit(":", 1)[1])
            # GIVEN a client that sends headers and a little of a 1000-byte body
            for key, status in ((None, b"401"), ("sk-wrong", b"401")):
                answer, closed = await _raw_exchange(
                    port, _head(key), b'{"model": ', read_timeout_s=4
                )
                # THEN the refusal comes with Connection: close, and the server hangs up
                assert answer.startswith(b"HTTP/1.1 " + status), answer
                assert b"connection: close" in answer.lower()
                assert closed
            # A body sent whole is read and dropped: the refused client keeps its connection.
            body = json.dumps(chat_body()).encode()
            answer, closed = await _raw_exchange(
                port, _head(None, len(body)), body, read_timeout_s=1.5
            )
            assert answer.startswith(b"HTTP/1.1 401") and not closed
            assert b"connection: close" not in answer.lower()

    asyncio.run(scenario())


def test_exchanges_past_the_connection_limit_get_a_fast_503(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path, max_connections=2) as stack:
            port = int(stack.url.rsplit(":", 1)[1])
            # GIVEN two clients holding exchanges open with bodies they never finish
            held = []
            for _ in range(2):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(_head(ACME_KEY) + b"{")
                await writer.drain()
                held.append(writer)
            guard = stack.app.middleware_stack
            while getattr(guard, "in_flight", None) is None:
                guard = guard.app  # type: ignore[union-attr]
            async with asyncio.timeout(3):
                while guard.in_flight < 2:
                    await asyncio.sleep(0.01)
            # WHEN a third arrives, THEN it is refused at once; health checks still answer
            async with stack.client() as http:
                refused = await http.post("/v1/chat/completions", json=chat_body())
                assert refused.status_code == 503
                assert refused.headers["Retry-After"] == "1"
                assert "limit of 2 requests in progress" in refused.json()["error"]["message"]
                assert (await http.get("/health/live")).status_code == 200
                for writer in held:
                    writer.close()
                async with asyncio.timeout(3):
                    while guard.in_flight:
                        await asyncio.sleep(0.01)
                assert (
                    await http.post("/v1/chat/completions", json=chat_body())
                ).status_code == 200
                text = (await http.get("/metrics")).text
            assert 'gateway_requests_shed_total{reason="connection_limit"} 1.0' in text

    asyncio.run(scenario())
