"""Tenants: who may call the gateway, with which limits; keys kept only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.errors import GatewayError
from contract import TENANT_ID_PATTERN

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

log = logging.getLogger(__name__)


class TenantsDocumentError(ValueError):
    """The tenants document does not parse or breaks a rule; the old one stays in force."""


class TenantEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=TENANT_ID_PATTERN)
    api_key_sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    max_concurrent_requests: int | None = Field(default=None, ge=1, le=100_000)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)


class TenantsDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenants: list[TenantEntry]

    @model_validator(mode="after")
    def _unique(self) -> TenantsDocument:
        ids = [t.id for t in self.tenants]
        digests = [t.api_key_sha256.lower() for t in self.tenants]
        if len(set(ids)) != len(ids):
            raise ValueError("tenant ids must be unique")
        if len(set(digests)) != len(digests):
            raise ValueError("two tenants share one api_key_sha256")
        return self


@dataclass(frozen=True)
class Tenant:
    id: str
    max_concurrent_requests: int
    max_tokens: int


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def parse_tenants_document(
    raw: str | bytes, *, default_max_concurrent_requests: int, default_max_tokens: int
) -> list[tuple[bytes, Tenant]]:
    """Validate a tenants document; returns (digest, tenant) pairs."""
    try:
        document = TenantsDocument.model_validate_json(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
            for e in error.errors()
        )
        raise TenantsDocumentError(f"tenants document is invalid: {problems}") from None
    return [
        (
            entry.api_key_sha256.lower().encode(),
            Tenant(
                id=entry.id,
                max_concurrent_requests=entry.max_concurrent_requests
                or default_max_concurrent_requests,
                max_tokens=entry.max_tokens or default_max_tokens,
            ),
        )
        for entry in document.tenants
    ]


# Bytes, not text: a document that is not UTF-8 is refused by the parser like any other
# bad document (a decode here would raise outside TenantsDocumentError).
Source = Callable[[], str | bytes]


def file_source(path: Path) -> Source:
    def read() -> bytes:
        try:
            return path.read_bytes()
        except OSError as error:
            raise TenantsDocumentError(f"cannot read tenants file {path}: {error}") from None

    return read


def secret_source(client: SecretsManagerClient, secret_id: str) -> Source:
    def read() -> str | bytes:
        try:
            value = client.get_secret_value(SecretId=secret_id)
        except Exception as error:  # any botocore failure: keep serving with the old document
            raise TenantsDocumentError(f"cannot read tenants secret: {error}") from None
        if "SecretString" in value:
            return value["SecretString"]
        return value["SecretBinary"]

    return read


class TenantRegistry:
    """The tenants in force; `reload()` swaps in a new document atomically or keeps the old."""

    def __init__(
        self,
        source: Source,
        *,
        default_max_concurrent_requests: int,
        default_max_tokens: int,
    ) -> None:
        self._source = source
        self._defaults = (default_max_concurrent_requests, default_max_tokens)
        self._entries: list[tuple[bytes, Tenant]] = []
        # Reloads run in threads (periodic and SIGHUP, possibly at once): each takes a
        # number before it reads, and a document read earlier never replaces one read later.
        self._reads = itertools.count(1)
        self._in_force = 0
        self._swap = threading.Lock()

    def reload(self) -> int:
        """Read the source again; raises TenantsDocumentError and keeps the old set if bad.

        Safe to call concurrently: the newest read wins, whichever finishes last.
        """
        concurrency, max_tokens = self._defaults
        read = next(self._reads)
        try:
            entries = parse_tenants_document(
                self._source(),
                default_max_concurrent_requests=concurrency,
                default_max_tokens=max_tokens,
            )
        except TenantsDocumentError:
            raise
        except Exception as error:  # whatever a source or the parser raises: keep the old set
            raise TenantsDocumentError(
                f"cannot load the tenants document: {type(error).__name__}: {error}"
            ) from error
        with self._swap:
            if read > self._in_force:
                self._in_force = read
                self._entries = entries
            else:
                log.info("tenants document read %d superseded by a newer read; not applied", read)
        return len(entries)

    def authenticate(self, authorization: str | None) -> Tenant:
        # The scheme is case-insensitive (RFC 7235 section 2.1): "bearer" is "Bearer".
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise GatewayError(
                401,
                "Missing API key: send 'Authorization: Bearer <key>'.",
                "invalid_request_error",
            )
        digest = hash_key(key).encode()
        found: Tenant | None = None
        # Compare against every entry, always, so timing says nothing about which key matched.
        for stored, tenant in self._entries:
            if hmac.compare_digest(stored, digest):
                found = tenant
        if found is None:
            raise GatewayError(401, "Incorrect API key provided.", "invalid_request_error")
        return found
