"""Entry point of the `fleet` command line; user errors become one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from infra.cli import policy_cmd, schedule_cmd
from infra.cli.common import CommandError
from infra.policy import PolicyError

SUBCOMMANDS = (policy_cmd, schedule_cmd)


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(prog="fleet", description=__doc__)
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(subcommands)
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
