"""Tenants: the document's rules, key checks, Secrets Manager via moto, reload and revocation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
from pathlib import Path

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from app.errors import GatewayError
from app.main import Runtime
from app.tenants import (
    TenantRegistry,
    TenantsDocumentError,
    file_source,
    hash_key,
    parse_tenants_document,
    secret_source,
)
from tests.app.stack import ACME_KEY, GLOBEX_KEY, chat_body, digest, running_stack

DEFAULTS = {"default_max_concurrent_requests": 8, "default_max_tokens": 2048}


def registry_of(document: str) -> TenantRegistry:
    registry = TenantRegistry(lambda: document, **DEFAULTS)
    registry.reload()
    return registry


def test_a_key_maps_to_its_tenant_with_defaults_or_its_own_limits() -> None:
    document = json.dumps(
        {
            "tenants": [
                {"id": "acme", "api_key_sha256": digest(ACME_KEY), "max_tokens": 512},
                {"id": "globex", "api_key_sha256": digest(GLOBEX_KEY).upper()},
            ]
        }
    )
    registry = registry_of(document)
    acme = registry.authenticate(f"Bearer {ACME_KEY}")
    assert (acme.id, acme.max_tokens, acme.max_concurrent_requests) == ("acme", 512, 8)
    assert registry.authenticate(f"Bearer {GLOBEX_KEY}").id == "globex"


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic abc", "Bearer ", "bearer", f"Bearer {ACME_KEY}x", f"Bearer{ACME_KEY}"],
)
def test_missing_or_wrong_keys_are_401(header: str | None) -> None:
    registry = registry_of(
        json.dumps({"tenants": [{"id": "a", "api_key_sha256": digest(ACME_KEY)}]})
    )
    with pytest.raises(GatewayError) as refused:
        registry.authenticate(header)
    assert refused.value.status == 401


@pytest.mark.parametrize(
    "header", [f"bearer {ACME_KEY}", f"BEARER {ACME_KEY}", f"BeArEr   {ACME_KEY}  "]
)
def test_the_bearer_scheme_is_case_insensitive(header: str) -> None:
    # RFC 7235 section 2.1: the auth-scheme is a case-insensitive token.
    registry = registry_of(
        json.dumps({"tenants": [{"id": "a", "api_key_sha256": digest(ACME_KEY)}]})
    )
    assert registry.authenticate(header).id == "a"


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ("not json", "tenants document is invalid"),
        ('{"tenants": [{"id": "a", "api_key_sha256": "abc"}]}', "api_key_sha256"),
        (
            '{"tenants": [{"id": "a", "api_key_sha256": "' + "0" * 64 + '", "max_tokens": 0}]}',
            "max_tokens",
        ),
        ('{"tenants": [{"id": "a", "key": "plain"}]}', "key"),
        (
            '{"tenants": [{"id": "a", "api_key_sha256": "' + "0" * 64 + '"}, '
            '{"id": "a", "api_key_sha256": "' + "1" * 64 + '"}]}',
            "unique",
        ),
        (
            '{"tenants": [{"id": "a", "api_key_sha256": "' + "0" * 64 + '"}, '
            '{"id": "b", "api_key_sha256": "' + "0" * 64 + '"}]}',
            "share",
        ),
    ],
)
def test_a_bad_document_is_refused_with_the_reason(document: str, needle: str) -> None:
    with pytest.raises(TenantsDocumentError, match=needle):
        parse_tenants_document(document, **DEFAULTS)


def test_a_bad_reload_keeps_the_previous_tenants(tmp_path: Path) -> None:
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [{"id": "a", "api_key_sha256": digest(ACME_KEY)}]}))
    registry = TenantRegistry(file_source(path), **DEFAULTS)
    registry.reload()
    path.write_text("{broken")
    with pytest.raises(TenantsDocumentError):
        registry.reload()
    path.unlink()
    with pytest.raises(TenantsDocumentError, match="cannot read tenants file"):
        registry.reload()
    assert registry.authenticate(f"Bearer {ACME_KEY}").id == "a"


def test_tenants_from_secrets_manager_and_revocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        both = {
            "tenants": [
                {"id": "acme", "api_key_sha256": digest(ACME_KEY)},
                {"id": "globex", "api_key_sha256": digest(GLOBEX_KEY)},
            ]
        }
        client.create_secret(Name="finsight/tenants", SecretString=json.dumps(both))
        registry = TenantRegistry(secret_source(client, "finsight/tenants"), **DEFAULTS)
        assert registry.reload() == 2
        assert registry.authenticate(f"Bearer {GLOBEX_KEY}").id == "globex"
        both["tenants"].pop()
        client.put_secret_value(SecretId="finsight/tenants", SecretString=json.dumps(both))
        registry.reload()
        with pytest.raises(GatewayError):
            registry.authenticate(f"Bearer {GLOBEX_KEY}")
        missing = TenantRegistry(secret_source(client, "no/such/secret"), **DEFAULTS)
        with pytest.raises(TenantsDocumentError, match="cannot read tenants secret"):
            missing.reload()


def test_the_gateway_loads_tenants_from_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    async def scenario() -> None:
        runtime = Runtime(install_signal_handlers=False, exit_process=lambda: None)
        async with (
            running_stack(
                tmp_path,
                runtime=runtime,
                tenants_file=None,
                tenants_secret_id="finsight/tenants",
                aws_region="us-east-1",
            ) as stack,
            stack.client() as http,
        ):
            assert (await http.post("/v1/chat/completions", json=chat_body())).status_code == 200

    with mock_aws():
        document = {"tenants": [{"id": "acme", "api_key_sha256": digest(ACME_KEY)}]}
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="finsight/tenants", SecretString=json.dumps(document)
        )
        asyncio.run(scenario())


def test_a_revoked_key_stops_working_after_the_periodic_reload(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            running_stack(tmp_path, tenants_reload_s=1) as stack,
            stack.client(GLOBEX_KEY) as http,
        ):
            assert (await http.get("/v1/models")).status_code == 200
            only_acme = {"tenants": [{"id": "acme", "api_key_sha256": digest(ACME_KEY)}]}
            (tmp_path / "tenants.json").write_text(json.dumps(only_acme))
            async with asyncio.timeout(5):
                while (await http.get("/v1/models")).status_code != 401:
                    await asyncio.sleep(0.1)

    asyncio.run(scenario())


def test_sighup_reloads_the_tenants_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        runtime = Runtime(install_signal_handlers=True, exit_process=lambda: None)
        async with (
            running_stack(tmp_path, runtime=runtime) as stack,
            stack.client(GLOBEX_KEY) as http,
        ):
            assert (await http.get("/v1/models")).status_code == 200
            only_acme = {"tenants": [{"id": "acme", "api_key_sha256": digest(ACME_KEY)}]}
            (tmp_path / "tenants.json").write_text(json.dumps(only_acme))
            os.kill(os.getpid(), signal.SIGHUP)
            async with asyncio.timeout(2):
                while (await http.get("/v1/models")).status_code != 401:
                    await asyncio.sleep(0.02)
            # A broken document on reload changes nothing and is counted.
            (tmp_path / "tenants.json").write_text("{")
            os.kill(os.getpid(), signal.SIGHUP)
            async with asyncio.timeout(2):
                while not stack.gateway.metrics.tenants_reload_errors._value.get():
                    await asyncio.sleep(0.02)
            async with stack.client(ACME_KEY) as acme:
                assert (await acme.get("/v1/models")).status_code == 200

    asyncio.run(scenario())


NOT_UTF8 = b'{"tenants": [{"id": "\xff\xfe", "api_key_sha256": "' + b"0" * 64 + b'"}]}'


def test_a_document_that_is_not_utf8_is_refused_and_the_old_one_stays(tmp_path: Path) -> None:
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [{"id": "a", "api_key_sha256": digest(ACME_KEY)}]}))
    registry = TenantRegistry(file_source(path), **DEFAULTS)
    registry.reload()
    path.write_bytes(NOT_UTF8)
    with pytest.raises(TenantsDocumentError, match="invalid"):
        registry.reload()
    assert registry.authenticate(f"Bearer {ACME_KEY}").id == "a"


def test_a_binary_secret_that_is_not_utf8_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="finsight/tenants", SecretBinary=NOT_UTF8)
        registry = TenantRegistry(secret_source(client, "finsight/tenants"), **DEFAULTS)
        with pytest.raises(TenantsDocumentError):
            registry.reload()


def test_any_failure_of_the_source_keeps_the_old_tenants() -> None:
    documents = [json.dumps({"tenants": [{"id": "a", "api_key_sha256": digest(ACME_KEY)}]})]

    def source() -> str:
        if not documents:
            raise RuntimeError("a source bug")
        return documents.pop()

    registry = TenantRegistry(source, **DEFAULTS)
    registry.reload()
    with pytest.raises(TenantsDocumentError, match="RuntimeError: a source bug"):
        registry.reload()
    assert registry.authenticate(f"Bearer {ACME_KEY}").id == "a"


def test_revocation_goes_on_after_a_document_that_is_not_utf8(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            running_stack(tmp_path, tenants_reload_s=1) as stack,
            stack.client(GLOBEX_KEY) as http,
        ):
            # GIVEN a tenants file replaced by bytes that are not UTF-8
            (tmp_path / "tenants.json").write_bytes(NOT_UTF8)
            errors = stack.gateway.metrics.tenants_reload_errors
            async with asyncio.timeout(5):
                while not errors._value.get():
                    await asyncio.sleep(0.05)
            # THEN the last good document stays in force
            assert (await http.get("/v1/models")).status_code == 200
            # AND WHEN a good document drops globex, the periodic reload still revokes it
            only_acme = {"tenants": [{"id": "acme", "api_key_sha256": digest(ACME_KEY)}]}
            (tmp_path / "tenants.json").write_text(json.dumps(only_acme))
            async with asyncio.timeout(5):
                while (await http.get("/v1/models")).status_code != 401:
                    await asyncio.sleep(0.05)
            async with stack.client(ACME_KEY) as acme:
                assert (await acme.get("/v1/models")).status_code == 200

    asyncio.run(scenario())


def test_an_older_read_finishing_last_never_replaces_a_newer_one() -> None:
    # GIVEN a periodic reload that read the old document and is held before it applies it
    both = json.dumps(
        {
            "tenants": [
                {"id": "acme", "api_key_sha256": digest(ACME_KEY)},
                {"id": "globex", "api_key_sha256": digest(GLOBEX_KEY)},
            ]
        }
    )
    only_acme = json.dumps({"tenants": [{"id": "acme", "api_key_sha256": digest(ACME_KEY)}]})
    documents = iter([both, both, only_acme])
    old_read_done, release_old_read = threading.Event(), threading.Event()

    def source() -> str:
        document = next(documents)
        if threading.current_thread() is not threading.main_thread():
            old_read_done.set()
            assert release_old_read.wait(5)
        return document

    registry = TenantRegistry(source, **DEFAULTS)
    registry.reload()
    periodic = threading.Thread(target=registry.reload)
    periodic.start()
    assert old_read_done.wait(5)
    # WHEN a SIGHUP reload reads the new document (globex revoked) and applies it first
    registry.reload()
    with pytest.raises(GatewayError):
        registry.authenticate(f"Bearer {GLOBEX_KEY}")
    # AND the older read then finishes
    release_old_read.set()
    periodic.join(5)
    assert not periodic.is_alive()
    # THEN the newer document stays in force: globex is still revoked
    with pytest.raises(GatewayError):
        registry.authenticate(f"Bearer {GLOBEX_KEY}")
    assert registry.authenticate(f"Bearer {ACME_KEY}").id == "acme"


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300) | st.text(max_size=300))
def test_any_document_loads_or_is_refused_as_a_tenants_document_error(raw: bytes | str) -> None:
    registry = TenantRegistry(lambda: raw, **DEFAULTS)
    with contextlib.suppress(TenantsDocumentError):  # anything else escaping fails the test
        registry.reload()


def test_hash_key_is_sha256_hex() -> None:
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
