"""Property-based fuzzing of every gateway route, over real HTTP on 127.0.0.1.

Hypothesis draws the method, path, Authorization header (none, a valid key in any case of
its scheme, wrong ones), content type and body (bytes, arbitrary JSON, generation requests
with fields of every wrong type and range: prompt arrays of every size and token-id form,
fields outside the allow-list, `min_tokens`, a missing `max_tokens`). For each case: no 5xx
(the upstream is healthy and the load is one request at a time, so any 5xx would be the
client's input crashing the gateway); every refusal is an OpenAI-shaped error; a refused
request never reached the upstream, counted by the named fake upstream's own request
counter; and a body the gateway must refuse (an unknown field, too many prompts or
sequences, `min_tokens` over the cap) is refused.
"""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.validation import CHAT_FIELDS, COMPLETION_FIELDS
from tests.processes import ClientTenant, GatewayServer, make_tenant, running, write_tenants
from tests.stress.harness import FakeUpstream, Reply, gateway_env, request, served_routes

MAX_BODY_BYTES = 4096
TENANT_MAX_TOKENS = 64
TENANT_MAX_SEQUENCES = 8
MAX_N = 4
MAX_PROMPTS = 4
EXAMPLES = 600  # per property: about 10 s each on loopback
GENERATION_PATHS = ("/v1/completions", "/v1/chat/completions")


@dataclass
class Target:
    gateway: GatewayServer
    upstream: FakeUpstream
    tenant: ClientTenant
    routes: set[tuple[str, str]]
    cases: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    server_errors: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("fuzz")
    tenant = make_tenant(
        "fuzzer", max_tokens=TENANT_MAX_TOKENS, max_concurrent_requests=TENANT_MAX_SEQUENCES
    )
    write_tenants(tmp / "tenants.json", [tenant, make_tenant("bystander")])
    upstream = FakeUpstream(tmp / "upstream.log", tokens=2)
    gateway = GatewayServer(
        tmp / "gateway.log",
        gateway_env(
            upstream.url,
            tmp / "tenants.json",
            max_body_bytes=MAX_BODY_BYTES,
            max_n=MAX_N,
            max_prompts=MAX_PROMPTS,
            # The probe runs once at start: after that, every generation request the
            # upstream counts was forwarded from a fuzz case.
            probe_interval_s=300,
            probe_freshness_s=3600,
        ),
    )
    with running(upstream, gateway):
        upstream.start()
        upstream.wait_up()
        gateway.start()
        gateway.wait_ready()
        yield Target(gateway, upstream, tenant, served_routes(tmp / "tenants.json"))


@pytest.fixture(scope="module", autouse=True)
def fuzz_report(target: Target) -> Iterator[None]:
    yield
    from tests.stress.figures import record

    record(
        "fuzz",
        {
            "cases_by_test": target.cases,
            "cases_total": sum(target.cases.values()),
            "by_status": {str(k): v for k, v in sorted(target.statuses.items())},
            "status_5xx_by_test": target.server_errors,
            "routes": sorted(f"{m} {p}" for m, p in target.routes),
        },
    )


# ---------------------------------------------------------------------------- strategies

# Header values as they can travel: printable ASCII without surrounding whitespace.
ascii_text = st.text(alphabet=string.printable.strip("\r\n\x0b\x0c"), max_size=80).map(str.strip)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
wrong_types = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(json_scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), json_scalars, max_size=2),
)
counts = st.integers(min_value=-5, max_value=TENANT_MAX_TOKENS + 5) | st.integers() | wrong_types
message = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["user", "system", "assistant", "tool"]) | wrong_types,
        "content": st.text(max_size=60) | wrong_types,
    },
)


token_ids = st.lists(st.integers(min_value=-2, max_value=50_000), min_size=0, max_size=8)
prompts = st.one_of(
    st.text(max_size=80),
    # Arrays of strings around the bound, and far past it (within the body size limit).
    st.lists(st.text(max_size=10), max_size=MAX_PROMPTS + 3),
    st.integers(min_value=MAX_PROMPTS + 1, max_value=600).map(lambda k: ["p"] * k),
    # Token ids: one array is one prompt; an array of arrays is one prompt each.
    token_ids,
    st.lists(token_ids, max_size=MAX_PROMPTS + 2),
    # Mixed shapes vLLM would refuse.
    st.lists(st.one_of(st.text(max_size=4), st.integers(), token_ids), min_size=2, max_size=4),
    wrong_types,
)
# Fields outside the allow-list: vLLM's own knobs, OpenAI's platform features, and junk.
UNOFFERED_FIELDS = (
    "priority",
    "kv_transfer_params",
    "chat_template",
    "chat_template_kwargs",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "structured_outputs",
    "best_of",
    "use_beam_search",
    "prompt_logprobs",
    "echo",
    "suffix",
    "tools",
    "tool_choice",
    "functions",
    "cache_salt",
    "request_id",
    "logits_processors",
    "store",
    "metadata",
    "x_extra",
)
unoffered = st.dictionaries(
    st.sampled_from(UNOFFERED_FIELDS) | st.text(min_size=1, max_size=12),
    json_values,
    max_size=2,
)


