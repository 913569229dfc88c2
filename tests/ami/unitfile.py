"""Reading systemd unit and environment files the way systemd does, for the image's tests.

Only the subset our units use: sections, `key=value`, backslash continuations, comments,
`${NAME}` (one word) expansion in ExecStart, and EnvironmentFile's `KEY=value` lines.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

AMI_DIR = Path(__file__).resolve().parents[2] / "ami"
UNITS_DIR = AMI_DIR / "systemd"

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(path: Path) -> Unit:
    sections: Unit = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        if current is None:
            raise ValueError(f"{path}: {line!r} outside a section")
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [value for name, value in unit.get(section, []) if name == key]


def value(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    if len(found) != 1:
        raise KeyError(f"[{section}] {key}: expected one value, found {found}")
    return found[0]


def read_env_file(path: Path) -> dict[str, str]:
    """EnvironmentFile= syntax: KEY=value lines, comments, optional surrounding quotes."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, val = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise ValueError(f"{path}: not KEY=value: {raw!r}")
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            val = val[1:-1]
        env[key.strip()] = val
    return env


def unit_assignments(unit: Unit) -> dict[str, str]:
    """The unit's own Environment= lines, without any EnvironmentFile=."""
    env: dict[str, str] = {}
    for assignment in values(unit, "Service", "Environment"):
        for word in shlex.split(assignment):
            key, _, val = word.partition("=")
            env[key] = val
    return env


def unit_environment(unit: Unit, env_files: dict[str, Path]) -> dict[str, str]:
    """Environment= first, then each EnvironmentFile= in order, later ones winning (as
    systemd does). `env_files` maps the unit's paths to local files; a `-` path that is not
    mapped is skipped as systemd skips a missing optional file."""
    env = unit_assignments(unit)
    for entry in values(unit, "Service", "EnvironmentFile"):
        optional = entry.startswith("-")
        path = entry.lstrip("-")
        if path not in env_files:
            if optional:
                continue
            raise KeyError(f"required EnvironmentFile {path} has no local stand-in")
        env.update(read_env_file(env_files[path]))
    return env


def exec_start_argv(unit: Unit, env: dict[str, str]) -> list[str]:
    """ExecStart split into words, `${NAME}` replaced by one word as systemd does."""
    command = value(unit, "Service", "ExecStart")

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise KeyError(f"ExecStart uses ${{{name}}}, which the environment does not set")
        return shlex.quote(env[name])

    return shlex.split(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", expand, command))


def option(argv: list[str], flag: str) -> str:
    index = argv.index(flag)
    return argv[index + 1]
