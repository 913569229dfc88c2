"""`fleet simulate`: replay trading days (generated or a recorded trace) against the policy
and the baselines, side by side."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from pathlib import Path

from infra.cli.common import (
    CommandError,
    add_policy_option,
    iso_date,
    non_negative_int,
    positive_float,
    positive_int,
    print_json,
    selected_policy,
)
from infra.policy import FleetPolicy
from infra.policy.errors import PolicyError
from infra.sim.aws import AwsMechanics
from infra.sim.progress import ProgressBar
from infra.sim.replica_model import A10G_VLLM, ReplicaModel, ReplicaModelError, load_replica
from infra.sim.report import as_json, table
from infra.sim.runner import Simulation, run_configs
from infra.sim.trace import Trace, TraceError, read_trace
from infra.sim.traffic import Scenario, generate

# A Tuesday in an ordinary week: reproducible figures for the README and reviews.
REFERENCE_START = dt.date(2026, 12, 1)
MAX_DAYS = 366


def replica_file(text: str) -> ReplicaModel:
    try:
        return load_replica(Path(text))
    except ReplicaModelError as error:
        raise argparse.ArgumentTypeError(f"{text}: {error}") from None


def add_simulation_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `fleet simulate` and `fleet check`."""
    add_policy_option(parser)
    parser.add_argument(
        "--replica",
        type=replica_file,
        default=A10G_VLLM,
        metavar="FILE.toml",
        help="the replica model (as `fleet calibrate` writes it); default: the A10G model",
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (>= 0)")
    parser.add_argument(
        "--ttft-target",
        type=positive_float,
        default=None,
        metavar="S",
        help="the SLO's default time-to-first-token target in seconds (default: the "
        "policy's [slo] ttft_s); tenants with their own targets keep them",
    )
    parser.add_argument(
        "--e2e-target",
        type=positive_float,
        default=None,
        metavar="S",
        help="the SLO's default end-to-end target in seconds (default: the policy's [slo] "
        "e2e_s); tenants with their own targets keep them",
    )
    parser.add_argument(
        "--qpd-per-tenant",
        type=non_negative_int,
        default=Scenario.qpd_per_tenant,
        metavar="N",
        help=f"generated traffic per tenant per trading day (default {Scenario.qpd_per_tenant})",
    )
    parser.add_argument(
        "--learn-weeks",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="add the learned intraday profile, learned from N weeks of generated traffic "
        "before the first day (default 0: off; generated traffic only)",
    )
    parser.add_argument(
        "--warm-pool", action="store_true", help="launch from a Stopped warm pool (shorter boot)"
    )
    parser.add_argument(
        "--price",
        type=positive_float,
        default=AwsMechanics.hourly_usd,
        metavar="USD",
        help=f"g5.xlarge on-demand price per hour (default {AwsMechanics.hourly_usd})",
    )


def with_targets(args: argparse.Namespace, policy: FleetPolicy) -> FleetPolicy:
    """`policy` with its SLO's default targets replaced by --ttft-target/--e2e-target."""
    changes = {
        name: value
        for name, value in (("ttft_s", args.ttft_target), ("e2e_s", args.e2e_target))
        if value is not None
    }
    if not changes:
        return policy
    try:
        slo = dataclasses.replace(policy.slo, **changes)
    except PolicyError as error:
        raise CommandError(f"--ttft-target/--e2e-target: {error}") from None
    return dataclasses.replace(policy, slo=slo)


def simulation_from(args: argparse.Namespace, policy: FleetPolicy) -> Simulation:
    mechanics = dataclasses.replace(AwsMechanics(), warm_pool=args.warm_pool, hourly_usd=args.price)
    return Simulation(
        policy=with_targets(args, policy),
        seed=args.seed,
        mechanics=mechanics,
        model=args.replica,
    )


def with_learned_profile(
    args: argparse.Namespace, policy: FleetPolicy, start: dt.date, days: int
) -> FleetPolicy:
    """`policy` plus the windows learned from --learn-weeks weeks before `start`."""
    if not args.learn_weeks:
        return policy
    from infra.policy.profile import HistoryTooShortError
    from infra.sim.learned import learned_policy

    scenario = Scenario(qpd_per_tenant=args.qpd_per_tenant)
    try:
        return learned_policy(
            policy, scenario, start, days, args.learn_weeks, simulation_from(args, policy)
        )
    except HistoryTooShortError as error:
        raise CommandError(f"--learn-weeks: {error}; give more weeks") from None


def traffic(args: argparse.Namespace, policy: FleetPolicy, start: dt.date, days: int) -> Trace:
    scenario = Scenario(qpd_per_tenant=args.qpd_per_tenant)
    # Event days carry their burst whether or not the policy pre-warms for them.
    return generate(scenario, policy.schedule, start, days, args.seed, policy.events)


def run(args: argparse.Namespace) -> int:
    policy = selected_policy(args)
    if args.trace is not None:
        if args.days is not None or args.start is not None:
            raise CommandError("--days and --start shape generated traffic; drop them with --trace")
        if args.learn_weeks:
            raise CommandError("--learn-weeks learns from generated traffic; drop it with --trace")
        try:
            trace = read_trace(args.trace, policy.schedule.zone)
        except TraceError as error:
            raise CommandError(str(error)) from None
    else:
        days = args.days if args.days is not None else 1
        if days > MAX_DAYS:
            raise CommandError(f"--days must be <= {MAX_DAYS}, got {days}")
        trace = traffic(args, policy, args.start or REFERENCE_START, days)
        policy = with_learned_profile(args, policy, args.start or REFERENCE_START, days)
    simulation = simulation_from(args, policy)
    progress = ProgressBar()
    try:
        outcome = run_configs(trace, simulation, progress=progress)
    finally:
        progress.close()
    if args.plot is not None:
        from infra.sim.plot import write_timeline  # matplotlib only when a plot is asked for

        write_timeline(
            args.plot,
            outcome,
            trace,
            simulation.slo,
            policy.schedule.zone,
            policy.default.target_ongoing_requests,
        )
    if args.json:
        print_json(as_json(outcome, trace, simulation.slo, simulation.seed))
    else:
        print(table(outcome, trace, simulation.slo, simulation.seed))
        if args.plot is not None:
            print(f"timeline written to {args.plot}")
    return 0


def png_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"--plot needs a .png file name, got {text!r}")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"--plot: no such directory {str(path.parent)!r}")
    return path


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "simulate", help="replay trading days against the policy and the baselines"
    )
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="FILE",
        help="a recorded trace CSV (timestamp,tenant,prompt_tokens,output_tokens)",
    )
    parser.add_argument(
        "--start",
        type=iso_date,
        default=None,
        help=f"first local date of generated traffic (default {REFERENCE_START})",
    )
    parser.add_argument(
        "--days", type=positive_int, default=None, help="days of generated traffic (default 1)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--plot", type=png_path, metavar="FILE.png", help="write a timeline")
    add_simulation_options(parser)
    parser.set_defaults(handler=run)
