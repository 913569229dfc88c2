"""Build each Lambda function's zip from `lambdas/<name>/`, its dependencies vendored, reproducibly.

The same sources and pins give the same bytes (fixed timestamps, permissions and order), so
Terraform sees a change only when the code or a pin changed. Vendored dependencies are
cached by the pins they came from, and the zip by the hash of everything in it, so a synth
that changes nothing rebuilds nothing.

    python -m infra.lambda_package                   # every function
    python -m infra.lambda_package market_calendar   # one
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build" / "lambda"

# The Lambda runtime the zips target (python3.12 on x86_64). pip picks wheels for it, not for
# the machine that builds, and only wheels: no build step may run code or vary by compiler.
RUNTIME = "python3.12"
PIP_TARGET_FLAGS = (
    "--platform",
    "manylinux2014_x86_64",
    "--implementation",
    "cp",
    "--python-version",
    "3.12",
    "--only-binary=:all:",
)

# 1980-01-01 is the earliest time a zip entry can hold; any fixed value would do.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
ZIP_COMPRESS_LEVEL = 9

# Direct upload allows 50 MB zipped and 250 MB unpacked. The calendar function needs about
# 3.5 MB; a budget well under the limit catches a heavy dependency creeping in (and cold starts
# grow with the package).
MAX_ZIP_BYTES = 10 * 1024 * 1024
MAX_UNZIPPED_BYTES = 250 * 1000 * 1000

# Never shipped: bytecode (interpreter- and time-dependent), console scripts (their shebang
# names the build machine's interpreter).
_EXCLUDED_PARTS = {"__pycache__", "bin"}
_EXCLUDED_SUFFIXES = (".pyc", ".pyo")
# A dist-info RECORD lists the hash of each console script, whose shebang is the path of the
# interpreter that ran pip: the same pins vendored from another venv path (the cdktf CLI's
# synth, a fresh clone) would give another zip. Nothing at run time reads it.
_EXCLUDED_METADATA = "RECORD"


class PackageError(RuntimeError):
    """A function cannot be packaged: one line saying which and why."""


@dataclass(frozen=True)
class FunctionSpec:
    """What goes into one function's zip besides `lambdas/<name>/`."""

    name: str
    handler: str
    requirements: tuple[str, ...]  # distribution names, pinned through constraints.txt
    # Project packages the function imports (the policy is pure Python: holidays + tzdata).
    project_packages: tuple[str, ...] = ()


FUNCTIONS: dict[str, FunctionSpec] = {
    "market_calendar": FunctionSpec(
        name="market_calendar",
        handler="lambdas.market_calendar.handler.lambda_handler",
        # boto3 is not vendored: the python3.12 runtime provides it, and botocore alone would
        # be several times the rest of the zip.
        requirements=("holidays", "tzdata", "aws-lambda-powertools"),
        project_packages=("contract", "infra/policy"),
    ),
}


