"""/metrics and the health routes are not reachable through the load balancer.

The listener rules of every synthesized stack are evaluated the way the ALB evaluates them
(rules by priority, then the listener's default action; path patterns case-sensitive with
`*` and `?`; any condition other than the path is assumed to be satisfiable by a client,
since headers and query strings are the client's to choose). Then the paths the rules do
forward are tried against a real gateway, so that a `/v1/...` path cannot alias an
internal route either.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from tests.processes import GatewayServer, make_tenant, running, write_tenants
from tests.security.synth import resources, synthesized_stacks
from tests.stress.harness import FakeUpstream, gateway_env, request

INTERNAL_PATHS = ["/metrics", "/health/ready", "/health/live", "/health", "/openapi.json", "/"]
PUBLIC_PATHS = ["/v1/completions", "/v1/chat/completions", "/v1/models"]
# Paths inside the forwarded prefix that a client could hope the gateway normalizes.
ALIASES = [
    "/v1/../metrics",
    "/v1/%2e%2e/metrics",
    "/v1/..%2fmetrics",
    "/v1//metrics",
    "/v1/metrics",
    "/v1/../health/ready",
    "/v1/health/ready",
    "/v1/%2E%2E/health/live",
]


def path_pattern(pattern: str) -> re.Pattern[str]:
    """An ALB path pattern as a regex: `*` any run of characters, `?` exactly one."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def route(stack: dict[str, Any], listener_id: str, path: str) -> dict[str, Any]:
    """The action the ALB takes for `path` on one listener."""
    ref = f"${{aws_lb_listener.{listener_id}.arn}}"
    rules = sorted(
        (r for r in resources(stack, "aws_lb_listener_rule").values() if r["listener_arn"] == ref),
        key=lambda r: int(r["priority"]),
    )
    for rule in rules:
        conditions = rule.get("condition", [])
        patterns = [
            value
            for condition in conditions
            if "path_pattern" in condition
            for value in condition["path_pattern"]["values"]
        ]
        if not patterns or any(path_pattern(p).fullmatch(path) for p in patterns):
            action: dict[str, Any] = rule["action"][0]
            return action
    listener = resources(stack, "aws_lb_listener")[listener_id]
    default: dict[str, Any] = listener["default_action"][0]
    return default


@pytest.mark.parametrize("stack_name", ["finsight-serving-dev", "finsight-serving-prod"])
def test_internal_routes_are_never_forwarded_and_the_api_is(stack_name: str) -> None:
    stack = synthesized_stacks()[stack_name]
    listeners = resources(stack, "aws_lb_listener")
    # HTTPS only: a port-80 redirect would answer after the bearer key crossed in cleartext.
    assert {int(listener["port"]) for listener in listeners.values()} == {443}
    assert all(listener["protocol"] == "HTTPS" for listener in listeners.values())
    (group,) = resources(stack, "aws_lb_target_group")
    for listener_id in listeners:
        for path in INTERNAL_PATHS + ALIASES:
            action = route(stack, listener_id, path)
            if path in INTERNAL_PATHS:
                assert action["type"] != "forward", (listener_id, path, action)
        for path in PUBLIC_PATHS:
            action = route(stack, listener_id, path)
            assert action["type"] == "forward", (path, action)
            assert action["target_group_arn"] == f"${{aws_lb_target_group.{group}.arn}}"


def test_the_evaluator_would_catch_an_exposed_route() -> None:
    # A rule forwarding everything must make the check above fail.
    stack = {
        "resource": {
            "aws_lb_listener": {"https": {"port": 443, "default_action": [{"type": "x"}]}},
            "aws_lb_listener_rule": {
                "all": {
                    "listener_arn": "${aws_lb_listener.https.arn}",
                    "priority": 1,
                    "action": [{"type": "forward"}],
                    "condition": [{"path_pattern": {"values": ["/*"]}}],
                }
            },
        }
    }
    assert route(stack, "https", "/metrics")["type"] == "forward"
    assert path_pattern("/v1/*").fullmatch("/v1/../metrics")
    assert not path_pattern("/v1/*").fullmatch("/metrics")


def test_forwarded_paths_cannot_reach_internal_routes_on_the_gateway(
    tmp_path: Path,
) -> None:
    tenant = make_tenant("acme")
    write_tenants(tmp_path / "tenants.json", [tenant])
    upstream = FakeUpstream(tmp_path / "upstream.log", tokens=2)
    gateway = GatewayServer(
        tmp_path / "gateway.log", gateway_env(upstream.url, tmp_path / "tenants.json")
    )
    with running(upstream, gateway):
        upstream.start()
        upstream.wait_up()
        gateway.start()
        gateway.wait_ready()
        direct = asyncio.run(request(gateway.port, "GET", "/metrics"))
        aliased = {
            alias: asyncio.run(
                request(
                    gateway.port,
                    "GET",
                    alias,
                    headers={"Authorization": tenant.authorization},
                )
            )
            for alias in ALIASES
        }
    # The internal route exists (so its absence below means something)...
    assert direct.status == 200 and b"gateway_running_sequences" in direct.body
    # ...and no path the ALB forwards serves it or a health answer.
    for alias, reply in aliased.items():
        assert reply.status in (400, 401, 404, 405), (alias, reply.status)
        assert b"gateway_running_sequences" not in reply.body, alias
        assert b'"status"' not in reply.body, alias
