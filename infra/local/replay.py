"""A trace through the local fleet, measured as the simulator measures a run, beside the
simulator's prediction for the same window.

The window is the trace's requests (not the whole local days `read_trace` spans) plus a
tail long enough for the scale-in after the last request. The local run starts the fleet
with the schedule's minimum at the window's first instant (the simulator's start too),
restarts its clock there, sends every request at its arrival (divided by the clock's
speed) as a stream from its tenant's key, then runs on to the window's end. Its latencies
and replica-seconds are converted back to policy seconds and summarised with
`infra.sim.metrics.summarize`, so both rows of the report mean the same thing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import math
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infra.local.fleet import FleetOptions, LocalFleet, free_port
from infra.local.load import Outcome, RequestSpec, open_loop
from infra.policy.fleet import FleetPolicy
from infra.policy.schedule import minimum_at
from infra.sim.engine import RunResult, Timeline
from infra.sim.gateway import REFUSED_QUEUE_FULL, REFUSED_TENANT_SHARE
from infra.sim.metrics import ConfigReport, summarize
from infra.sim.replica_model import A10G_VLLM
from infra.sim.runner import POLICY_CONFIG, Simulation, run_configs
from infra.sim.runner import Outcome as SimOutcome
from infra.sim.trace import Trace

LOCAL_CONFIG = "local"
MAX_REQUESTS = 5_000
MAX_WALL_S = 900.0
LEAD_S = 10.0  # policy seconds before the first request
# After the last request: the down delay and one alarm repeat, so the scale-in is in.
REPEAT_S = 60.0
MODEL = "finsight-tiny"


class ReplayError(ValueError):
    """A trace too large or too long to replay here; the message says which bound."""


@dataclass(frozen=True)
class Comparison:
    replica_seconds_local: float
    replica_seconds_sim: float
    shed_local: int
    shed_sim: int
    p99_ttft_local_s: float
    p99_ttft_sim_s: float
    path_overhead_ms: float  # measured, removed from the local latencies before scaling
    p50_ttft_local_s: float = 0.0
    p50_ttft_sim_s: float = 0.0

    @property
    def replica_seconds_diff(self) -> float:
        return _relative(self.replica_seconds_local, self.replica_seconds_sim)

    @property
    def p99_ttft_diff(self) -> float:
        return _relative(self.p99_ttft_local_s, self.p99_ttft_sim_s)

    def as_json(self) -> dict[str, float | int]:
        return {
            **dataclasses.asdict(self),
            "replica_seconds_diff": self.replica_seconds_diff,
            "p99_ttft_diff": self.p99_ttft_diff,
        }

    def lines(self) -> list[str]:
        return [
            "local run vs the simulator's prediction (policy-aws) for the same window:",
            f"  replica-seconds  local {self.replica_seconds_local:,.0f}  "
            f"sim {self.replica_seconds_sim:,.0f}  ({self.replica_seconds_diff:+.1%})",
            f"  requests shed    local {self.shed_local}  sim {self.shed_sim}",
            f"  p99 TTFT         local {self.p99_ttft_local_s:.2f} s  "
            f"sim {self.p99_ttft_sim_s:.2f} s  ({self.p99_ttft_diff:+.1%})",
            f"  p50 TTFT         local {self.p50_ttft_local_s:.2f} s  "
            f"sim {self.p50_ttft_sim_s:.2f} s",
            f"  (the unloaded path's {self.path_overhead_ms:.0f} ms of wall time, HAProxy, "
            "gateway and engine tick, counted once, not times the speed)",
        ]


def _relative(local: float, sim: float) -> float:
    if sim == 0:
        return 0.0 if local == 0 else math.inf
    return (local - sim) / sim


def window(trace: Trace, policy: FleetPolicy) -> Trace:
    """The trace over its requests' span plus the scale-in tail."""
    if len(trace) == 0:
        raise ReplayError("the trace has no request")
    tail = policy.default.downscale_delay_s + REPEAT_S + 2 * policy.default.metric_period_s
    first, last = float(trace.arrival_s[0]), float(trace.arrival_s[-1])
    return dataclasses.replace(trace, start_s=first - LEAD_S, end_s=last + tail)


def check_bounds(trace: Trace, speed: float, max_requests: int, max_wall_s: float) -> None:
    if len(trace) > max_requests:
        raise ReplayError(f"{len(trace)} requests; a local replay sends at most {max_requests}")
    wall_s = (trace.end_s - trace.start_s) / speed
    if wall_s > max_wall_s:
        raise ReplayError(
            f"the window lasts {wall_s:.0f} s of wall time at --speed {speed:g}; at most "
            f"{max_wall_s:g}: raise --speed or shorten the trace"
        )