def generation_body(model: str) -> st.SearchStrategy[dict[str, Any]]:
    """Generation requests: each field the gateway checks, valid or wrong in type or range,
    with or without fields it does not offer."""
    accepted = st.fixed_dictionaries(
        {},
        optional={
            "model": st.just(model) | st.text(max_size=20) | wrong_types,
            "prompt": prompts,
            "messages": st.lists(message | wrong_types, max_size=3) | wrong_types,
            "stream": st.booleans() | wrong_types,
            "max_tokens": counts,
            "max_completion_tokens": counts,
            "min_tokens": counts,
            "ignore_eos": st.booleans(),
            "n": st.integers(min_value=-1, max_value=MAX_N + 2) | wrong_types,
            "temperature": st.floats(allow_nan=False, allow_infinity=False, width=32),
            # Accepted fields whose values are the upstream's to judge.
            "user": st.text(max_size=20),
            "top_k": st.integers(min_value=-1, max_value=50) | wrong_types,
            "logit_bias": st.dictionaries(st.text(max_size=5), json_scalars, max_size=2),
        },
    )
    return st.tuples(accepted, st.just({}) | unoffered).map(lambda pair: pair[1] | pair[0])


def encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    auth: str
    headers: dict[str, str]
    body: bytes


AUTH_KINDS = (
    "none",
    "valid",
    "valid-any-case",
    "wrong-key",
    "empty-bearer",
    "no-scheme",
    "basic",
    "junk",
)


def authorization(kind: str, tenant: ClientTenant, junk: str) -> str | None:
    return {
        "none": None,
        "valid": tenant.authorization,
        # RFC 7235: the scheme is case-insensitive; `junk` picks the case of each letter.
        "valid-any-case": "".join(
            c.upper() if i < len(junk) and junk[i].isupper() else c for i, c in enumerate("bearer")
        )
        + " "
        + tenant.key,
        "wrong-key": "Bearer sk-test-not-a-key-of-anyone",
        "empty-bearer": "Bearer",
        "no-scheme": tenant.key,
        "basic": "Basic " + junk,
        "junk": junk,
    }[kind]


@st.composite
def cases(draw: st.DrawFn, target: Target, *, generation_only: bool) -> Case:
    model = target.upstream.model
    known = sorted(target.routes)
    if generation_only:
        method, path = "POST", draw(st.sampled_from(GENERATION_PATHS))
    else:
        method, path = draw(
            st.sampled_from(known)
            | st.tuples(
                st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
                st.sampled_from(sorted({p for _, p in known}))
                | st.sampled_from(["/", "/v1", "/v1/", "/v1/completions/", "/v1/usage"])
                | st.text(
                    alphabet=string.ascii_letters + string.digits + "/-_.%~", max_size=30
                ).map(lambda tail: "/" + tail.lstrip("/")),
            )
        )
    auth_kind = draw(
        st.sampled_from(["valid", "valid-any-case"])
        if generation_only
        else st.sampled_from(AUTH_KINDS)
    )
    auth = authorization(auth_kind, target.tenant, draw(ascii_text))
    headers = {} if auth is None else {"Authorization": auth.strip()}
    content_type = draw(st.sampled_from(["application/json", None, "text/plain"]) | ascii_text)
    if content_type:
        headers["Content-Type"] = content_type
    if generation_only:
        body = encode(draw(generation_body(model)))
    else:
        body = draw(
            st.just(b"")
            | st.binary(max_size=200)
            | json_values.map(encode)
            | generation_body(model).map(encode)
            | st.binary(min_size=MAX_BODY_BYTES + 1, max_size=MAX_BODY_BYTES + 64)
        )
    return Case(method, path, auth_kind, headers, body)


# ---------------------------------------------------------------------------- the checks


def send(target: Target, case: Case) -> tuple[Reply, int]:
    """The gateway's answer, and how many generation requests reached the upstream for it."""
    before = target.upstream.stats()["generation_requests"]
    reply = asyncio.run(
        request(target.gateway.port, case.method, case.path, case.body, case.headers)
    )
    return reply, target.upstream.stats()["generation_requests"] - before


