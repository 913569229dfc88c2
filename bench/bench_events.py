"""Capacity before the burst, measured: the deployed policy reactive (no event pre-warms),
with the market-event pre-warms, with events and the learned profile, and the clairvoyant
bound, on the reference Thanksgiving week and an FOMC week with a CPI morning.

The FOMC date is the Federal Reserve's (infra/policy/event_data.py). The CPI morning is an
illustrative date (the BLS calendar was not sourced; see event_data.py), added as a policy
file's `[[events]]` entry would be. The learned profile is learned from three weeks of
generated traffic before each range, served by a static fleet at the maximum.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from infra.policy import FLEET_POLICY, FleetPolicy, MarketEvent
from infra.sim.learned import learned_policy
from infra.sim.metrics import ConfigReport
from infra.sim.runner import (
    POLICY_CONFIG,
    REACTIVE_CONFIG,
    Simulation,
    event_moments,
    run_configs,
)
from infra.sim.traffic import Scenario, generate

CPI_MORNING = MarketEvent(
    date=dt.date(2026, 12, 10),
    release=dt.time(8, 30),
    start=dt.time(8, 20),
    end=dt.time(9, 15),
    min_replicas=3,
    name="CPI release (illustrative date)",
)
RANGES = ((dt.date(2026, 11, 23), 7), (dt.date(2026, 12, 7), 5))
LEARN_WEEKS = 3


def _reports(policy: FleetPolicy, start: dt.date, days: int) -> dict[str, ConfigReport]:
    scenario = Scenario()
    trace = generate(scenario, policy.schedule, start, days, 0, policy.events)
    simulation = Simulation(policy)
    learned = learned_policy(policy, scenario, start, days, LEARN_WEEKS, simulation)
    rows: dict[str, ConfigReport] = {}
    for label, variant, config in (
        # The policy without its event pre-warms, judged on the same event windows.
        # (Without events in the range the policy is its own reactive self.)
        ("reactive", policy, REACTIVE_CONFIG if event_moments(policy, trace) else POLICY_CONFIG),
        ("+events", policy, POLICY_CONFIG),
        ("+events+profile", learned, POLICY_CONFIG),
    ):
        outcome = run_configs(trace, dataclasses.replace(simulation, policy=variant), (config,))
        rows[label] = outcome.report(config)
    outcome = run_configs(trace, simulation, ("clairvoyant", "static-4"))
    rows["clairvoyant"] = outcome.report("clairvoyant")
    rows["static-4"] = outcome.report("static-4")
    return rows


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def main() -> None:
    policy = dataclasses.replace(FLEET_POLICY, events=(*FLEET_POLICY.events, CPI_MORNING))
    for start, days in RANGES:
        rows = _reports(policy, start, days)
        events = sorted({label for r in rows.values() for label in r.event_attainment})
        bound = rows["clairvoyant"].gpu_hours
        print(f"{days} days from {start} (seed 0)")
        header = f"{'config':<18}{'open 15m':>10}" + "".join(
            f"{label[5:27]:>24}" for label in events
        )
        header += f"{'whole':>9}{'GPU-h':>8}{'x clairv.':>10}"
        print(header)
        for label, report in rows.items():
            cells = "".join(f"{_cell(report.event_attainment.get(e)):>24}" for e in events)
            print(
                f"{label:<18}{_cell(report.open_attainment):>10}{cells}"
                f"{report.latency.slo_attainment:>9.2%}{report.gpu_hours:>8.1f}"
                f"{report.gpu_hours / bound:>10.2f}"
            )
        print()