def write_tenants(path: Path, tenants: tuple[str, ...]) -> dict[str, str]:
    """One fresh key per trace tenant (the gateway's default limits, as the simulator's)."""
    keys = {name: "fsk-replay-" + secrets.token_urlsafe(18) for name in tenants}
    entries = [
        {"id": f"t{index}", "api_key_sha256": hashlib.sha256(key.encode()).hexdigest()}
        for index, key in enumerate(keys.values())
    ]
    path.write_text(json.dumps({"tenants": entries}))
    return keys


@dataclass
class LocalRun:
    result: RunResult
    outcomes: list[Outcome]
    decisions: list[dict[str, object]]
    overhead_s: float  # wall seconds the unloaded path adds to a first token


# Requests that measure the unloaded path (HAProxy, the gateway, the engine's scheduler
# tick): its wall time is real, not compressed, so it must not be multiplied by the speed.
CALIBRATION_REQUESTS = 5


def measure_overhead(url: str, key: str, model_s_per_token: float, speed: float) -> float:
    """Median wall seconds from send to first token of a 1-token stream, less the engine's
    own (compressed) time for it."""
    specs = [
        RequestSpec(prompt_tokens=1, output_tokens=1, stream=True, at_s=0.05 * i)
        for i in range(CALIBRATION_REQUESTS)
    ]
    outcomes = asyncio.run(open_loop(url, key, MODEL, specs, max_in_flight=1))
    firsts = sorted(o.ttft_s for o in outcomes if o.complete and o.ttft_s is not None)
    if not firsts:
        raise ReplayError("the fleet answered none of the calibration requests")
    return max(0.0, firsts[len(firsts) // 2] - model_s_per_token / speed)


def run_local(
    trace: Trace,
    policy: FleetPolicy,
    speed: float,
    state_dir: Path,
    *,
    max_requests: int = MAX_REQUESTS,
    max_wall_s: float = MAX_WALL_S,
) -> LocalRun:
    check_bounds(trace, speed, max_requests, max_wall_s)
    state_dir.mkdir(parents=True, exist_ok=True)
    keys = write_tenants(state_dir / "tenants.json", trace.tenants)
    start_at = dt.datetime.fromtimestamp(trace.start_s, dt.UTC)
    initial = max(1, minimum_at(policy, start_at))
    fleet = LocalFleet(
        FleetOptions(
            state_dir=state_dir,
            tenants_file=state_dir / "tenants.json",
            policy=policy,
            port=free_port(),
            speed=speed,
            start_at=start_at,
            initial_replicas=initial,
        )
    )
    runner = threading.Thread(target=fleet.run, name="local-fleet", daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 120
        while fleet.snapshot_in_service() < initial:
            if time.monotonic() > deadline or not runner.is_alive():
                raise ReplayError(f"the fleet did not serve; see {state_dir / 'logs'}")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{fleet.options.port}"
        overhead_s = measure_overhead(
            url, next(iter(keys.values())), 1 / A10G_VLLM.decode_tokens_per_s, speed
        )
        fleet.restart_clock()
        began = time.monotonic()
        specs = [
            RequestSpec(
                prompt_tokens=int(prompt),
                output_tokens=int(output),
                stream=True,
                at_s=(float(arrival) - trace.start_s) / speed,
                api_key=keys[trace.tenants[int(tenant)]],
            )
            for arrival, tenant, prompt, output in zip(
                trace.arrival_s,
                trace.tenant,
                trace.prompt_tokens,
                trace.output_tokens,
                strict=True,
            )
        ]
        outcomes = asyncio.run(
            open_loop(
                url,
                next(iter(keys.values())),
                MODEL,
                specs,
                request_timeout_s=max_wall_s,
            )
        )
        end_wall = began + (trace.end_s - trace.start_s) / speed
        while time.monotonic() < end_wall and runner.is_alive():
            time.sleep(0.1)
        end_s = trace.end_s - trace.start_s
        status = fleet.status
        decisions = [dataclasses.asdict(d) for d in status.decisions]
        lifetimes = dict(status.lifetimes)
        periods = list(status.periods)
        changes = list(status.in_service_changes)
    finally:
        fleet.stop()
        runner.join(MAX_WALL_S)
    replica_s = sum(
        max(0.0, min(end_s, stopped if stopped is not None else end_s) - max(0.0, launched))
        for launched, stopped in lifetimes.values()
    )
    return LocalRun(
        _result(trace, outcomes, speed, overhead_s, replica_s, decisions, periods, changes),
        outcomes,
        decisions,
        overhead_s,
    )


def _result(
    trace: Trace,
    outcomes: list[Outcome],
    speed: float,
    overhead_s: float,
    replica_s: float,
    decisions: list[dict[str, object]],
    periods: list[tuple[float, float | None, float | None, int, int]],
    changes: list[tuple[float, int]],
) -> RunResult:
    # Policy seconds: the compressed part times the speed, the path's real overhead once.
    def policy_s(wall_s: float) -> float:
        return max(0.0, wall_s - overhead_s) * speed + overhead_s

    ttft = np.array(
        [policy_s(o.ttft_s) if o.complete and o.ttft_s is not None else math.inf for o in outcomes]
    )
    e2e = np.array([policy_s(o.latency_s) if o.complete else math.inf for o in outcomes])
    # When each client got its final answer or error, as the simulator records it for the
    # SLO's burn-rate replay (the minute a request settles is the minute it is counted).
    settled = np.asarray(trace.arrival_s, dtype=np.float64) + np.array(
        [policy_s(o.latency_s) for o in outcomes]
    )
    refused = np.array(
        [
            0 if o.complete else REFUSED_TENANT_SHARE if o.status == 429 else REFUSED_QUEUE_FULL
            for o in outcomes
        ],
        dtype=np.int8,
    )
    start = trace.start_s
    timeline = Timeline()
    arrivals = np.asarray(trace.arrival_s) - start
    previous = 0.0
    for at_s, demand, queue, desired, in_service in periods:
        timeline.time_s.append(start + at_s)
        timeline.arrivals.append(int(np.count_nonzero((arrivals >= previous) & (arrivals < at_s))))
        timeline.ongoing_per_instance.append(demand or 0.0)
        timeline.queue_per_instance.append(queue or 0.0)
        timeline.desired.append(desired)
        timeline.in_service.append(in_service)
        previous = at_s
    scale_events = [
        (start + float(str(d["elapsed_s"])), int(str(d["desired_from"])), int(str(d["desired_to"])))
        for d in decisions
        if d["desired_from"] != d["desired_to"] and int(str(d["desired_from"])) > 0
    ]
    return RunResult(
        config=LOCAL_CONFIG,
        ttft_s=ttft,
        e2e_s=e2e,
        gpu_hours=replica_s / 3600,
        scale_events=scale_events,
        in_service_changes=[(start + t, n) for t, n in changes],
        timeline=timeline,
        ticks=len(periods),
        queue_wait_s=np.zeros(0),
        refused=refused,
        refusals={},
        retries=0,
        settled_s=settled,
    )


@dataclass
class ReplayReport:
    local: SimOutcome
    simulated: SimOutcome
    comparison: Comparison
    window: Trace


def replay(
    trace: Trace,
    simulation: Simulation,
    speed: float,
    state_dir: Path,
    *,
    max_requests: int = MAX_REQUESTS,
    max_wall_s: float = MAX_WALL_S,
) -> ReplayReport:
    policy = simulation.policy
    span = window(trace, policy)
    check_bounds(span, speed, max_requests, max_wall_s)
    simulated = run_configs(span, simulation, configs=(POLICY_CONFIG,))
    local = run_local(
        span, policy, speed, state_dir, max_requests=max_requests, max_wall_s=max_wall_s
    )
    report: ConfigReport = summarize(
        local.result,
        span,
        simulation.slo,
        simulation.mechanics.hourly_usd,
        policy.default.target_ongoing_requests,
    )
    sim_report = simulated.report(POLICY_CONFIG)
    comparison = Comparison(
        replica_seconds_local=report.gpu_hours * 3600,
        replica_seconds_sim=sim_report.gpu_hours * 3600,
        shed_local=report.sheds.requests,
        shed_sim=sim_report.sheds.requests,
        p99_ttft_local_s=report.latency.p99_ttft_s,
        p99_ttft_sim_s=sim_report.latency.p99_ttft_s,
        path_overhead_ms=local.overhead_s * 1000,
        p50_ttft_local_s=report.latency.p50_ttft_s,
        p50_ttft_sim_s=sim_report.latency.p50_ttft_s,
    )
    return ReplayReport(SimOutcome([report], [local.result]), simulated, comparison, span)
