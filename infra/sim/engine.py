"""The discrete-event loop: one trace, one controller, one simulated Auto Scaling group.

Speed matters (a month of traffic for every config in under a minute), so:
- each replica is a processor-sharing server tracked in *virtual time* (the service each
  running sequence has received): an arrival or a completion costs O(log n), and a
  replica is only advanced when something asks about it (an arrival, a tick);
- the controller, the group and the load balancer's health checks act on control ticks
  of one metric period (10 s), not Ray's 0.1 s: delays are multiples of the period, so a
  decision lands at most one period late, and a booted instance starts serving at the
  first tick after its boot completes (health checks are periodic anyway);
- idle stretches (no request anywhere, controller settled) are skipped to the next
  arrival or the next scheduled change.
Requests themselves are exact: arrival, queueing, first token and completion times.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from infra.sim.aws import AwsMechanics, BootTimes
from infra.sim.controllers import Controller, FleetView
from infra.sim.replica_model import ReplicaModel
from infra.sim.trace import FloatArray, Trace

PENDING, SERVING, DRAINING, HUNG, GONE = range(5)
# Requests still unfinished this long after the window closes count as failed.
TAIL_S = 2 * 3600.0
EPSILON = 1e-9


class _Replica:
    __slots__ = (
        "area",
        "drain_deadline_s",
        "ended_s",
        "events",
        "hung_s",
        "last_s",
        "launched_s",
        "next_s",
        "queue",
        "ready_s",
        "running",
        "state",
        "virtual",
    )

    def __init__(self, launched_s: float, ready_s: float, state: int) -> None:
        self.state = state
        self.launched_s = launched_s
        self.ready_s = ready_s
        self.ended_s = math.inf
        self.hung_s = math.inf
        self.drain_deadline_s = math.inf
        self.virtual = 0.0  # service each running sequence has received so far
        self.last_s = ready_s
        self.running = 0
        self.queue: deque[int] = deque()
        # (virtual time, 2 x request + kind): kind 0 = first token, 1 = last token.
        self.events: list[tuple[float, int]] = []
        self.area = 0.0  # integral of ongoing requests since the last metric sample
        self.next_s = math.inf  # when its next first or last token is due

    @property
    def ongoing(self) -> int:
        return self.running + len(self.queue)


@dataclass
class Timeline:
    """One row per processed control tick (skipped idle stretches repeat the last row).

    Typed arrays, not lists: a year of ticks for every config stays in tens of megabytes.
    """

    time_s: array[float] = field(default_factory=lambda: array("d"))
    arrivals: array[int] = field(default_factory=lambda: array("l"))
    ongoing_per_instance: array[float] = field(default_factory=lambda: array("d"))
    desired: array[int] = field(default_factory=lambda: array("l"))
    in_service: array[int] = field(default_factory=lambda: array("l"))


@dataclass
class RunResult:
    """Everything one simulated run produced, before summarising."""

    config: str
    ttft_s: FloatArray  # per request, inf when it failed (evicted, never served)
    e2e_s: FloatArray
    gpu_hours: float
    scale_events: list[tuple[float, int, int]]  # (time, old desired, new desired)
    in_service_changes: list[tuple[float, int]]
    timeline: Timeline
    ticks: int


def simulate(
    trace: Trace,
    controller: Controller,
    model: ReplicaModel,
    mechanics: AwsMechanics,
    seed: int,
    period_s: float = 10.0,
) -> RunResult:
    arrival = trace.arrival_s.tolist()
    prefill = (trace.prompt_tokens / model.prefill_speedup).tolist()
    output = trace.output_tokens.astype(np.float64).tolist()
    count = len(arrival)
    ttft = [math.inf] * count
    e2e = [math.inf] * count
    speed = model.speed_table()
    max_seqs = model.max_num_seqs
    boots = BootTimes(seed, mechanics.warm_pool)
    start_s, end_s = trace.start_s, trace.end_s
    failures = sorted(mechanics.instance_failures_s)
    heappush, heappop = heapq.heappush, heapq.heappop

    def begin(replica: _Replica, request: int) -> None:
        replica.running += 1
        first = replica.virtual + prefill[request]
        heappush(replica.events, (first, 2 * request))
        heappush(replica.events, (first + output[request], 2 * request + 1))

    def advance(replica: _Replica, now_s: float) -> None:
        """Bring a replica to `now_s`, recording every first and last token on the way."""
        if not replica.running:  # idle (the queue is empty whenever a slot is free)
            replica.last_s = now_s
            replica.next_s = math.inf
            return
        events = replica.events
        while replica.running:
            rate = speed[replica.running]
            next_virtual = events[0][0]
            at = replica.last_s + (next_virtual - replica.virtual) / rate
            if at > now_s:
                break
            replica.area += (replica.running + len(replica.queue)) * (at - replica.last_s)
            replica.virtual = next_virtual
            replica.last_s = at
            while events and events[0][0] <= next_virtual + EPSILON:
                code = heappop(events)[1]
                request = code >> 1
                if code & 1:
                    e2e[request] = at - arrival[request]
                    replica.running -= 1
                    queue = replica.queue
                    while queue and replica.running < max_seqs:
                        begin(replica, queue.popleft())
                else:
                    ttft[request] = at - arrival[request]
        if replica.running:
            replica.virtual += (now_s - replica.last_s) * speed[replica.running]
        replica.area += (replica.running + len(replica.queue)) * (now_s - replica.last_s)
        replica.last_s = now_s
        reschedule(replica)

    def reschedule(replica: _Replica) -> None:
        if replica.running:
            gap = replica.events[0][0] - replica.virtual
            replica.next_s = replica.last_s + gap / speed[replica.running]
        else:
            replica.next_s = math.inf

    initial = controller.initial(start_s)
    replicas = [_Replica(start_s, start_s, SERVING) for _ in range(initial)]
    serving = list(replicas)  # behind the load balancer (serving or hung, not yet evicted)
    desired = initial
    scale_events: list[tuple[float, int, int]] = []
    in_service_changes: list[tuple[float, int]] = [(start_s, initial)]
    timeline = Timeline()
    ticks = 0

    def launch(now_s: float) -> None:
        replicas.append(_Replica(now_s, now_s + boots.draw(), PENDING))

    retired: list[_Replica] = []

    def retire(replica: _Replica, now_s: float) -> None:
        # Out of the live list at once: a month of scaling would otherwise leave hundreds of
        # terminated instances for every tick to walk past.
        replica.state = GONE
        replica.ended_s = now_s
        replicas.remove(replica)
        retired.append(replica)

    def reconcile(now_s: float) -> None:
        active = [r for r in replicas if r.state in (PENDING, SERVING, HUNG)]
        for _ in range(desired - len(active)):
            launch(now_s)
        surplus = len(active) - desired
        # Pending launches go first (newest first), then the least-busy serving instances.
        for replica in sorted(
            (r for r in active if r.state == PENDING), key=lambda r: -r.launched_s
        ):
            if surplus <= 0:
                return
            retire(replica, now_s)
            surplus -= 1
        for replica in sorted((r for r in active if r.state == SERVING), key=lambda r: r.ongoing):
            if surplus <= 0:
                return
            replica.state = DRAINING
            replica.drain_deadline_s = now_s + mechanics.drain_timeout_s
            serving.remove(replica)
            surplus -= 1

    def control_tick(now_s: float, arrivals_in_period: int) -> None:
        nonlocal desired
        for replica in replicas:
            if replica.state in (SERVING, DRAINING):
                advance(replica, now_s)
        while failures and failures[0] <= now_s:
            failed_at = failures.pop(0)
            healthy = [r for r in serving if r.state == SERVING]
            if healthy:
                victim = max(healthy, key=lambda r: r.ongoing)
                victim.state = HUNG
                victim.hung_s = failed_at
        samples = []
        for replica in serving:
            # A hung instance publishes nothing: CloudWatch sees no datapoint from it.
            if replica.state == SERVING:
                samples.append(replica.area / period_s)
            replica.area = 0.0
        changed = evicted = False
        for replica in list(replicas):
            state = replica.state
            if state == HUNG and now_s >= replica.hung_s + mechanics.eviction_after_s:
                retire(replica, now_s)  # its requests are lost: they stay failed (inf)
                serving.remove(replica)
                changed = evicted = True
            elif state == DRAINING and (not replica.ongoing or now_s >= replica.drain_deadline_s):
                retire(replica, now_s)
            elif state == PENDING and now_s >= replica.ready_s:
                replica.state = SERVING
                replica.last_s = now_s
                serving.append(replica)
                changed = True
        wanted = controller.desired(FleetView(now_s, samples, desired))
        if wanted != desired:
            scale_events.append((now_s, desired, wanted))
            desired = wanted
            reconcile(now_s)
        elif evicted:
            reconcile(now_s)  # the group replaces an instance the load balancer evicted
        if changed or (in_service_changes and in_service_changes[-1][1] != len(serving)):
            in_service_changes.append((now_s, len(serving)))
        timeline.time_s.append(now_s)
        timeline.arrivals.append(arrivals_in_period)
        timeline.ongoing_per_instance.append(sum(samples) / len(samples) if samples else 0.0)
        timeline.desired.append(desired)
        timeline.in_service.append(len(serving))

    def idle() -> bool:
        return all(r.state == SERVING and not r.running and not r.queue for r in replicas)

    next_tick = start_s + period_s
    index = 0
    period_arrivals = 0
    while next_tick <= end_s:
        horizon = arrival[index] if index < count else math.inf
        while next_tick <= horizon and next_tick <= end_s:
            control_tick(next_tick, period_arrivals)
            ticks += 1
            period_arrivals = 0
            next_tick += period_s
            if idle():
                quiet = min(controller.quiet_until(next_tick - period_s, desired), horizon, end_s)
                if failures:
                    quiet = min(quiet, failures[0])
                skip = math.floor((quiet - next_tick) / period_s)
                if skip > 0:
                    next_tick += skip * period_s
        if index >= count or next_tick > end_s:
            break
        now_s = arrival[index]
        # The load balancer routes to the serving target with the fewest outstanding
        # requests (ALB "least outstanding requests").
        best: _Replica | None = None
        fewest = math.inf
        for replica in serving:
            # Only a replica with a token due by now has changed its outstanding count;
            # the others are brought up to date lazily, when next touched.
            if replica.next_s <= now_s and replica.state == SERVING:
                advance(replica, now_s)
            outstanding = replica.running + len(replica.queue)
            if outstanding < fewest:
                best, fewest = replica, outstanding
        if best is not None:
            if best.state == HUNG:
                best.queue.append(index)  # never served: fails with the instance
            else:
                advance(best, now_s)
                if best.running < max_seqs:
                    begin(best, index)
                    reschedule(best)
                else:
                    best.queue.append(index)
        index += 1
        period_arrivals += 1
    # Requests still in flight at the window's end finish on what is serving (no billing).
    for replica in replicas:
        if replica.state in (SERVING, DRAINING):
            advance(replica, end_s + TAIL_S)
    gpu_s = 0.0
    for replica in replicas + retired:
        until = min(replica.ended_s, end_s)
        gpu_s += max(0.0, until - max(replica.launched_s, start_s))
    return RunResult(
        config=controller.name,
        ttft_s=np.asarray(ttft, dtype=np.float64),
        e2e_s=np.asarray(e2e, dtype=np.float64),
        gpu_hours=gpu_s / 3600,
        scale_events=scale_events,
        in_service_changes=in_service_changes,
        timeline=timeline,
        ticks=ticks,
    )
