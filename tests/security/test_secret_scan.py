"""The scanner itself: it finds each shape of key material, and stays quiet on look-alikes.

Without this, a scan that finds nothing could simply be blind.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.security.secret_scan import ALLOWED, PATTERNS, scan_bytes, scan_file

# Assembled at run time so that this file itself never holds a key-shaped string.
PLANTED = {
    "aws-access-key-id": b"AKIA" + b"Z7Q2" * 4,
    "aws-secret-access-key": b'"aws_secret_access_key": "'
    + b"wJalrXUtnFEMI/K7MDENG+bPxRfiCY"
    + b"EXAMPLEKEY"
    + b'"',
    "private-key": b"-----BEGIN " + b"RSA PRIVATE KEY-----\nMIIE",
    "api-key": b"Authorization: Bearer " + b"sk-" + b"live0123456789abcdefABCDEF",
    "github-token": b"token=" + b"ghp_" + b"a1B2" * 9,
    "slack-token": b"xox" + b"b-1234567890-abcdef",
    "password-literal": b'{"password": "' + b"hunter2hunter2" + b'"}',
}
LOOK_ALIKES = [
    b'"tenants_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:'
    + b'finsight/tenants-AbCdEf"',
    b'"api_key_sha256": "' + b"ab" * 32 + b'"',
    b"GATEWAY_TENANTS_SECRET_ID=finsight-serving/prod/tenants",
    b'"password": "${var.db_password}"',
    b"task-runner sk-short",
]


def test_every_pattern_has_a_planted_sample() -> None:
    assert set(PLANTED) == set(PATTERNS)


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_each_shape_of_key_material_is_found(kind: str) -> None:
    found = scan_bytes(b"prefix " + PLANTED[kind] + b" suffix", "sample")
    assert [f.kind for f in found] == [kind]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_not_reported(text: bytes) -> None:
    assert scan_bytes(text, "sample") == []


def test_canaries_and_zip_members_are_scanned(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("handler.py", b"KEY = 'plain-canary-value'\n")
    (tmp_path / "asset.zip").write_bytes(buffer.getvalue())
    found = scan_file(tmp_path / "asset.zip", [b"plain-canary-value"])
    assert [(f.where.endswith("!handler.py"), f.kind) for f in found] == [(True, "canary")]


def test_an_allowed_excerpt_is_reported_anywhere_else() -> None:
    (suffix, excerpt), _ = next(iter(ALLOWED.items()))
    assert scan_bytes(excerpt.encode(), "x.zip" + suffix) == []
    assert [f.kind for f in scan_bytes(excerpt.encode(), "app/settings.py")] == ["password-literal"]
