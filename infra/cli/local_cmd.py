"""`fleet local`: the production shape on this machine (HAProxy, replicas, the autoscaler).

`fleet local up` runs it in the foreground until Ctrl-C (which drains every replica);
`fleet local status` reads the state it writes; `fleet local replay` sends a trace through
its load balancer and compares what happened with the simulator's prediction.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
from pathlib import Path

from infra.cli.common import (
    CommandError,
    add_policy_option,
    positive_float,
    positive_int,
    selected_policy,
)
from infra.local.fleet import STATUS_FILE, FleetError, FleetOptions, LocalFleet

DEFAULT_STATE_DIR = Path(".serve/fleet")
# A status older than this (wall seconds) comes from a fleet that is no longer running.
STALE_STATUS_S = 10.0


def _instant(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO instant such as 2026-12-01T15:00:00+00:00, got {text!r}"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"the instant needs a time zone (+00:00), got {text!r}")
    return value


def run_up(args: argparse.Namespace) -> int:
    try:
        options = FleetOptions(
            state_dir=args.state_dir,
            tenants_file=args.tenants_file,
            policy=selected_policy(args),
            port=args.port,
            speed=args.speed,
            start_at=args.start,
            initial_replicas=args.replicas,
            engine=args.engine,
            model_name=args.model,
            model_dir=args.model_dir,
        )
        fleet = LocalFleet(options)
    except FleetError as error:
        raise CommandError(str(error)) from None
    logging.basicConfig(level=logging.INFO, format="fleet local: %(message)s", stream=sys.stderr)

    def stop(signum: int, frame: object) -> None:
        fleet.stop()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        fleet.run()
    except FleetError as error:
        raise CommandError(str(error)) from None
    return 0


def read_status(state_dir: Path) -> dict[str, object]:
    path = state_dir / STATUS_FILE
    try:
        status: dict[str, object] = json.loads(path.read_text())
    except FileNotFoundError:
        raise CommandError(
            f"no local fleet has run here ({path} is missing): `make serve`"
        ) from None
    except ValueError as error:
        raise CommandError(f"{path} is not valid JSON: {error}") from None
    return status


def run_status(args: argparse.Namespace) -> int:
    status = read_status(args.state_dir)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    updated = dt.datetime.fromisoformat(str(status["updated"]))
    age_s = (dt.datetime.now(dt.UTC) - updated).total_seconds()
    clock = status["clock"]
    assert isinstance(clock, dict)
    stale = (
        f"  (stale: written {age_s:.0f} s ago; the fleet is not running)"
        if age_s > STALE_STATUS_S
        else ""
    )
    print(f"load balancer {status['load_balancer']}  engine {status['engine']}{stale}")
    print(f"clock {clock['now']}  x{clock['speed']:g}  elapsed {clock['elapsed_s']:.0f} s")
    demand = status["demand_per_instance"]
    queue = status["queue_depth_per_instance"]
    print(
        f"capacity: desired {status['desired']}, actual {status['actual']}, "
        f"in service {status['in_service']}  (min {status['minimum']}, max {status['maximum']})"
    )
    print(
        "per instance: Demand "
        + ("-" if demand is None else f"{demand:.1f}")
        + ", QueueDepth "
        + ("-" if queue is None else f"{queue:.1f}")
    )
    print()
    print(
        f"{'replica':<18}{'state':<12}{'lb':<10}{'running':>8}{'queued':>8}{'served':>8}  gateway"
    )
    replicas = status["replicas"]
    assert isinstance(replicas, list)
    for row in replicas:
        print(
            f"{row['instance_id']:<18}{row['state']:<12}{row['load_balancer'].split()[0]:<10}"
            f"{row['running']:>8.0f}{row['queued']:>8.0f}{row['served']:>8}  {row['gateway']}"
        )
    if not replicas:
        print("(no replica)")
    print()
    print("last scaling decisions:")
    decisions = status["decisions"]
    assert isinstance(decisions, list)
    for decision in decisions[-args.decisions :]:
        print(
            f"  {decision['at']}  desired {decision['desired_from']} -> "
            f"{decision['desired_to']}: {decision['why']}"
        )
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from infra.cli.simulate_cmd import simulation_from
    from infra.local.replay import ReplayError, replay
    from infra.sim.report import as_json, table
    from infra.sim.trace import TraceError, read_trace

    policy = selected_policy(args)
    try:
        trace = read_trace(args.trace, policy.schedule.zone)
    except TraceError as error:
        raise CommandError(str(error)) from None
    simulation = simulation_from(args, policy)
    logging.basicConfig(level=logging.WARNING, format="fleet local: %(message)s")
    try:
        report = replay(
            trace,
            simulation,
            args.speed,
            args.state_dir,
            max_requests=args.max_requests,
            max_wall_s=args.max_wall_s,
        )
    except (ReplayError, FleetError) as error:
        raise CommandError(str(error)) from None
    if args.plot is not None:
        from infra.sim.plot import write_timeline

        target = policy.default.target_ongoing_requests
        zone = policy.schedule.zone
        write_timeline(args.plot, report.local, report.window, simulation.slo, zone, target)
        simulated_plot = args.plot.with_suffix(".sim.png")
        write_timeline(
            simulated_plot, report.simulated, report.window, simulation.slo, zone, target
        )
    if args.json:
        print(
            json.dumps(
                {
                    "local": as_json(report.local, report.window, simulation.slo, args.seed),
                    "simulated": as_json(
                        report.simulated, report.window, simulation.slo, args.seed
                    ),
                    "comparison": report.comparison.as_json(),
                },
                indent=2,
                default=str,
            )
        )
        return 0
    print("local fleet (emulated engines):")
    print(table(report.local, report.window, simulation.slo, args.seed))
    print()
    print("simulator:")
    print(table(report.simulated, report.window, simulation.slo, args.seed))
    print()
    print("\n".join(report.comparison.lines()))
    if args.plot is not None:
        print(f"timelines written to {args.plot} (local) and {simulated_plot} (simulator)")
    return 0


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("local", help="the production shape on this machine")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    up = actions.add_parser("up", help="run HAProxy, replicas and the autoscaler until Ctrl-C")
    add_policy_option(up)
    up.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    up.add_argument("--tenants-file", type=Path, required=True, help="the gateways' tenants")
    up.add_argument("--port", type=positive_int, default=8000, help="the load balancer's port")
    up.add_argument("--speed", type=positive_float, default=1.0, help="clock speed-up")
    up.add_argument("--start", type=_instant, default=None, help="the clock's first instant")
    up.add_argument("--replicas", type=positive_int, default=2, help="initial capacity")
    up.add_argument("--engine", choices=("emulated", "vllm"), default="emulated")
    up.add_argument("--model", default="finsight-tiny", help="the served model's name")
    up.add_argument("--model-dir", type=Path, default=None, help="the tiny model (--engine vllm)")
    up.set_defaults(handler=run_up)

    status = actions.add_parser("status", help="replicas, capacity and the last decisions")
    status.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    status.add_argument("--decisions", type=positive_int, default=8, help="how many to show")
    status.add_argument("--json", action="store_true", help="the raw status document")
    status.set_defaults(handler=run_status)

    from infra.cli.simulate_cmd import add_simulation_options, png_path
    from infra.local.replay import MAX_REQUESTS, MAX_WALL_S

    replay = actions.add_parser(
        "replay", help="send a trace through a local fleet and compare with the simulator"
    )
    replay.add_argument("--trace", type=Path, required=True, metavar="FILE.csv")
    replay.add_argument("--speed", type=positive_float, default=10.0, help="clock speed-up")
    replay.add_argument("--state-dir", type=Path, default=Path(".serve/replay"))
    replay.add_argument("--max-requests", type=positive_int, default=MAX_REQUESTS)
    replay.add_argument(
        "--max-wall-s", type=positive_float, default=MAX_WALL_S, help="wall-time bound"
    )
    replay.add_argument("--json", action="store_true", help="machine-readable output")
    replay.add_argument("--plot", type=png_path, metavar="FILE.png", help="write timelines")
    add_simulation_options(replay)
    replay.set_defaults(handler=run_replay)