ACCEPTED = {
    "/v1/completions": COMPLETION_FIELDS,
    "/v1/chat/completions": CHAT_FIELDS,
}


def must_refuse(case: Case) -> str | None:
    """Why the gateway must refuse this generation request whatever else it holds, if it
    must: the rules of issue 13, judged here independently of the gateway's code."""
    if case.method != "POST" or case.path not in ACCEPTED or not case.auth.startswith("valid"):
        return None
    try:
        body = json.loads(case.body)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if set(body) - ACCEPTED[case.path]:
        return "a field outside the allow-list"
    prompt = body.get("prompt")
    if (
        case.path == "/v1/completions"
        and isinstance(prompt, list)
        and len(prompt) > MAX_PROMPTS
        and not all(type(t) is int for t in prompt)
    ):
        return "more prompts than GATEWAY_MAX_PROMPTS"
    n = body.get("n")
    prompts = len(prompt) if isinstance(prompt, list) and prompt and type(prompt[0]) is str else 1
    if type(n) is int and prompts * n > TENANT_MAX_SEQUENCES:
        return "more sequences than the tenant may ever run"
    min_tokens = body.get("min_tokens")
    if type(min_tokens) is int and min_tokens > TENANT_MAX_TOKENS:
        return "min_tokens over the tenant's cap"
    return None


def check(target: Target, test: str, case: Case) -> None:
    reply, upstream_calls = send(target, case)
    target.cases[test] = target.cases.get(test, 0) + 1
    target.statuses[reply.status] = target.statuses.get(reply.status, 0) + 1
    if reply.status >= 500:
        target.server_errors[test] = target.server_errors.get(test, 0) + 1

    assert reply.error is None, reply.error
    assert reply.status < 500, (reply.status, reply.body[:300])
    if reply.status >= 400:
        # A refusal the client's SDK can read, and nothing sent upstream for it.
        assert upstream_calls == 0, (reply.status, upstream_calls)
        if case.method != "HEAD":
            error = json.loads(reply.body)["error"]
            assert isinstance(error["message"], str) and error["message"], error
    elif case.method == "POST" and case.path in GENERATION_PATHS:
        assert upstream_calls == 1, (reply.status, upstream_calls)
        assert must_refuse(case) is None, (must_refuse(case), case.body[:300])
    else:
        assert upstream_calls == 0, (case.method, case.path, upstream_calls)


FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@settings(FUZZ_SETTINGS, max_examples=EXAMPLES)
@given(data=st.data())
def test_every_route_with_and_without_auth_never_answers_5xx(target: Target, data: Any) -> None:
    check(target, "every_route", data.draw(cases(target, generation_only=False)))


@settings(FUZZ_SETTINGS, max_examples=EXAMPLES)
@given(data=st.data())
def test_generation_bodies_with_a_valid_key_are_refused_cleanly_or_forwarded_once(
    target: Target, data: Any
) -> None:
    check(target, "generation_valid_key", data.draw(cases(target, generation_only=True)))


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "fake-model", "prompt": "x", "max_tokens": 1e999}',
        b'{"model": "fake-model", "prompt": "x", "max_tokens": NaN}',
        b'{"model": "fake-model", "prompt": "x", "n": -Infinity}',
        b"\xff\xfe{\x00",
        b'{"model": "fake-model", "prompt": "\xed\xa0\x80"}',
        b"[]",
        b"null",
    ],
    ids=["huge-float", "nan", "minus-infinity", "utf16-bom", "lone-surrogate", "array", "null"],
)
def test_known_awkward_bodies_are_refused_with_4xx(target: Target, body: bytes) -> None:
    headers = {"Authorization": target.tenant.authorization, "Content-Type": "application/json"}
    for path in GENERATION_PATHS:
        check(target, "awkward_bodies", Case("POST", path, "valid", headers, body))


@pytest.mark.parametrize("depth", [2000])
def test_a_deeply_nested_body_is_refused_with_4xx(target: Target, depth: int) -> None:
    # json.loads raises RecursionError (not a ValueError) on deep nesting: a body of a few
    # KB, far under the size limit, once answered 500.
    headers = {"Authorization": target.tenant.authorization, "Content-Type": "application/json"}
    body = b'{"model": "fake-model", "prompt": ' + b"[" * depth + b"]" * depth + b"}"
    check(target, "deep_nesting", Case("POST", "/v1/completions", "valid", headers, body))


def test_the_fuzzer_reaches_every_route(target: Target) -> None:
    # Guards the strategies: if the app gains a route, the fuzzer draws it too.
    assert {("POST", p) for p in GENERATION_PATHS} <= target.routes
    assert {("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/health/ready")} <= target.routes
