"""Run every config on one trace and summarise them side by side: the simulator's entry."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from infra.policy import FleetPolicy
from infra.policy.calendar import trading_day
from infra.policy.slo import Slo
from infra.sim.aws import AwsMechanics, BootTimes, ScheduledMinimum
from infra.sim.clairvoyant import plan
from infra.sim.controllers import Controller, ProposedOnAws, RayServe, Static, TargetTracking
from infra.sim.engine import RunResult, simulate
from infra.sim.gateway import GatewayModel
from infra.sim.metrics import ConfigReport, attainment_after, summarize, within_slo
from infra.sim.replica_model import A10G_VLLM, ReplicaModel
from infra.sim.trace import Trace

POLICY_CONFIG = "policy-aws"
# The policy without its market-event pre-warms: what the events add is the difference.
REACTIVE_CONFIG = "policy-reactive"
STATIC_BASELINES = 4  # static-1 .. static-4, as the ADR's 1-4 replica range

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Simulation:
    """Everything a run needs besides the traffic."""

    policy: FleetPolicy
    seed: int = 0
    model: ReplicaModel = A10G_VLLM
    mechanics: AwsMechanics = field(default_factory=AwsMechanics)
    period_s: float = 10.0
    # The gateway in front of each replica; None: the one `policy.queue` configures.
    gateway: GatewayModel | None = None

    @property
    def slo(self) -> Slo:
        """What every request is judged against: the policy's SLO (a proposal's `[slo]`)."""
        return self.policy.slo

    @property
    def gateway_model(self) -> GatewayModel:
        return self.gateway if self.gateway is not None else GatewayModel.from_policy(self.policy)


@dataclass(frozen=True)
class Outcome:
    reports: list[ConfigReport]
    runs: list[RunResult]

    def report(self, config: str) -> ConfigReport:
        return next(r for r in self.reports if r.config == config)

    def run(self, config: str) -> RunResult:
        return next(r for r in self.runs if r.config == config)


def _no_progress(done: float, label: str) -> None:
    return None


def run_configs(
    trace: Trace,
    simulation: Simulation,
    configs: tuple[str, ...] | None = None,
    progress: Progress = _no_progress,
) -> Outcome:
    """Simulate the baselines and the policy; `configs` limits which (None: all)."""
    policy = simulation.policy
    mechanics = simulation.mechanics
    seed = simulation.seed
    late = ScheduledMinimum(
        policy, trace.start_s, trace.end_s, mechanics.scheduled_action_max_late_s, seed
    )
    exact = ScheduledMinimum(policy, trace.start_s, trace.end_s, 0.0, seed)
    statics = max(STATIC_BASELINES, policy.max_replicas)
    gateway = simulation.gateway_model

    def run(controller: Controller) -> RunResult:
        return simulate(
            trace, controller, simulation.model, mechanics, seed, simulation.period_s, gateway
        )

    def factories() -> list[tuple[str, Callable[[], Controller]]]:
        made: list[tuple[str, Callable[[], Controller]]] = [
            (f"static-{n}", _static(n)) for n in range(1, statics + 1)
        ]
        made += [
            ("ray-serve", lambda: RayServe(policy, exact, simulation.period_s)),
            ("target-tracking", lambda: TargetTracking(policy, late, simulation.period_s)),
            (POLICY_CONFIG, lambda: ProposedOnAws(policy, late, POLICY_CONFIG)),
        ]
        if event_moments(policy, trace):
            reactive = without_events(policy)
            reactive_minimum = ScheduledMinimum(
                reactive,
                trace.start_s,
                trace.end_s,
                mechanics.scheduled_action_max_late_s,
                seed,
            )
            made.append(
                (
                    REACTIVE_CONFIG,
                    lambda: ProposedOnAws(reactive, reactive_minimum, REACTIVE_CONFIG),
                )
            )
        return made

    wanted = set(configs) if configs is not None else None
    wants_clairvoyant = wanted is None or "clairvoyant" in wanted
    chosen = [
        (name, make)
        for name, make in factories()
        if wanted is None or name in wanted or (wants_clairvoyant and name.startswith("static-"))
    ]
    total = len(chosen) + (1 if wants_clairvoyant else 0)
    runs: list[RunResult] = []
    for done, (name, make) in enumerate(chosen):
        progress(done / total, name)
        runs.append(run(make()))
    if wants_clairvoyant:
        progress(len(chosen) / total, "clairvoyant")
        statics_runs = [r for r in runs if r.config.startswith("static-")]
        statics_runs.sort(key=lambda r: int(r.config.split("-")[1]))
        lead = math.ceil(BootTimes(seed, mechanics.warm_pool).worst_s / simulation.period_s)
        controller = plan(
            trace,
            statics_runs[: policy.max_replicas],
            simulation.slo,
            policy.default.min_replicas,
            (lead + 1) * simulation.period_s,
        )
        runs.append(run(controller))
    progress(1.0, "done")
    if wanted is not None:
        runs = [r for r in runs if r.config in wanted]
    reports = [
        summarize(
            result,
            trace,
            simulation.slo,
            mechanics.hourly_usd,
            policy.default.target_ongoing_requests,
            reactive=not result.config.startswith(("static-", "clairvoyant")),
        )
        for result in runs
    ]
    opens = open_moments(policy, trace)
    events = event_moments(policy, trace)
    for index, result in enumerate(runs):
        within = within_slo(result, trace, simulation.slo)
        reports[index] = dataclasses.replace(
            reports[index],
            open_attainment=attainment_after(within, trace.arrival_s, list(opens)),
            event_attainment={
                label: attainment_after(within, trace.arrival_s, [moment])
                for label, moment in events.items()
            },
        )
    return Outcome(reports, runs)


def without_events(policy: FleetPolicy) -> FleetPolicy:
    return dataclasses.replace(policy, events=(), cancelled_event_dates=())


def open_moments(policy: FleetPolicy, trace: Trace) -> list[float]:
    """The epoch seconds of each trading day's open within the trace."""
    hours = policy.schedule
    zone = hours.zone
    first = dt.datetime.fromtimestamp(trace.start_s, zone).date()
    last = dt.datetime.fromtimestamp(trace.end_s - 1, zone).date()
    moments = []
    for offset in range((last - first).days + 1):
        date = first + dt.timedelta(days=offset)
        if date.weekday() in hours.weekdays and not trading_day(hours.exchange, date).is_holiday:
            moments.append(dt.datetime.combine(date, hours.open_time, zone).timestamp())
    return moments


def event_moments(policy: FleetPolicy, trace: Trace) -> dict[str, float]:
    """Each market event's release within the trace, labelled `YYYY-MM-DD HH:MM name`
    (cancelled ones too: the traffic comes whether or not the fleet pre-warms)."""
    zone = policy.schedule.zone
    moments = {}
    for event in policy.events:
        at = dt.datetime.combine(event.date, event.release, zone).timestamp()
        if trace.start_s <= at < trace.end_s:
            moments[f"{event.date} {event.release:%H:%M} {event.name}"] = at
    return dict(sorted(moments.items(), key=lambda item: item[1]))


def _static(replicas: int) -> Callable[[], Controller]:
    return lambda: Static(replicas)
