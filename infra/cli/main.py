"""Entry point of the `fleet` command line; user errors become one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

import infra.cli
from infra.cli.common import CommandError
from infra.policy import PolicyError


def _subcommand_modules() -> list[str]:
    # Each `*_cmd.py` module in this package contributes one subcommand via `register()`.
    return sorted(
        f"infra.cli.{module.name}"
        for module in pkgutil.iter_modules(infra.cli.__path__)
        if module.name.endswith("_cmd")
    )


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(prog="fleet", description=__doc__)
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _subcommand_modules():
        importlib.import_module(name).register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except (PolicyError, CommandError, argparse.ArgumentTypeError) as error:
        print(f"fleet {args.command}: error: {error}", file=sys.stderr)
        return 2
    return status


def run() -> NoReturn:
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # A reader such as `head` closed the pipe: not an error of ours, nothing to report.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 0
    sys.exit(status)
