"""`fleet check`: the gate before a scaling-config change; exits 1 when the proposed policy
misses its SLO on the reference days (a day under the objective fleet-wide, or a burn-rate
alarm fleet-wide or for any tenant), oscillates, or costs more than a margin over the
reference, saying which and by how much."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from infra.cli.common import (
    CommandError,
    iso_date,
    non_negative_float,
    percent,
    positive_int,
    print_json,
    selected_policy,
)
from infra.cli.simulate_cmd import (
    add_simulation_options,
    simulation_from,
    traffic,
    with_learned_profile,
)
from infra.policy import FLEET_POLICY
from infra.policy.loader import load_policy
from infra.sim.check import REFERENCE_DAYS, REFERENCE_START, Limits, evaluate
from infra.sim.progress import ProgressBar
from infra.sim.report import burst_cell, json_safe
from infra.sim.runner import POLICY_CONFIG, run_configs

MAX_DAYS = 92


def run(args: argparse.Namespace) -> int:
    if args.days > MAX_DAYS:
        raise CommandError(f"--days must be <= {MAX_DAYS}, got {args.days}")
    proposed_policy = selected_policy(args)
    reference_path: Path | None = args.against
    reference_policy = (
        FLEET_POLICY if reference_path is None else load_policy(reference_path, FLEET_POLICY)
    )
    trace = traffic(args, proposed_policy, args.start, args.days)
    # The learned profile, when asked for, is part of the proposal, not of the reference.
    proposed_policy = with_learned_profile(args, proposed_policy, args.start, args.days)
    limits = Limits(cost_margin=args.cost_margin, max_reversals_per_trading_day=args.max_reversals)
    progress = ProgressBar()
    try:
        proposed_sim = simulation_from(args, proposed_policy)
        proposed = run_configs(trace, proposed_sim, configs=(POLICY_CONFIG,), progress=progress)
        reference_sim = simulation_from(args, reference_policy)
        reference = run_configs(trace, reference_sim, configs=(POLICY_CONFIG,), progress=progress)
    finally:
        progress.close()
    findings = evaluate(
        proposed.run(POLICY_CONFIG),
        reference.run(POLICY_CONFIG),
        trace,
        proposed_sim.slo,
        proposed_policy.schedule,
        limits,
    )
    names = {
        "proposed": str(args.policy) if args.policy else "the deployed policy",
        "reference": str(reference_path) if reference_path else "the deployed policy",
    }
    # The runs are already summarised; the gate reports whole-fleet figures only.
    summaries = {
        label: dataclasses.replace(outcome.report(POLICY_CONFIG), per_tenant={})
        for label, outcome in (("proposed", proposed), ("reference", reference))
    }
    failed = [f for f in findings if not f.passed]
    if args.json:
        print_json(
            json_safe(
                {
                    "passed": not failed,
                    "proposed": names["proposed"],
                    "reference": names["reference"],
                    "start": args.start.isoformat(),
                    "days": args.days,
                    "findings": [vars(f) for f in findings],
                    "runs": {label: summary.as_json() for label, summary in summaries.items()},
                }
            )
        )
    else:
        print(
            f"checking {names['proposed']} against {names['reference']} on {args.days} "
            f"day(s) from {args.start} (seed {args.seed})"
        )
        for label, summary in summaries.items():
            latency = summary.latency
            sheds = summary.sheds
            print(
                f"  {label:<10} p99 TTFT {latency.p99_ttft_s:6.2f} s  p99 E2E "
                f"{latency.p99_e2e_s:6.1f} s  within SLO {latency.slo_attainment:7.2%}  "
                f"burn {latency.budget_burn:.2f}  "
                f"GPU-h {summary.gpu_hours:6.1f}  scale events {summary.scale_events}  "
                f"reversals {summary.reversals}"
            )
            print(
                f"  {'':<10} shed {sheds.requests} ({sheds.share:.3%}; refused before "
                f"retries 503 {sheds.refused_503}, 429 {sheds.refused_429})  queue wait "
                f"p50 {summary.queue_wait_p50_s:.2f} s p99 {summary.queue_wait_p99_s:.2f} s  "
                f"burst->capacity p50/max {burst_cell(summary)}"
            )
            after = [f"opens {_share(summary.open_attainment)}"] + [
                f"{label} {_share(value)}" for label, value in summary.event_attainment.items()
            ]
            print(f"  {'':<10} in SLO 15 min after: {'; '.join(after)}")
        for finding in findings:
            print(finding.line())
        print("check failed" if failed else "check passed")
    return 1 if failed else 0


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "check", help="gate a proposed policy: SLO, oscillation and cost on the reference days"
    )
    parser.add_argument(
        "--against",
        type=Path,
        metavar="REF.toml",
        help="the reference policy (TOML over the deployed one); default: the deployed policy",
    )
    parser.add_argument(
        "--start",
        type=iso_date,
        default=REFERENCE_START,
        help=f"first reference day (default {REFERENCE_START}, Thanksgiving week)",
    )
    parser.add_argument(
        "--days",
        type=positive_int,
        default=REFERENCE_DAYS,
        help=f"reference days (default {REFERENCE_DAYS})",
    )
    parser.add_argument(
        "--cost-margin",
        type=percent,
        default=Limits.cost_margin,
        metavar="PCT",
        # argparse %-formats help text, so a literal percent sign is written %%.
        help="allowed GPU-hours over the reference, in percent "
        f"(default {Limits.cost_margin * 100:g}%%)",
    )
    parser.add_argument(
        "--max-reversals",
        type=non_negative_float,
        default=Limits.max_reversals_per_trading_day,
        metavar="N",
        help="allowed direction reversals within 10 min per trading day (default "
        f"{Limits.max_reversals_per_trading_day:g})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_simulation_options(parser)
    parser.set_defaults(handler=run)
