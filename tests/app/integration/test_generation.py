"""Generation through the gateway to the real vLLM server, with the official openai SDK.

The tiny model was trained on a small finance corpus, so greedy decoding (temperature 0)
reproduces a known sentence: the text checked here can only come from the model itself.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.app.integration.conftest import GATEWAY_SETTINGS, make_client
from tests.processes import (
    ClientTenant,
    GatewayServer,
    VllmServer,
    gateway_env,
    make_tenant,
    write_tenants,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# Corpus lines of local/make_tiny_model.py that greedy decoding continues.
COMPLETION_PROMPT = "The S&P 500"
COMPLETION_TEXT = " closed 0.8% higher as technology shares rallied after earnings."
CHAT_QUESTION = "When does the market open?"
CHAT_ANSWER = "At 9:30 a.m. Eastern, Monday to Friday."


def test_models_lists_the_served_model(client: openai.OpenAI, vllm: VllmServer) -> None:
    assert [model.id for model in client.models.list()] == [vllm.model]


def test_completion_is_the_models_own_text_unchanged_by_the_gateway(
    client: openai.OpenAI, vllm: VllmServer
) -> None:
    through_gateway = client.completions.create(
        model=vllm.model, prompt=COMPLETION_PROMPT, max_tokens=32, temperature=0.0
    )
    direct = httpx.post(
        f"{vllm.url}/v1/completions",
        json={
            "model": vllm.model,
            "prompt": COMPLETION_PROMPT,
            "max_tokens": 32,
            "temperature": 0.0,
        },
        timeout=60,
    ).json()

    choice = through_gateway.choices[0]
    assert choice.text == COMPLETION_TEXT
    assert choice.text == direct["choices"][0]["text"]
    assert choice.finish_reason == "stop"
    assert through_gateway.usage is not None
    assert through_gateway.usage.completion_tokens == direct["usage"]["completion_tokens"]


def test_chat_completion_answers_with_the_chat_template(
    client: openai.OpenAI, vllm: VllmServer
) -> None:
    reply = client.chat.completions.create(
        model=vllm.model,
        messages=[{"role": "user", "content": CHAT_QUESTION}],
        max_tokens=32,
        temperature=0.0,
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == CHAT_ANSWER
    assert reply.choices[0].finish_reason == "stop"


def test_chat_stream_arrives_in_chunks_that_add_up_to_the_answer(
    client: openai.OpenAI, vllm: VllmServer
) -> None:
    stream = client.chat.completions.create(
        model=vllm.model,
        messages=[{"role": "user", "content": CHAT_QUESTION}],
        max_tokens=32,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finish_reasons: list[str] = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)

    assert "".join(pieces) == CHAT_ANSWER
    assert usage is not None
    # Many chunks, not one: the gateway relays vLLM's chunks as they come. (vLLM sends one
    # per token, but merges a few whenever its server falls behind the engine.)
    assert 1 < len(pieces) < usage.completion_tokens
    assert finish_reasons == ["stop"]


def test_completion_stream_runs_to_max_tokens(client: openai.OpenAI, vllm: VllmServer) -> None:
    stream = client.completions.create(
        model=vllm.model,
        prompt=COMPLETION_PROMPT,
        max_tokens=48,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
        # A vLLM extra the gateway accepts: generate past the end-of-text token.
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 48
    token_chunks = [c for c in chunks if c.choices]
    # Streamed, not gathered: many chunks (vLLM merges tokens into one chunk only when its
    # server falls behind the engine).
    assert len(token_chunks) > 8
    assert "".join(c.choices[0].text for c in token_chunks).startswith(COMPLETION_TEXT)
    assert [c.choices[0].finish_reason for c in token_chunks][-1] == "length"


def test_wrong_key_is_refused_with_401(gateway: GatewayServer, vllm: VllmServer) -> None:
    intruder = ClientTenant(id="nobody", key="sk-test-not-a-tenant")
    with (
        make_client(gateway, intruder, timeout=30.0) as sdk,
        pytest.raises(openai.AuthenticationError) as refused,
    ):
        sdk.completions.create(model=vllm.model, prompt="x", max_tokens=1)
    assert refused.value.status_code == 401


def test_the_tenants_cap_bounds_a_request_that_sets_no_max_tokens(
    vllm: VllmServer, tmp_path_factory: pytest.TempPathFactory, logs_dir: Path
) -> None:
    # GIVEN a tenant capped at 16 tokens, and requests that would run to the context
    capped = make_tenant("capped", max_tokens=16)
    tenants = tmp_path_factory.mktemp("capped") / "tenants.json"
    write_tenants(tenants, [capped])
    gateway = GatewayServer(
        logs_dir / "gateway-capped.log", gateway_env(vllm.url, tenants, **GATEWAY_SETTINGS)
    )
    gateway.start()
    try:
        gateway.wait_ready()
        with make_client(gateway, capped, timeout=60.0) as sdk:
            # WHEN they set no max_tokens (and ignore the end-of-text token)
            reply = sdk.completions.create(
                model=vllm.model, prompt=COMPLETION_PROMPT, extra_body={"ignore_eos": True}
            )
            chat = sdk.chat.completions.create(
                model=vllm.model,
                messages=[{"role": "user", "content": CHAT_QUESTION}],
                extra_body={"min_tokens": 16},
            )
            # THEN vLLM generated the tenant's cap and no more
            assert reply.usage is not None and reply.usage.completion_tokens == 16
            assert chat.usage is not None and chat.usage.completion_tokens == 16
            # and a vLLM field the product does not offer never reaches it
            with pytest.raises(openai.BadRequestError) as refused:
                sdk.completions.create(
                    model=vllm.model, prompt="x", max_tokens=1, extra_body={"priority": -100}
                )
            assert refused.value.body["param"] == "priority"  # type: ignore[index]
            # and the model list carries no local path
            listed = httpx.get(
                f"{gateway.url}/v1/models", headers={"Authorization": capped.authorization}
            ).json()
            cards = [set(card) for card in listed["data"]]
            assert cards == [{"id", "object", "created", "owned_by"}]
    finally:
        gateway.stop(grace_s=10.0)


def test_prompt_arrays_and_token_ids_run_one_sequence_each(
    client: openai.OpenAI, vllm: VllmServer
) -> None:
    reply = client.completions.create(
        model=vllm.model, prompt=[COMPLETION_PROMPT, COMPLETION_PROMPT], max_tokens=4, n=2
    )
    assert len(reply.choices) == 4
    tokens = client.completions.create(model=vllm.model, prompt=[[1, 2, 3]], max_tokens=2)
    assert len(tokens.choices) == 1
    with pytest.raises(openai.BadRequestError, match="at most 4"):
        client.completions.create(model=vllm.model, prompt=["x"] * 5, max_tokens=1)


def test_a_cap_as_long_as_the_context_still_serves_a_short_prompt(
    client: openai.OpenAI, vllm: VllmServer
) -> None:
    # The session's tenant is capped at 256 tokens, the model's whole context: the inserted
    # max_tokens plus the prompt exceed it.
    reply = client.completions.create(model=vllm.model, prompt=COMPLETION_PROMPT)
    assert reply.usage is not None and reply.usage.completion_tokens <= 256
