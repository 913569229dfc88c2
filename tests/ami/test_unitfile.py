"""The unit-file reader the image's tests rely on reads systemd's syntax as systemd does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ami.unitfile import exec_start_argv, parse_unit, read_env_file, unit_environment


def test_continuations_comments_and_expansion(tmp_path: Path) -> None:
    unit_path = tmp_path / "x.service"
    unit_path.write_text(
        "# a comment\n[Service]\nEnvironment=A=1 B=two\nEnvironmentFile=/etc/x.env\n"
        "EnvironmentFile=-/etc/missing.env\n"
        "ExecStart=/bin/tool --model ${MODEL} \\\n    --flag 'quoted value'\n"
    )
    env_path = tmp_path / "x.env"
    env_path.write_text('# stack\nB="three"\nMODEL=/opt/m\n')
    unit = parse_unit(unit_path)
    env = unit_environment(unit, {"/etc/x.env": env_path})
    # The file overrides Environment=, as in systemd.
    assert env == {"A": "1", "B": "three", "MODEL": "/opt/m"}
    assert exec_start_argv(unit, env) == [
        "/bin/tool",
        "--model",
        "/opt/m",
        "--flag",
        "quoted value",
    ]


def test_required_env_file_and_unset_variable_are_errors(tmp_path: Path) -> None:
    unit_path = tmp_path / "x.service"
    unit_path.write_text("[Service]\nEnvironmentFile=/etc/x.env\nExecStart=/bin/t ${NOPE}\n")
    unit = parse_unit(unit_path)
    with pytest.raises(KeyError, match=r"/etc/x\.env"):
        unit_environment(unit, {})
    with pytest.raises(KeyError, match="NOPE"):
        exec_start_argv(unit, {})


def test_env_file_rejects_shell_syntax(tmp_path: Path) -> None:
    env_path = tmp_path / "bad.env"
    env_path.write_text("export A=1\n")
    with pytest.raises(ValueError, match="not KEY=value"):
        read_env_file(env_path)
