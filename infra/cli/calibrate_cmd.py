"""`fleet calibrate`: measure a running OpenAI-compatible server (one replica) and write the
replica model's parameters as TOML for `fleet simulate --replica` and `fleet check --replica`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from infra.cli.common import CommandError, positive_float, positive_int
from infra.sim.measure import Budget, MeasureError, discover, measure, plan_lengths
from infra.sim.replica_fit import FitError, fit
from infra.sim.replica_model import FIELD_RANGES, replica_toml

DEFAULT_DURATION_S = 600.0
MAX_DURATION_S = 1_800.0
DEFAULT_MAX_REQUESTS = 300


def base_url(url: str, allow_remote: bool) -> str:
    """The server's root URL; a host other than loopback only with `allow_remote`.

    Calibration sends a few hundred long requests as fast as the server takes them: aimed
    at a shared or production endpoint by mistake, that is a load test nobody asked for.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"--url must be http(s)://HOST[:PORT], got {url!r}")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise CommandError(
            f"{host} is not a loopback address; pass --allow-remote to load a remote server"
        )
    path = parts.path.rstrip("/").removesuffix("/v1")
    return f"{parts.scheme}://{parts.netloc}{path}"


def run(args: argparse.Namespace) -> int:
    root = base_url(args.url, args.allow_remote)
    if args.duration > MAX_DURATION_S:
        raise CommandError(f"--duration must be <= {MAX_DURATION_S:g}, got {args.duration:g}")
    budget = Budget(time.monotonic() + args.duration, args.max_requests)
    try:
        with httpx.Client(timeout=10.0) as client:
            server = discover(client, root, args.key)
        lengths = plan_lengths(server.max_model_len)
        print(f"calibrating {server.model} at {root} (at most {args.duration:g} s, "
              f"{args.max_requests} requests)")  # fmt: skip
        if lengths.clipped:
            print(lengths.clipped)
        found = asyncio.run(measure(server, lengths, budget, print))
        print(f"concurrency ladder ended: {found.stopped}")
        result = fit(found.prefill, found.levels)
    except (MeasureError, FitError) as error:
        raise CommandError(str(error)) from None
    except httpx.HTTPError as error:
        raise CommandError(f"{root}: {error or type(error).__name__}") from None
    for note in result.notes:
        print(f"note: {note}")
    model = result.model
    comments = [
        f"fleet calibrate, {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}, {server.model} at {root}",
        f"prompt lengths {', '.join(map(str, lengths.prefill_prompts))}; batch levels "
        f"{lengths.level_prompt} prompt + {lengths.output} output tokens",
        *([lengths.clipped] if lengths.clipped else []),
        f"time to first token of an empty prompt (not in the model): "
        f"{result.ttft_overhead_s * 1000:.1f} ms",
        *(f"note: {note}" for note in result.notes),
    ]
    args.out.write_text(replica_toml(model, comments))
    for name in FIELD_RANGES:
        print(f"  {name:<20} {getattr(model, name):g}")
    print(f"replica model written to {args.out}")
    return 0


def writable_toml(text: str) -> Path:
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory {str(path.parent)!r}")
    return path


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "calibrate", help="measure one running replica and fit the simulator's replica model"
    )
    parser.add_argument(
        "--url", required=True, help="the server's root, e.g. http://127.0.0.1:8001"
    )
    parser.add_argument("--key", required=True, help="API key sent as a bearer token")
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=DEFAULT_DURATION_S,
        metavar="S",
        help=f"time budget in seconds (default {DEFAULT_DURATION_S:g}, at most {MAX_DURATION_S:g})",
    )
    parser.add_argument(
        "--max-requests",
        type=positive_int,
        default=DEFAULT_MAX_REQUESTS,
        metavar="N",
        help=f"request budget (default {DEFAULT_MAX_REQUESTS})",
    )
    parser.add_argument(
        "--out",
        type=writable_toml,
        default=Path("replica.toml"),
        metavar="FILE.toml",
        help="where to write the fitted model (default replica.toml)",
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a host other than loopback"
    )
    parser.set_defaults(handler=run)
