"""A grep for key material: the shapes real credentials take, plus literal canaries.

Shapes: AWS access key ids, AWS secret keys written next to their name, PEM private keys,
OpenAI-style API keys (the form tenant keys take), GitHub and Slack tokens, and passwords
written as literals. Zip files (Lambda assets) are opened and their members scanned.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PATTERNS: dict[str, re.Pattern[bytes]] = {
    "aws-access-key-id": re.compile(rb"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    "aws-secret-access-key": re.compile(
        rb"(?i)secret_?access_?key\W{0,5}[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"
    ),
    "private-key": re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    "api-key": re.compile(rb"\bsk-[A-Za-z0-9_-]{20,}"),
    "github-token": re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "slack-token": re.compile(rb"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "password-literal": re.compile(
        rb"(?i)[\"']?\b(?:password|passwd|secret_string)[\"']?\s*[:=]\s*[\"'][^\"'${}\s(),;<>]{6,}[\"']"
    ),
}


# Findings that are not secrets, each with why: (file path ending, exact excerpt).
ALLOWED: dict[tuple[str, str], str] = {
    (
        "!aws_lambda_powertools/utilities/parameters/secrets.py",
        '"password": "supers3cr3tllam@passw0rd"',
    ): "a docstring example in the vendored aws-lambda-powertools, not a credential of ours",
}


@dataclass(frozen=True)
class Finding:
    where: str
    kind: str
    excerpt: str

    @property
    def allowed(self) -> bool:
        return any(
            self.where.endswith(suffix) and self.excerpt == excerpt for suffix, excerpt in ALLOWED
        )


def scan_bytes(data: bytes, where: str, canaries: Iterable[bytes] = ()) -> list[Finding]:
    found = []
    for kind, pattern in PATTERNS.items():
        for match in pattern.finditer(data):
            finding = Finding(where, kind, match.group(0)[:60].decode(errors="replace"))
            if not finding.allowed:
                found.append(finding)
    for canary in canaries:
        if canary and canary in data:
            found.append(Finding(where, "canary", canary[:12].decode(errors="replace") + "..."))
    return found


def scan_file(path: Path, canaries: Iterable[bytes] = ()) -> list[Finding]:
    data = path.read_bytes()
    canaries = list(canaries)
    if zipfile.is_zipfile(io.BytesIO(data)):
        found = []
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                found += scan_bytes(archive.read(member), f"{path}!{member}", canaries)
        return found
    return scan_bytes(data, str(path), canaries)


def scan_tree(root: Path, canaries: Iterable[bytes] = ()) -> tuple[int, list[Finding]]:
    """(files scanned, findings) for every file under root."""
    canaries = list(canaries)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    found = [f for path in files for f in scan_file(path, canaries)]
    return len(files), found
