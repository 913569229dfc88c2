"""Logs are JSON lines; each finished request writes one access line, without prompt or key."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

from app.logs import JsonFormatter, JsonText, configure_logging
from app.main import Runtime
from tests.app.stack import ACME_KEY, GLOBEX_KEY, chat_body, running_stack, tenants_document
from tests.fakes.fake_vllm import FakeVllmConfig

SECRET_PROMPT = "quarterly-earnings-SECRET-PROMPT"
WRONG_KEY = "sk-wrong-key-5555555555"


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [
        entry
        for entry in map(json.loads, stream.getvalue().splitlines())
        if entry["logger"] == "app.access"
    ]


def test_a_line_is_one_json_object_with_the_record_and_its_fields() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "app.x", logging.ERROR, __file__, 1, "failed %s\nagain", ("twice",), True
        )
        record.exc_info = sys.exc_info()
    record.fields = {"tenant": "acme", "message": "a field never hides the message"}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "app.x"
    assert entry["message"] == "failed twice\nagain"
    assert entry["tenant"] == "acme"
    assert "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("Z") and entry["time"][10] == "T"


def test_a_field_already_encoded_is_written_as_it_is() -> None:
    record = logging.LogRecord("app.x", logging.INFO, __file__, 1, "done", (), None)
    record.fields = {
        "tenant": "acme",
        "_aws": JsonText('{"Timestamp":1,"CloudWatchMetrics":[]}'),
        "level": JsonText('"hidden"'),  # never hides the four common fields either
    }
    entry = json.loads(JsonFormatter().format(record))
    assert entry["_aws"] == {"Timestamp": 1, "CloudWatchMetrics": []}
    assert (entry["tenant"], entry["level"]) == ("acme", "INFO")


def test_uvicorn_lines_go_through_the_same_handler() -> None:
    stream = io.StringIO()
    configure_logging("info", stream)
    configure_logging("info", stream)  # idempotent: still one line per record
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    logging.getLogger("httpx").info("HTTP Request: GET http://169.254.169.254/...")  # quiet
    # uvicorn's access line would repeat the gateway's own (app.access): it is off.
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "Application startup complete."


def test_every_request_writes_one_access_line_without_prompt_or_key(tmp_path: Path) -> None:
    stream = io.StringIO()
    runtime = Runtime(install_signal_handlers=False, exit_process=lambda: None, log_stream=stream)
    prompt = [{"role": "user", "content": SECRET_PROMPT}]

    async def scenario() -> None:
        async with running_stack(
            tmp_path,
            runtime=runtime,
            fake_config=FakeVllmConfig(tokens=4, token_delay_ms=20),
            tenants=tenants_document(max_concurrent_requests=1),
            tenant_max_queued_sequences=0,  # no waiting: beyond its 1 running, a 429
        ) as stack:
            async with stack.client() as acme:
                # GIVEN a streamed and a whole answer for acme
                streamed = await acme.post(
                    "/v1/chat/completions",
                    json=chat_body(messages=prompt, stream=True),
                    headers={"X-Request-Id": "req-1"},
                )
                assert streamed.status_code == 200
                whole = await acme.post("/v1/chat/completions", json=chat_body(messages=prompt))
                assert whole.status_code == 200
                # AND a second concurrent acme request, shed by the tenant's limits
                both = await asyncio.gather(
                    acme.post("/v1/chat/completions", json=chat_body(messages=prompt)),
                    acme.post("/v1/chat/completions", json=chat_body(messages=prompt)),
                )
                assert sorted(r.status_code for r in both) == [200, 429]
            async with stack.client(GLOBEX_KEY) as globex:
                assert (await globex.get("/v1/models")).status_code == 200
            async with stack.client(WRONG_KEY) as stranger:
                refused = await stranger.post("/v1/completions", json=chat_body(messages=prompt))
                assert refused.status_code == 401
            async with asyncio.timeout(3):
                while len(access_lines(stream)) < 6:
                    await asyncio.sleep(0.01)

    asyncio.run(scenario())
    # THEN every line of the log is a JSON object with the four common fields
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    lines = access_lines(stream)
    generation = [line for line in lines if line["route"] == "/v1/chat/completions"]
    assert len(generation) == 4
    streamed_line = next(line for line in generation if line.get("stream") is True)
    assert streamed_line["tenant"] == "acme"
    assert streamed_line["status"] == 200
    assert streamed_line["request_id"] == "req-1"
    # The answer streams 4 tokens 20 ms apart: the first comes well before the last.
    assert 0 < streamed_line["ttft_ms"] < streamed_line["duration_ms"]
    assert streamed_line["duration_ms"] >= 60
    whole_lines = [line for line in generation if line.get("stream") is False]
    assert len(whole_lines) == 3
    assert all("ttft_ms" not in line for line in whole_lines)
    shed = [line for line in whole_lines if line["status"] == 429]
    assert len(shed) == 1 and shed[0]["shed_reason"] == "tenant_queue_full"
    # Each admitted request says how long it waited for its turn: here, not at all.
    assert [line["queue_ms"] for line in generation if line["status"] == 200] == [0, 0, 0]
    assert shed[0]["tenant"] == "acme"
    assert all("shed_reason" not in line for line in lines if line["status"] != 429)
    # Judged against the SLO even with no group to publish metrics for (a local run): the
    # verdict is on the line for Logs Insights, but the line is no EMF document.
    assert [line["slo_miss"] for line in generation] == [
        1 if line["status"] == 429 else 0 for line in generation
    ]
    assert shed[0]["requests_shed"] == 1
    assert not any("_aws" in line or "AutoScalingGroupName" in line for line in lines)
    models = next(line for line in lines if line["route"] == "/v1/models")
    assert (models["tenant"], models["status"], models["method"]) == ("globex", 200, "GET")
    assert "slo_miss" not in models  # not an inference route
    # An unknown key names no tenant, so the per-tenant query does not count it.
    unauthenticated = next(line for line in lines if line["status"] == 401)
    assert unauthenticated["route"] == "/v1/completions"
    assert "tenant" not in unauthenticated
    assert "slo_miss" not in unauthenticated
    # AND neither the prompt nor any key is anywhere in the log
    text = stream.getvalue()
    for secret in (SECRET_PROMPT, ACME_KEY, GLOBEX_KEY, WRONG_KEY, "Bearer"):
        assert secret not in text
