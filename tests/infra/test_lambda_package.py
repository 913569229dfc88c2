"""The Lambda zips: same bytes from the same inputs, only what the function needs, importable
by a bare interpreter that has nothing but the unpacked zip."""

from __future__ import annotations

import glob
import importlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra import lambda_package
from infra.lambda_package import FUNCTIONS, PackageError, build

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> lambda_package.LambdaPackage:
    return build("market_calendar", out_dir=tmp_path_factory.mktemp("first"))


def runtime_python() -> str:
    """A Python 3.12 (the Lambda runtime's version) if this machine has one, else our own."""
    candidates = [
        shutil.which("python3.12") or "",
        *sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.12*/bin/python3.12"))),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "True":
            return candidate
    return sys.executable


@pytest.mark.slow
def test_two_independent_builds_give_the_same_bytes(
    built: lambda_package.LambdaPackage, tmp_path: Path
) -> None:
    # A second output directory means a second pip install and a second compression, here
    # by the same venv reached through another path (as the cdktf CLI's synth reaches it):
    # pip writes that path into console scripts' shebangs, and their hashes into RECORD.
    venv_link = tmp_path / "venv-elsewhere"
    venv_link.symlink_to(Path(sys.prefix))
    out = tmp_path / "again"
    result = subprocess.run(
        [
            str(venv_link / "bin" / "python"),
            "-c",
            "import sys; from infra.lambda_package import build; "
            "print(build('market_calendar', out_dir=__import__('pathlib').Path(sys.argv[1])).path)",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    again = Path(result.stdout.strip())
    assert again != built.path
    assert again.read_bytes() == built.path.read_bytes()


def test_entries_have_fixed_times_modes_and_order(built: lambda_package.LambdaPackage) -> None:
    with zipfile.ZipFile(built.path) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}
    assert not [
        n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("bin/")
    ]


def test_zip_holds_the_function_the_policy_and_the_vendored_dependencies_only(
    built: lambda_package.LambdaPackage,
) -> None:
    with zipfile.ZipFile(built.path) as archive:
        names = set(archive.namelist())
    tops = {name.split("/")[0] for name in names}
    for needed in (
        "lambdas/market_calendar/handler.py",
        "infra/__init__.py",
        "infra/policy/schedule.py",
        "holidays/__init__.py",
        "tzdata/zoneinfo/America/New_York",
        "aws_lambda_powertools/__init__.py",
        "dateutil/__init__.py",
    ):
        assert needed in names
    # Not the CLI nor the stack, and not the SDK the runtime already has.
    assert not {n for n in names if n.startswith(("infra/cli/", "infra/stack/", "infra/sim/"))}
    assert not tops & {"boto3", "botocore", "tests", "app"}
    assert built.size < lambda_package.MAX_ZIP_BYTES


def test_unchanged_inputs_reuse_the_zip(built: lambda_package.LambdaPackage) -> None:
    before = built.path.stat().st_mtime_ns
    again = build("market_calendar", out_dir=built.path.parent)
    assert again.path == built.path
    assert again.path.stat().st_mtime_ns == before


ISOLATED_CHECK = """
import datetime as dt, json, sys, sysconfig, zoneinfo
root = sys.argv[1]
sys.path.insert(0, root)
zoneinfo.reset_tzpath(to=[])  # no system zoneinfo: only the vendored tzdata may answer
import lambdas.market_calendar.handler as handler
from infra.policy import FLEET_POLICY
from lambdas.market_calendar.plan import plan_actions
stdlib = sysconfig.get_paths()["stdlib"]
outside = sorted(
    m.__name__ for m in list(sys.modules.values())
    if getattr(m, "__file__", None)
    and not m.__file__.startswith((root, stdlib))
)
print(json.dumps({
    "handler": callable(handler.lambda_handler),
    "plan": [a.name for a in plan_actions(FLEET_POLICY, dt.date(2026, 11, 23), 7)],
    "outside": outside,
    "site_packages_on_path": [p for p in sys.path if "site-packages" in p],
}))
"""


def test_zip_imports_in_a_bare_interpreter_with_only_its_vendored_dependencies(
    built: lambda_package.LambdaPackage, tmp_path: Path
) -> None:
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(built.path) as archive:
        archive.extractall(unpacked)
    # -I: no user site, no PYTHON* variables, no cwd on the path; -S: no site-packages at all.
    result = subprocess.run(
        [runtime_python(), "-I", "-S", "-c", ISOLATED_CHECK, str(unpacked)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["handler"] is True
    assert report["plan"] == [
        "finsight-calendar-20261126-0855-holiday",
        "finsight-calendar-20261127-1300-early-close",
    ]
    assert report["outside"] == []
    assert report["site_packages_on_path"] == []


def test_handler_setting_names_a_real_function() -> None:
    module, _, attribute = FUNCTIONS["market_calendar"].handler.rpartition(".")
    assert module == "lambdas.market_calendar.handler" and attribute == "lambda_handler"
    assert callable(getattr(importlib.import_module(module), attribute))


def test_over_budget_zip_is_refused_and_not_written(
    built: lambda_package.LambdaPackage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lambda_package, "MAX_ZIP_BYTES", 1024)
    out = tmp_path / "out"
    # Reuse the vendored dependencies of the first build, so only the zip step runs.
    shutil.copytree(built.path.parent / "deps", out / "deps")
    with pytest.raises(PackageError, match=r"market_calendar: zip is [\d,]+ bytes, over the 1,024"):
        build("market_calendar", out_dir=out)
    assert not list(out.glob("*.zip"))


def test_unknown_function_and_unpinned_dependency_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="nope: unknown function; known: market_calendar"):
        build("nope", out_dir=tmp_path)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("tzdata==2026.6\n")
    with pytest.raises(PackageError, match=r"holidays: not pinned in constraints\.txt"):
        build("market_calendar", out_dir=tmp_path, constraints=constraints)


def test_command_line_prints_path_size_and_hash(built: lambda_package.LambdaPackage) -> None:
    # The command builds into the repository's build/ directory, not `built`'s: the same
    # inputs must still give the same size and hash there.
    result = subprocess.run(
        [sys.executable, "-m", "infra.lambda_package", "market_calendar"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    path = lambda_package.BUILD_DIR / built.path.name
    assert result.stdout == (
        f"market_calendar: {path} {built.size:,} bytes sha256 {built.sha256}\n"
    )
