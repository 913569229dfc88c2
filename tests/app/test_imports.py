"""The gateway is installed on the image alone: it imports nothing from the stack's side."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app"
# The project's own top-level packages the gateway may import.
ALLOWED_PROJECT_PACKAGES = {"app", "contract"}
PROJECT_PACKAGES = {"app", "contract", "infra", "lambdas", "tests", "bench", "local"}


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_app_imports_no_project_package_but_the_contract() -> None:
    found: dict[str, set[str]] = {}
    for path in sorted(APP.rglob("*.py")):
        for module in _imported_modules(path):
            top = module.split(".")[0]
            if top in PROJECT_PACKAGES - ALLOWED_PROJECT_PACKAGES:
                found.setdefault(str(path.relative_to(REPO)), set()).add(module)
    assert found == {}, f"app/ imports the stack's side: {found}"


def test_the_contract_imports_nothing_from_the_project() -> None:
    for path in sorted((REPO / "contract").rglob("*.py")):
        tops = {module.split(".")[0] for module in _imported_modules(path)}
        assert not tops & PROJECT_PACKAGES, path


def test_the_gateway_starts_without_the_policy_package() -> None:
    # What uvicorn imports at start, checked in a fresh interpreter (no test imports).
    code = (
        "import sys; from app.main import create_app; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('infra', 'lambdas')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_the_wheel_ships_every_package_the_gateway_imports() -> None:
    # The image installs the gateway from this project's wheel (make ami-wheel).
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in ALLOWED_PROJECT_PACKAGES:
        assert any(fnmatch(package, pattern) for pattern in include), package
