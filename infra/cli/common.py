"""Argument types and helpers shared by the `fleet` subcommands."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from infra.policy import FLEET_POLICY, FleetPolicy
from infra.policy.loader import load_policy

T = TypeVar("T")


class CommandError(Exception):
    """A user error: printed as one line, exit status 2."""


def parsed(text: str, convert: Callable[[str], T], expected: str) -> T:
    """`convert(text)`, or argparse's one-line error saying what was `expected`."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def iso_date(text: str) -> dt.date:
    return parsed(text, dt.date.fromisoformat, "a date as YYYY-MM-DD")


def positive_int(text: str) -> int:
    value = parsed(text, int, "a whole number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def percent(text: str) -> float:
    value = parsed(text, float, "a percentage")
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1000, got {text}")
    return value / 100


def non_negative_float(text: str) -> float:
    value = parsed(text, float, "a number")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = parsed(text, float, "a number")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = parsed(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_policy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="FILE.toml",
        help="a proposed policy (TOML, only the fields it changes); default: the deployed one",
    )


def selected_policy(args: argparse.Namespace) -> FleetPolicy:
    path: Path | None = args.policy
    return FLEET_POLICY if path is None else load_policy(path, FLEET_POLICY)


def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
