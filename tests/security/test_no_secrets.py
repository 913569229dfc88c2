"""No key material in what the project ships or writes: the synthesized stacks (user data
decoded), the image's files under ami/, and the gateway's own log under real traffic."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
from pathlib import Path
from typing import Any

from tests.processes import REPO, GatewayServer, make_tenant, running, write_tenants
from tests.security.secret_scan import Finding, scan_bytes, scan_file, scan_tree
from tests.security.synth import resources, synthesized_files, synthesized_stacks
from tests.stress.harness import (
    FakeAwsEndpoint,
    FakeImds,
    FakeUpstream,
    completion_body,
    gateway_env,
    request,
)

# Keys that exist only inside these tests; they must never appear anywhere they write.
PROMPT_CANARY = "quarterly-guidance-canary-7c1e"


def test_synthesized_stacks_hold_no_key_material() -> None:
    files = synthesized_files()
    found: list[Finding] = [f for path in files for f in scan_file(path)]
    assert len(files) >= 2
    assert not found, found


def test_user_data_writes_settings_and_secret_ids_only() -> None:
    for name, stack in synthesized_stacks().items():
        templates = resources(stack, "aws_launch_template")
        assert templates, name
        for template in templates.values():
            user_data = base64.b64decode(template["user_data"])
            assert not scan_bytes(user_data, f"{name} user data"), user_data
            # The tenants come from Secrets Manager by id at run time, never inline.
            text = user_data.decode()
            assert "GATEWAY_TENANTS_SECRET_ID=" in text, text
            for inline in ("api_key_sha256", "GATEWAY_TENANTS_FILE", "AWS_SECRET_ACCESS_KEY"):
                assert inline not in text, (name, inline)


def test_lambda_environments_hold_no_key_material() -> None:
    for name, stack in synthesized_stacks().items():
        for function in resources(stack, "aws_lambda_function").values():
            variables = function.get("environment", {}).get("variables", {})
            assert not scan_bytes(json.dumps(variables).encode(), f"{name} lambda env")
            assert not any("SECRET" in key or "PASSWORD" in key for key in variables), variables


def test_the_image_files_hold_no_key_material() -> None:
    count, found = scan_tree(REPO / "ami")
    assert count >= 10
    assert not found, found


def test_gateway_logs_hold_no_key_or_prompt_under_traffic_reload_and_drain(
    tmp_path: Path,
) -> None:
    # GIVEN a gateway as in production (info level, lifecycle watcher, AWS credentials)
    acme, other = make_tenant("acme"), make_tenant("other")
    write_tenants(tmp_path / "tenants.json", [acme, other])
    stranger = make_tenant("stranger")  # a key nobody registered
    # Credential canaries in the shapes AWS uses, assembled so no file holds them whole.
    access_key_id = "AKIA" + "CANARY" + "0" * 10
    secret_key = "canarySecret" + "x" * 28
    imds, autoscaling = FakeImds(), FakeAwsEndpoint()
    imds.start()
    autoscaling.start()
    upstream = FakeUpstream(tmp_path / "upstream.log", tokens=4)
    env = gateway_env(
        upstream.url,
        tmp_path / "tenants.json",
        log_level="info",
        lifecycle_watch_enabled=True,
        autoscaling_group_name="finsight-serving-test",
        lifecycle_hook_name="finsight-serving-test-drain",
        imds_url=imds.url,
        aws_region="us-east-1",
        drain_deadline_s=10,
    )
    env.update(
        {
            "AWS_ENDPOINT_URL_AUTO_SCALING": autoscaling.url,
            "AWS_ACCESS_KEY_ID": access_key_id,
            "AWS_SECRET_ACCESS_KEY": secret_key,
        }
    )
    gateway = GatewayServer(tmp_path / "gateway.log", env)

    def post(key: str, body: bytes, path: str = "/v1/completions") -> Any:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        return asyncio.run(request(gateway.port, "POST", path, body, headers))

    prompt = json.dumps({"model": "fake-model", "prompt": PROMPT_CANARY}).encode()
    chat = json.dumps(
        {"model": "fake-model", "messages": [{"role": "user", "content": PROMPT_CANARY}]}
    ).encode()
    try:
        with running(upstream, gateway):
            upstream.start()
            upstream.wait_up()
            gateway.start()
            gateway.wait_ready()
            # WHEN it serves, refuses, reloads its tenants and drains
            statuses = [
                post(acme.key, prompt).status,
                post(acme.key, chat, "/v1/chat/completions").status,
                post(acme.key, completion_body("fake-model", stream=True)).status,
                post(stranger.key, prompt).status,
                post(acme.key, b'{"prompt": "' + PROMPT_CANARY.encode() + b'", "model": 7}').status,
                post(acme.key, b"{" + PROMPT_CANARY.encode()).status,
                post(other.key, prompt).status,
            ]
            gateway.signal(signal.SIGHUP)
            gateway.signal(signal.SIGTERM)
            assert gateway.proc is not None
            gateway.proc.wait(timeout=20)
    finally:
        imds.stop()
        autoscaling.stop()

    assert statuses == [200, 200, 200, 401, 400, 400, 200], statuses
    assert autoscaling.actions("CompleteLifecycleAction"), "the drain path did not run"
    log = (tmp_path / "gateway.log").read_bytes()
    assert b"lifecycle action completed" in log  # the log is the whole story, captured
    canaries = [
        acme.key.encode(),
        other.key.encode(),
        stranger.key.encode(),
        PROMPT_CANARY.encode(),
        access_key_id.encode(),
        secret_key.encode(),
    ]
    found = scan_bytes(log, "gateway log", canaries)
    assert not found, found