@dataclass(frozen=True)
class LambdaPackage:
    """A built zip: where it is, its SHA-256 (hex and base64 for Terraform) and its size."""

    name: str
    handler: str
    runtime: str
    path: Path
    sha256: str
    size: int

    @property
    def sha256_base64(self) -> str:
        """The digest as Terraform's `source_code_hash` takes it."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode()


def _pins(requirements: Sequence[str], constraints: Path) -> list[str]:
    """The constraints lines for the requirements and what they pull in, for the cache key."""
    text = constraints.read_text()
    pinned = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    for requirement in requirements:
        canonical = re.sub(r"[-_.]+", "-", requirement).lower()
        if not any(re.sub(r"[-_.]+", "-", p.split("==")[0]).lower() == canonical for p in pinned):
            raise PackageError(f"{requirement}: not pinned in {constraints.name}; add an exact pin")
    # The whole constraints file keys the cache: a change to any transitive pin rebuilds.
    return sorted(pinned)


def _vendored(spec: FunctionSpec, constraints: Path, cache_dir: Path) -> Path:
    """The function's dependencies installed for the Lambda runtime, cached by their pins."""
    key_source = "\n".join(
        [*spec.requirements, *PIP_TARGET_FLAGS, *_pins(spec.requirements, constraints)]
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    target = cache_dir / f"{spec.name}-deps-{key}"
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{spec.name}-deps-", dir=cache_dir))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(staging),
        *PIP_TARGET_FLAGS,
        "--constraint",
        str(constraints),
        *spec.requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PackageError(f"{spec.name}: pip could not vendor the dependencies: {last}")
    # Rename last, so an interrupted install never leaves a directory that looks complete.
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # a concurrent build won the race
    return target


def _files_under(root: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if not path.is_file() or _EXCLUDED_PARTS & set(relative.parts):
            continue
        if path.name.endswith(_EXCLUDED_SUFFIXES):
            continue
        if path.name == _EXCLUDED_METADATA and path.parent.name.endswith(".dist-info"):
            continue
        yield (f"{prefix}{relative.as_posix()}", path)


def _entries(spec: FunctionSpec, repo_root: Path, deps: Path) -> list[tuple[str, Path]]:
    source = repo_root / "lambdas" / spec.name
    if not (source / "handler.py").is_file():
        raise PackageError(f"{spec.name}: no handler.py in {source}")
    entries: dict[str, Path] = dict(_files_under(deps, ""))
    project = [
        ("lambdas/__init__.py", repo_root / "lambdas" / "__init__.py"),
        *_files_under(source, f"lambdas/{spec.name}/"),
    ]
    for package in spec.project_packages:
        parts = Path(package).parts
        # Each parent package's __init__ too, so `import infra.policy` works from the zip.
        for depth in range(1, len(parts)):
            init = "/".join(parts[:depth]) + "/__init__.py"
            project.append((init, repo_root / init))
        project += [
            (name, path)
            for name, path in _files_under(repo_root / package, f"{package}/")
            if name.endswith(".py")
        ]
    for name, path in project:
        if name in entries:
            raise PackageError(f"{spec.name}: {name} is both project code and a dependency")
        entries[name] = path
    return sorted(entries.items())


def _zip_bytes(entries: Sequence[tuple[str, Path]]) -> tuple[bytes, int]:
    buffer = io.BytesIO()
    unzipped = 0
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, path in entries:
            data = path.read_bytes()
            unzipped += len(data)
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.external_attr = (0o100000 | FILE_MODE) << 16  # regular file, rw-r--r--
            info.create_system = 3  # Unix, so the runtime honours the mode bits
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=ZIP_COMPRESS_LEVEL)
    return buffer.getvalue(), unzipped


def build(
    name: str,
    *,
    repo_root: Path = REPO_ROOT,
    out_dir: Path = BUILD_DIR,
    constraints: Path | None = None,
) -> LambdaPackage:
    """Build (or reuse) the zip of `lambdas/<name>/`; same inputs, same bytes, same path.

    Size limits are checked when the zip is made; a cached zip passed them then.
    """
    spec = FUNCTIONS.get(name)
    if spec is None:
        raise PackageError(f"{name}: unknown function; known: {', '.join(sorted(FUNCTIONS))}")
    deps = _vendored(spec, constraints or repo_root / "constraints.txt", out_dir / "deps")
    entries = _entries(spec, repo_root, deps)
    # Compressing is the slow part: key the zip by what goes in, so an unchanged function
    # costs one read of its files.
    inputs = hashlib.sha256()
    for entry_name, entry_path in entries:
        inputs.update(f"{entry_name}\0{FILE_MODE:o}\0".encode())
        inputs.update(hashlib.sha256(entry_path.read_bytes()).digest())
    path = out_dir / f"{name}-{inputs.hexdigest()[:16]}.zip"
    if path.is_file():
        data = path.read_bytes()
    else:
        data, unzipped = _zip_bytes(entries)
        if len(data) > MAX_ZIP_BYTES:
            raise PackageError(
                f"{name}: zip is {len(data):,} bytes, over the {MAX_ZIP_BYTES:,}-byte budget"
            )
        if unzipped > MAX_UNZIPPED_BYTES:
            raise PackageError(
                f"{name}: {unzipped:,} bytes unpacked, over Lambda's {MAX_UNZIPPED_BYTES:,}"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".{os.getpid()}.tmp")
        staging.write_bytes(data)
        staging.replace(path)
    digest = hashlib.sha256(data).hexdigest()
    return LambdaPackage(
        name=name,
        handler=spec.handler,
        runtime=RUNTIME,
        path=path,
        sha256=digest,
        size=len(data),
    )


def main(argv: Sequence[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or sorted(FUNCTIONS)
    try:
        for name in names:
            package = build(name)
            sys.stdout.write(
                f"{package.name}: {package.path} {package.size:,} bytes sha256 {package.sha256}\n"
            )
    except PackageError as error:
        sys.stderr.write(f"lambda_package: error: {error}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
