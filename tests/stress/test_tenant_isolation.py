"""Tenant isolation: what one tenant's key can read, and a key revoked without a restart.

Tenants reach the gateway only through the load balancer, which forwards `/v1/*` alone
(tests/security checks the listener rules); so everything a key can read is what the
`/v1/*` routes answer. /metrics carries every tenant's label and is for the instance's
own scrapers, never reachable with a tenant key from outside.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

from tests.processes import (
    ClientTenant,
    GatewayServer,
    make_tenant,
    running,
    wait_until,
    write_tenants,
)
from tests.stress.harness import (
    FakeUpstream,
    Reply,
    completion_body,
    gateway_env,
    request,
    served_routes,
)


def _call(gateway: GatewayServer, tenant: ClientTenant, method: str, path: str, **kw: Any) -> Reply:
    headers = {"Authorization": tenant.authorization, "Content-Type": "application/json"}
    return asyncio.run(request(gateway.port, method, path, headers=headers, **kw))


def test_a_tenant_key_reads_nothing_of_another_tenant(tmp_path: Path, logs_dir: Path) -> None:
    acme, globex = make_tenant("acme"), make_tenant("globex-secret")
    write_tenants(tmp_path / "tenants.json", [acme, globex])
    upstream = FakeUpstream(logs_dir / "upstream.log", tokens=4)
    gateway = GatewayServer(
        logs_dir / "gateway.log", gateway_env(upstream.url, tmp_path / "tenants.json")
    )
    routes = sorted(r for r in served_routes(tmp_path / "tenants.json") if r[1].startswith("/v1/"))
    assert {path for _, path in routes} >= {
        "/v1/models",
        "/v1/completions",
        "/v1/chat/completions",
    }
    with running(upstream, gateway):
        upstream.start()
        upstream.wait_up()
        gateway.start()
        gateway.wait_ready()
        # The other tenant has traffic of every kind, so its id is in the gateway's counters.
        for _ in range(3):
            reply = _call(
                gateway, globex, "POST", "/v1/completions", body=completion_body("fake-model")
            )
            assert reply.status == 200, reply
        assert globex.id in gateway.metrics_text()

        # Everything acme's key can read: each /v1/ route, with good and bad bodies, and
        # paths that other APIs use for usage and metrics.
        seen: list[Reply] = []
        chat = json.dumps(
            {"model": upstream.model, "messages": [{"role": "user", "content": "hi"}]}
        ).encode()
        refused = [
            b'{"model": "nope", "prompt": "x", "messages": [{"role": "user"}]}',
            b"{not json",
            completion_body(upstream.model, max_tokens=10**9),
        ]
        for method, path in routes:
            if method == "GET":
                bodies = [b""]
            elif path == "/v1/chat/completions":
                bodies = [chat, *refused]
            else:
                bodies = [
                    completion_body(upstream.model),
                    completion_body(upstream.model, stream=True),
                    *refused,
                ]
            for body in bodies:
                seen.append(_call(gateway, acme, method, path, body=body))
        seen.append(_call(gateway, acme, "GET", "/v1/usage"))
        seen.append(_call(gateway, acme, "GET", "/v1/metrics"))

    statuses = {r.status for r in seen}
    assert 200 in statuses and statuses & {400, 404, 413}, statuses
    for reply in seen:
        visible = reply.body + repr(reply.headers).encode()
        assert globex.id.encode() not in visible, (reply.status, visible[:300])
        assert globex.key.encode() not in visible
        assert acme.key.encode() not in visible  # a key is never echoed, even to its owner


def test_a_revoked_key_stops_working_on_reload_without_a_restart(
    tmp_path: Path, logs_dir: Path, figures: dict[str, Any]
) -> None:
    acme, leaver = make_tenant("acme"), make_tenant("leaver")
    tenants_file = tmp_path / "tenants.json"
    write_tenants(tenants_file, [acme, leaver])
    upstream = FakeUpstream(logs_dir / "upstream.log", tokens=4)
    gateway = GatewayServer(
        logs_dir / "gateway.log",
        # The periodic reload is far away: only the SIGHUP can explain a change in time.
        gateway_env(upstream.url, tenants_file, tenants_reload_s=3600),
    )
    body = completion_body(upstream.model)
    with running(upstream, gateway):
        upstream.start()
        upstream.wait_up()
        gateway.start()
        gateway.wait_ready()
        pid = gateway.pid
        assert _call(gateway, leaver, "POST", "/v1/completions", body=body).status == 200

        # The leaver's entry is removed from the document and the gateway told to reload.
        write_tenants(tenants_file, [acme])
        before_reload = _call(gateway, leaver, "POST", "/v1/completions", body=body).status
        os.kill(pid, signal.SIGHUP)
        revoked_after = wait_until(
            lambda: _call(gateway, leaver, "GET", "/v1/models").status == 401, 5.0
        )
        after = _call(gateway, leaver, "POST", "/v1/completions", body=body)
        still_ok = _call(gateway, acme, "POST", "/v1/completions", body=body)
        same_process = gateway.alive() and gateway.pid == pid

    # Until the reload the old document is in force; after it, the key is refused.
    assert before_reload == 200
    assert revoked_after is not None, gateway.log()[-2000:]
    assert after.status == 401, after
    assert still_ok.status == 200, still_ok
    assert same_process
    figures.update({"revoked_key_refused_after_reload_s": round(revoked_after, 3)})


def test_the_periodic_reload_revokes_a_key_without_a_signal(tmp_path: Path, logs_dir: Path) -> None:
    acme, leaver = make_tenant("acme"), make_tenant("leaver")
    tenants_file = tmp_path / "tenants.json"
    write_tenants(tenants_file, [acme, leaver])
    upstream = FakeUpstream(logs_dir / "upstream.log", tokens=4)
    gateway = GatewayServer(
        logs_dir / "gateway.log", gateway_env(upstream.url, tenants_file, tenants_reload_s=1)
    )
    with running(upstream, gateway):
        upstream.start()
        upstream.wait_up()
        gateway.start()
        gateway.wait_ready()
        assert _call(gateway, leaver, "GET", "/v1/models").status == 200
        write_tenants(tenants_file, [acme])
        revoked = wait_until(lambda: _call(gateway, leaver, "GET", "/v1/models").status == 401, 5.0)
        acme_status = _call(gateway, acme, "GET", "/v1/models").status
    assert revoked is not None
    assert acme_status == 200
