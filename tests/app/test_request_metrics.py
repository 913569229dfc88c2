"""Each inference request is judged against the SLO on its access line, and the line is a
valid CloudWatch Embedded Metric Format document with the contract's dimension sets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from app.access import MAX_REQUEST_ID_CHARS, MAX_ROUTE_CHARS, AccessRecord, access_fields
from app.logs import JsonFormatter
from app.main import Runtime
from app.request_metrics import RequestMetrics, SloTargets, slo_miss
from contract import (
    GROUP_DIMENSION,
    REQUEST_DIMENSION_SETS,
    SHED_DIMENSION_SETS,
    SLO_ROUTES,
    format_tenant_targets,
)
from tests.app.emf_spec import MAX_EVENT_BYTES, EmfError, check_emf, emitted_metrics
from tests.app.stack import ACME_KEY, GLOBEX_KEY, chat_body, local_settings, running_stack
from tests.fakes.fake_vllm import FakeVllmConfig

GROUP = "finsight-serving-test"
NAMESPACE = "FinsightServingTest"
TARGETS = SloTargets(ttft_ms=5000, e2e_ms=65000)
CHAT = "/v1/chat/completions"
SECRET_PROMPT = "balance-sheet-SECRET-PROMPT"


# --- which requests count, and which miss ----------------------------------------------


@pytest.mark.parametrize(
    ("status", "stream", "ttft_ms", "duration_ms", "shed_reason", "expected"),
    [
        # Served: a stream by its first token and its end, a whole answer by its end only.
        (200, True, 120.0, 900.0, None, 0),
        (200, True, 5001.0, 6000.0, None, 1),
        (200, True, None, 900.0, None, 1),  # a stream that sent no token at all
        (200, True, 100.0, 65001.0, None, 1),
        (200, False, None, 4999.0, None, 0),
        (200, False, None, 60000.0, None, 0),  # no first token to be late with
        (200, False, None, 65001.0, None, 1),
        # Failed or refused by the gateway: a miss, however fast.
        (502, True, 50.0, 80.0, None, 1),  # a stream broken mid-way
        (504, False, None, 300000.0, None, 1),
        (503, None, None, 2.0, "queue_full", 1),
        (503, True, None, 30000.0, "queue_timeout", 1),
        (503, True, None, 1.0, "circuit_open", 1),
        (503, None, None, 1.0, "draining", 1),
        (503, None, None, 1.0, None, 1),  # the model server not ready yet
        (429, None, None, 1.0, "tenant_queue_full", 1),
        # The client's own mistake or limit: not counted.
        (429, None, None, 1.0, None, None),
        (400, None, None, 1.0, None, None),
        (401, None, None, 1.0, None, None),
        (404, None, None, 1.0, None, None),
        (408, None, None, 10000.0, None, None),  # its body did not come in time
        (408, True, 50.0, 40000.0, None, None),  # it stopped reading its stream
        (413, None, None, 1.0, None, None),
        (422, None, None, 1.0, None, None),
        # A client that left: counted only once it had waited past its target.
        (499, True, None, 4000.0, None, None),
        (499, True, None, 6000.0, None, 1),
        (499, True, None, 6000.0, "client_gone", 1),  # left the queue after 6 s
        (499, True, 300.0, 9000.0, None, None),  # had its first token in time
        (499, True, 5500.0, 9000.0, None, 1),  # its first token came late
        (499, False, None, 6000.0, None, None),  # a whole answer's target is e2e
        (499, False, None, 70000.0, None, 1),
        (499, None, None, 70000.0, None, None),  # left while sending its body
    ],
)
def test_slo_miss_counts_what_the_slo_counts(
    status: int,
    stream: bool | None,
    ttft_ms: float | None,
    duration_ms: float,
    shed_reason: str | None,
    expected: int | None,
) -> None:
    assert slo_miss(status, stream, ttft_ms, duration_ms, shed_reason, TARGETS) == expected


def test_a_tenant_listed_in_the_targets_is_judged_by_its_own() -> None:
    metrics = RequestMetrics(
        namespace=NAMESPACE,
        autoscaling_group_name=GROUP,
        default_targets=TARGETS,
        tenant_targets={"globex": SloTargets(ttft_ms=100, e2e_ms=1000)},
    )
    assert metrics.targets("acme") == TARGETS
    assert metrics.targets("globex") == SloTargets(100, 1000)


# --- the line as an EMF document -------------------------------------------------------


def _line(fields: dict[str, Any]) -> str:
    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "POST", (), None)
    record.fields = fields
    return JsonFormatter().format(record)


def _fields(**values: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "method": "POST",
        "route": CHAT,
        "status": 200,
        "duration_ms": 800.0,
        "tenant": "acme",
        "stream": True,
        "queue_ms": 0,
        "ttft_ms": 90.5,
    }
    fields.update(values)
    return {key: value for key, value in fields.items() if value is not None}


def _metrics(group: str | None = GROUP, namespace: str = NAMESPACE) -> RequestMetrics:
    return RequestMetrics(
        namespace=namespace, autoscaling_group_name=group, default_targets=TARGETS
    )


def test_a_served_stream_is_an_emf_document_with_the_contracts_dimension_sets() -> None:
    fields = _fields()
    _metrics().annotate(fields)
    document = check_emf(_line(fields))
    assert document["slo_miss"] == 0 and document[GROUP_DIMENSION] == GROUP
    assert "requests_shed" not in document
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [list(names) for names in REQUEST_DIMENSION_SETS]
    units = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
    assert units == {
        "ttft_ms": "Milliseconds",
        "duration_ms": "Milliseconds",
        "queue_ms": "Milliseconds",
        "slo_miss": "Count",
    }
    assert {metric["StorageResolution"] for metric in directive["Metrics"]} == {60}


def test_a_shed_request_adds_a_directive_by_reason() -> None:
    fields = _fields(status=503, stream=None, ttft_ms=None, queue_ms=None, shed_reason="draining")
    _metrics().annotate(fields)
    document = check_emf(_line(fields))
    assert (document["slo_miss"], document["requests_shed"]) == (1, 1)
    request, shed = document["_aws"]["CloudWatchMetrics"]
    # Only the metrics the line has: a shed request had no first token and did not queue.
    assert [metric["Name"] for metric in request["Metrics"]] == ["duration_ms", "slo_miss"]
    assert shed["Dimensions"] == [list(names) for names in SHED_DIMENSION_SETS]
    assert [(m["Name"], m["Unit"]) for m in shed["Metrics"]] == [("requests_shed", "Count")]
    assert (NAMESPACE, "requests_shed", (GROUP_DIMENSION, "shed_reason")) in emitted_metrics(
        document
    )


def test_a_client_leaving_the_queue_late_misses_but_is_no_shed() -> None:
    fields = _fields(status=499, ttft_ms=None, duration_ms=7000.0, shed_reason="client_gone")
    _metrics().annotate(fields)
    document = check_emf(_line(fields))
    assert document["slo_miss"] == 1 and "requests_shed" not in document
    assert len(document["_aws"]["CloudWatchMetrics"]) == 1


def test_directives_are_built_once_per_shape_and_shared_by_every_line() -> None:
    metrics = _metrics()
    lines = [_fields(), _fields(duration_ms=70_000.0), _fields(status=503, shed_reason="draining")]
    for fields in lines:
        metrics.annotate(fields)
    first, second, shed = (check_emf(_line(fields)) for fields in lines)
    assert (first["slo_miss"], second["slo_miss"], shed["slo_miss"]) == (0, 1, 1)
    assert first["_aws"]["CloudWatchMetrics"] == second["_aws"]["CloudWatchMetrics"]
    assert len(metrics._directives) == 2  # one shape served, one shed


def test_lines_that_do_not_count_are_left_as_they_were() -> None:
    metrics = _metrics()
    for fields in (
        _fields(status=400, stream=None, ttft_ms=None, queue_ms=None),
        _fields(tenant=None, status=401, stream=None, ttft_ms=None, queue_ms=None),
        _fields(route="/v1/models", stream=None, ttft_ms=None, queue_ms=None),
        _fields(route="/v1/completion", status=404, stream=None, ttft_ms=None, queue_ms=None),
    ):
        before = dict(fields)
        metrics.annotate(fields)
        assert fields == before
        with pytest.raises(EmfError, match="_aws"):
            check_emf(_line(fields))


def test_without_a_group_the_verdict_stays_on_the_line_without_metrics() -> None:
    fields = _fields(status=503, stream=None, ttft_ms=None, shed_reason="queue_full")
    _metrics(group=None).annotate(fields)
    assert (fields["slo_miss"], fields["requests_shed"]) == (1, 1)
    assert "_aws" not in fields and GROUP_DIMENSION not in fields


def test_the_custom_metric_count_is_the_readmes() -> None:
    # GIVEN every kind of line from two tenants on both routes, and every refusal
    metrics = _metrics()
    tenants = ("acme", "globex")
    reasons = ("queue_full", "tenant_queue_full", "queue_timeout", "draining", "circuit_open")
    lines = [
        _fields(tenant=tenant, route=route, **shape)
        for tenant in tenants
        for route in SLO_ROUTES
        for shape in ({}, {"stream": False, "ttft_ms": None})
    ]
    lines += [_fields(status=503, ttft_ms=None, shed_reason=reason) for reason in reasons]
    identities = set()
    for fields in lines:
        metrics.annotate(fields)
        document = check_emf(_line(fields))
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for definition in directive["Metrics"]:
                for names in directive["Dimensions"]:
                    values = tuple((name, document[name]) for name in names)
                    identities.add((definition["Name"], values))
    # THEN 4 metrics x (1 + T + 2T) combinations, and one per shed reason: 9 + 12T
    assert len(identities) == 9 + 12 * len(tenants)


def test_the_longest_line_stays_far_under_the_log_event_limit() -> None:
    # GIVEN every field at the longest the gateway writes it
    scope = {
        "method": "POST",
        "path": max(SLO_ROUTES, key=len),
        "headers": [(b"x-request-id", b"r" * 10 * MAX_REQUEST_ID_CHARS)],
    }
    record = AccessRecord(
        tenant="t" * 63, stream=True, ttft_ms=599_999.99, queue_ms=599_999.99,
        shed_reason="tenant_queue_full", status=503,
    )  # fmt: skip
    fields = access_fields(scope, record, 503, 3_600_000.0)
    metrics = _metrics(group="g" * 255, namespace="n" * 255)
    metrics.annotate(fields)
    line = _line(fields)
    # THEN it is a valid EMF document, a few KB at most
    document = check_emf(line)
    assert len(document["_aws"]["CloudWatchMetrics"]) == 2
    assert len(line.encode()) < 4096 < MAX_EVENT_BYTES
    # AND a line on any other path is bounded too, by the route's truncation
    other = access_fields({**scope, "path": "/" + "x" * 100_000}, AccessRecord(), 404, 1.0)
    assert len(other["route"]) == MAX_ROUTE_CHARS
    assert len(_line(other).encode()) < 4096


def test_settings_reach_the_judge() -> None:
    settings = local_settings(
        Path("/nonexistent/tenants.json"),
        8001,
        autoscaling_group_name=GROUP,
        cloudwatch_namespace=NAMESPACE,
        slo_ttft_s=2,
        slo_e2e_s=30,
        slo_tenant_targets=format_tenant_targets({"globex": (0.5, 10)}),
    )
    metrics = RequestMetrics.from_settings(settings)
    assert metrics.targets("acme") == SloTargets(2000, 30000)
    assert metrics.targets("globex") == SloTargets(500, 10000)
    fields = _fields(duration_ms=31_000.0)
    metrics.annotate(fields)
    assert fields["slo_miss"] == 1
    assert check_emf(_line(fields))["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE


# --- through the gateway, over HTTP ----------------------------------------------------


def _access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [
        entry
        for entry in map(json.loads, stream.getvalue().splitlines())
        if entry["logger"] == "app.access"
    ]


def test_requests_through_the_gateway_write_their_verdict_and_metrics(tmp_path: Path) -> None:
    log = io.StringIO()
    runtime = Runtime(install_signal_handlers=False, exit_process=lambda: None, log_stream=log)
    prompt = [{"role": "user", "content": SECRET_PROMPT}]
    statuses: dict[str, int] = {}

    async def scenario() -> None:
        async with running_stack(
            tmp_path,
            runtime=runtime,
            fake_config=FakeVllmConfig(tokens=4, token_delay_ms=10),
            autoscaling_group_name=GROUP,
            cloudwatch_namespace=NAMESPACE,
            # globex's contract promises what no stream can give: every request misses.
            slo_tenant_targets=format_tenant_targets({"globex": (0.001, 0.002)}),
            # One sequence at a time and no queue: a second request at once is shed.
            max_running_sequences=1,
            max_queued_sequences=0,
            tenant_max_queued_sequences=0,
        ) as stack:
            async with stack.client() as acme, stack.client(GLOBEX_KEY) as globex:
                # GIVEN acme's stream within target, and while it runs, a second request
                async with acme.stream(
                    "POST",
                    CHAT,
                    json=chat_body(messages=prompt, stream=True),
                    headers={"X-Request-Id": "served"},
                ) as streamed:
                    chunks = streamed.aiter_bytes()
                    await anext(chunks)  # admitted and running: the one sequence is taken
                    shed = await acme.post(
                        CHAT, json=chat_body(messages=prompt), headers={"X-Request-Id": "shed"}
                    )
                    statuses["shed"] = shed.status_code
                    async for _ in chunks:
                        pass
                    statuses["served"] = streamed.status_code
                # AND globex's stream, judged by its tiny targets
                late = await globex.post(
                    CHAT,
                    json=chat_body(messages=prompt, stream=True),
                    headers={"X-Request-Id": "late"},
                )
                statuses["late"] = late.status_code
                # AND a stream the model server breaks off mid-way (sent as 200)
                stack.fake.config.mode = "drop"
                broken = await acme.post(
                    CHAT,
                    json=chat_body(messages=prompt, stream=True),
                    headers={"X-Request-Id": "broken"},
                )
                stack.fake.config.mode = "ok"
                statuses["broken"] = broken.status_code
                # AND the client's own mistakes: a bad body, a wrong key, a wrong path
                bad = await acme.post(
                    CHAT, content=b"{not json", headers={"X-Request-Id": "bad-body"}
                )
                statuses["bad-body"] = bad.status_code
            async with stack.client("sk-wrong-key-5555555555") as stranger:
                refused = await stranger.post(
                    CHAT, json=chat_body(messages=prompt), headers={"X-Request-Id": "bad-key"}
                )
                statuses["bad-key"] = refused.status_code
            async with stack.client() as acme:
                missing = await acme.post(
                    "/v1/completion", json={}, headers={"X-Request-Id": "bad-path"}
                )
                statuses["bad-path"] = missing.status_code
            async with asyncio.timeout(3):
                while len(_access_lines(log)) < len(statuses):
                    await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert statuses == {
        "shed": 503,
        "served": 200,
        "late": 200,
        "broken": 200,
        "bad-body": 400,
        "bad-key": 401,
        "bad-path": 404,
    }
    lines = {line["request_id"]: line for line in _access_lines(log) if "request_id" in line}
    raw = {
        json.loads(text)["request_id"]: text
        for text in log.getvalue().splitlines()
        if '"request_id"' in text
    }

    # THEN the served stream met its target, with its three timings as metrics
    served = check_emf(raw["served"])
    assert (served["status"], served["slo_miss"], served[GROUP_DIMENSION]) == (200, 0, GROUP)
    assert (served["tenant"], served["route"]) == ("acme", CHAT)
    assert 0 < served["ttft_ms"] < served["duration_ms"]
    expected_request_metrics = {
        (NAMESPACE, name, names)
        for name in ("ttft_ms", "duration_ms", "queue_ms", "slo_miss")
        for names in REQUEST_DIMENSION_SETS
    }
    assert emitted_metrics(served) == expected_request_metrics
    # AND the shed request missed, and is counted by its reason
    shed = check_emf(raw["shed"])
    assert (shed["slo_miss"], shed["requests_shed"], shed["shed_reason"]) == (1, 1, "queue_full")
    request, by_reason = shed["_aws"]["CloudWatchMetrics"]
    assert request["Dimensions"] == [list(names) for names in REQUEST_DIMENSION_SETS]
    assert by_reason["Dimensions"] == [list(names) for names in SHED_DIMENSION_SETS]
    assert (NAMESPACE, "requests_shed", (GROUP_DIMENSION, "shed_reason")) in emitted_metrics(shed)
    # AND globex's stream missed its own, tighter target
    late = check_emf(raw["late"])
    assert (late["tenant"], late["status"], late["slo_miss"]) == ("globex", 200, 1)
    # AND the broken stream is counted as the failure it was, not as the 200 sent
    broken = check_emf(raw["broken"])
    assert (broken["status"], broken["slo_miss"]) == (502, 1)
    # AND the client's own mistakes carry neither a verdict nor metrics
    for request_id, status in (("bad-body", 400), ("bad-key", 401), ("bad-path", 404)):
        line = lines[request_id]
        assert line["status"] == status
        assert not {"_aws", "slo_miss", "requests_shed", GROUP_DIMENSION} & line.keys()
    # AND neither the prompt nor a key is in the log
    text = log.getvalue()
    for secret in (SECRET_PROMPT, ACME_KEY, GLOBEX_KEY, "Bearer"):
        assert secret not in text
