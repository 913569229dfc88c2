"""The discrete-event loop: one trace, one controller, one simulated Auto Scaling group.

Each replica is the deployed instance: the gateway's fair queue (`app.fair_queue`, the
class the gateway runs) in front of vLLM. The gateway lets vLLM run at most the policy's
`max_running` sequences, queues more up to its bounds, and sheds a queued request once it
has waited `max_queue_wait_s`; refused clients retry as the OpenAI SDK does
(`infra.sim.gateway`). vLLM itself runs at most the replica model's `max_num_seqs` and
holds the rest of what the gateway sends in its own FIFO queue.

Speed matters (a month of traffic for every config in under a minute), so:
- vLLM is a processor-sharing server tracked in *virtual time* (the service each running
  sequence has received): an arrival or a completion costs O(log n), and a replica is only
  advanced when something asks about it (an arrival, a deadline, a tick);
- queued requests' deadlines sit in one heap, popped in time order between arrivals;
  entries whose request started (or left) meanwhile are skipped when they come up;
- the controller, the group and the load balancer's health checks act on control ticks
  of one metric period (10 s), not Ray's 0.1 s: delays are multiples of the period, so a
  decision lands at most one period late, and a booted instance starts serving at the
  first tick after its boot completes (health checks are periodic anyway);
- idle stretches (no request anywhere, controller settled) are skipped to the next
  arrival or the next scheduled change.
Requests themselves are exact: arrival, queueing, shedding, retries, first token and
completion times.
"""

from __future__ import annotations

import heapq
import math
import random
from array import array
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.fair_queue import Entry, FairQueue
from infra.policy import FLEET_POLICY
from infra.sim.aws import AwsMechanics, BootTimes
from infra.sim.controllers import Controller, FleetView
from infra.sim.gateway import (
    REFUSAL_NAMES,
    REFUSAL_OF_REASON,
    REFUSED_DEADLINE,
    REFUSED_NO_TARGET,
    GatewayModel,
    sdk_retry_delay_s,
)
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
        "gateway",
        "hung_s",
        "last_s",
        "launched_s",
        "lost",
        "next_s",
        "queue_area",
        "ready_s",
        "running",
        "state",
        "virtual",
        "waiting",
    )

    def __init__(
        self, launched_s: float, ready_s: float, state: int, gateway: FairQueue[int]
    ) -> None:
        self.state = state
        self.launched_s = launched_s
        self.ready_s = ready_s
        self.ended_s = math.inf
        self.hung_s = math.inf
        self.drain_deadline_s = math.inf
        self.gateway = gateway
        self.virtual = 0.0  # service each sequence running in vLLM has received so far
        self.last_s = ready_s
        self.running = 0  # sequences vLLM runs
        self.waiting: deque[int] = deque()  # what the gateway sent beyond vLLM's max_num_seqs
        self.lost = 0  # requests routed to it while hung: never answered
        # (virtual time, 2 x request + kind): kind 0 = first token, 1 = last token.
        self.events: list[tuple[float, int]] = []
        # Integrals since the last metric sample of what the gateway publishes: demand
        # (running + queued at the gateway) and QueueDepth (queued at the gateway plus
        # waiting in vLLM).
        self.area = 0.0
        self.queue_area = 0.0
        self.next_s = math.inf  # when its next first or last token is due

    @property
    def outstanding(self) -> int:
        """Requests the load balancer counts as open on this target."""
        return self.gateway.demand + self.lost


@dataclass
class Timeline:
    """One row per processed control tick (skipped idle stretches repeat the last row).

    Typed arrays, not lists: a year of ticks for every config stays in tens of megabytes.
    """

    time_s: array[float] = field(default_factory=lambda: array("d"))
    arrivals: array[int] = field(default_factory=lambda: array("l"))
    # Published demand (running + queued) per serving instance: the alarms' Average.
    ongoing_per_instance: array[float] = field(default_factory=lambda: array("d"))
    queue_per_instance: array[float] = field(default_factory=lambda: array("d"))
    desired: array[int] = field(default_factory=lambda: array("l"))
    in_service: array[int] = field(default_factory=lambda: array("l"))


@dataclass
class RunResult:
    """Everything one simulated run produced, before summarising.

    Latencies are per request and counted from its first send, retries included.
    """

    config: str
    ttft_s: FloatArray  # inf when it failed (shed, evicted, never served)
    e2e_s: FloatArray
    gpu_hours: float
    scale_events: list[tuple[float, int, int]]  # (time, old desired, new desired)
    in_service_changes: list[tuple[float, int]]
    timeline: Timeline
    ticks: int
    # From the first send until vLLM starts the request (gateway queue, retries' waits and
    # vLLM's own queue), inf when it never started.
    queue_wait_s: FloatArray = field(default_factory=lambda: np.zeros(0))
    # Why the client finally got an error (infra.sim.gateway REFUSED_*), 0 when it did not.
    refused: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    # Every refused attempt, retried or not, by REFUSAL_NAMES.
    refusals: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    # When the client got its final answer (last token or last refusal), epoch seconds;
    # inf when it never got one (lost with a failed instance). The SLO's burn-rate alarms
    # count a request in the minute it settled, as the gateway logs it when it ends.
    settled_s: FloatArray = field(default_factory=lambda: np.zeros(0))


def simulate(
    trace: Trace,
    controller: Controller,
    model: ReplicaModel,
    mechanics: AwsMechanics,
    seed: int,
    period_s: float = 10.0,
    gateway: GatewayModel | None = None,
) -> RunResult:
    """Replay `trace`; `gateway` defaults to the deployed policy's queue."""
    gateway = gateway if gateway is not None else GatewayModel.from_policy(FLEET_POLICY)
    arrival = trace.arrival_s.tolist()
    prefill = (trace.prompt_tokens / model.prefill_speedup).tolist()
    output = trace.output_tokens.astype(np.float64).tolist()
    tenant_of = [trace.tenants[t] for t in trace.tenant.tolist()]
    count = len(arrival)
    ttft = [math.inf] * count
    e2e = [math.inf] * count
    started = [math.inf] * count
    settled = [math.inf] * count
    refused = bytearray(count)
    attempts = bytearray(count)  # retries each request has made
    entries: list[Entry[int] | None] = [None] * count  # its attempt at a gateway, if any
    placed: list[_Replica | None] = [None] * count
    refusals = dict.fromkeys(REFUSAL_NAMES.values(), 0)
    retry_count = 0
    speed = model.speed_table()
    max_seqs = model.max_num_seqs
    limits = gateway.limits
    tenant_cap = gateway.tenant_max_running
    max_wait_s = gateway.max_queue_wait_s
    max_retries = gateway.client_max_retries
    jitter = random.Random(f"sdk-retries-{seed}").random
    boots = BootTimes(seed, mechanics.warm_pool)
    start_s, end_s = trace.start_s, trace.end_s
    failures = sorted(mechanics.instance_failures_s)
    heappush, heappop = heapq.heappush, heapq.heappop
    retries: list[tuple[float, int]] = []  # (when the client sends again, request)
    deadlines: list[tuple[float, int, int]] = []  # (shed at, request, its attempt)

    def begin(replica: _Replica, request: int, now_s: float) -> None:
        replica.running += 1
        started[request] = now_s - arrival[request]
        first = replica.virtual + prefill[request]
        heappush(replica.events, (first, 2 * request))
        heappush(replica.events, (first + output[request], 2 * request + 1))

    def to_engine(replica: _Replica, request: int, now_s: float) -> None:
        """The gateway sends a request on to vLLM, which queues it when its batch is full."""
        if replica.running < max_seqs:
            begin(replica, request, now_s)
        else:
            replica.waiting.append(request)

    def advance(replica: _Replica, now_s: float) -> None:
        """Bring a replica to `now_s`, recording every first and last token on the way."""
        if not replica.running:  # idle: nothing runs, so nothing waits either
            replica.last_s = now_s
            replica.next_s = math.inf
            return
        events = replica.events
        queue = replica.gateway
        waiting = replica.waiting
        while replica.running:
            rate = speed[replica.running]
            next_virtual = events[0][0]
            at = replica.last_s + (next_virtual - replica.virtual) / rate
            if at > now_s:
                break
            span = at - replica.last_s
            # `queue.demand`, read as its two counters: a property call here costs a
            # month's run seconds.
            replica.area += (queue.running + queue.queued) * span
            replica.queue_area += (queue.queued + len(waiting)) * span
            replica.virtual = next_virtual
            replica.last_s = at
            while events and events[0][0] <= next_virtual + EPSILON:
                code = heappop(events)[1]
                request = code >> 1
                if code & 1:
                    e2e[request] = at - arrival[request]
                    settled[request] = at
                    replica.running -= 1
                    if waiting:
                        begin(replica, waiting.popleft(), at)
                    entry = entries[request]
                    entries[request] = None
                    if entry is not None:
                        for dispatched in queue.finish(entry):
                            to_engine(replica, dispatched.item, at)
                else:
                    ttft[request] = at - arrival[request]
        if replica.running:
            replica.virtual += (now_s - replica.last_s) * speed[replica.running]
        span = now_s - replica.last_s
        replica.area += (queue.running + queue.queued) * span
        replica.queue_area += (queue.queued + len(waiting)) * span
        replica.last_s = now_s
        reschedule(replica)

    def reschedule(replica: _Replica) -> None:
        if replica.running:
            gap = replica.events[0][0] - replica.virtual
            replica.next_s = replica.last_s + gap / speed[replica.running]
        else:
            replica.next_s = math.inf

    def refuse(request: int, now_s: float, reason: int, retry_after_s: float | None) -> None:
        """The client got an error: it sends again later, or gives up after its retries."""
        nonlocal retry_count
        refusals[REFUSAL_NAMES[reason]] += 1
        taken = attempts[request]
        if taken < max_retries:
            attempts[request] = taken + 1
            retry_count += 1
            heappush(retries, (now_s + sdk_retry_delay_s(taken, retry_after_s, jitter), request))
        else:
            refused[request] = reason
            settled[request] = now_s

    def send(request: int, now_s: float) -> None:
        # The load balancer routes to the serving target with the fewest outstanding
        # requests (ALB "least outstanding requests"): at the gateway, running + queued.
        best: _Replica | None = None
        fewest = math.inf
        for replica in serving:
            # Only a replica with a token due by now has changed its outstanding count;
            # the others are brought up to date lazily, when next touched.
            if replica.next_s <= now_s and replica.state == SERVING:
                advance(replica, now_s)
            queue = replica.gateway
            outstanding = queue.running + queue.queued + replica.lost
            if outstanding < fewest:
                best, fewest = replica, outstanding
        if best is None:
            # No healthy target: the load balancer answers 503 itself, with no Retry-After.
            refuse(request, now_s, REFUSED_NO_TARGET, None)
            return
        if best.state == HUNG:
            best.lost += 1  # never answered: fails with the instance
            return
        advance(best, now_s)
        admitted = best.gateway.offer(request, tenant_of[request], 1, tenant_cap)
        if isinstance(admitted, str):
            refuse(request, now_s, REFUSAL_OF_REASON[admitted], gateway.retry_after_s)
            return
        entries[request] = admitted
        placed[request] = best
        if admitted.running:
            to_engine(best, request, now_s)
            reschedule(best)
        else:
            heappush(deadlines, (now_s + max_wait_s, request, attempts[request]))

    def stale(deadline: tuple[float, int, int]) -> bool:
        """A deadline whose attempt already started, left, or was replaced by a retry."""
        _, request, attempt = deadline
        entry = entries[request]
        return entry is None or entry.running or attempts[request] != attempt

    def expire(request: int, now_s: float) -> None:
        """A queued request waited `max_queue_wait_s`: 503 + Retry-After, its place freed."""
        replica = placed[request]
        entry = entries[request]
        assert replica is not None and entry is not None
        if replica.state in (HUNG, GONE):
            return  # a hung instance answers nothing; a terminated one cut the connection
        advance(replica, now_s)
        if entries[request] is not entry or entry.running:
            # Bringing the replica up to date started it (a slot freed since its last
            # update), and perhaps already finished it: it was not waiting at its deadline.
            return
        entries[request] = None
        for dispatched in replica.gateway.withdraw(entry):
            to_engine(replica, dispatched.item, now_s)
        reschedule(replica)
        refuse(request, now_s, REFUSED_DEADLINE, gateway.retry_after_s)

    def new_replica(launched_s: float, ready_s: float, state: int) -> _Replica:
        return _Replica(launched_s, ready_s, state, FairQueue(limits))

    initial = controller.initial(start_s)
    replicas = [new_replica(start_s, start_s, SERVING) for _ in range(initial)]
    serving = list(replicas)  # behind the load balancer (serving or hung, not yet evicted)
    desired = initial
    scale_events: list[tuple[float, int, int]] = []
    in_service_changes: list[tuple[float, int]] = [(start_s, initial)]
    timeline = Timeline()
    ticks = 0

    def launch(now_s: float) -> None:
        replicas.append(new_replica(now_s, now_s + boots.draw(), PENDING))

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
        for replica in sorted(
            (r for r in active if r.state == SERVING), key=lambda r: r.outstanding
        ):
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
                victim = max(healthy, key=lambda r: r.outstanding)
                victim.state = HUNG
                victim.hung_s = failed_at
        samples: list[float] = []
        queues: list[float] = []
        for replica in serving:
            # Only a serving instance publishes (the gateway stays silent until ready and
            # while draining); a hung one publishes nothing either: CloudWatch sees no
            # datapoint from it.
            if replica.state == SERVING:
                samples.append(replica.area / period_s)
                queues.append(replica.queue_area / period_s)
            replica.area = replica.queue_area = 0.0
        changed = evicted = False
        for replica in list(replicas):
            state = replica.state
            if state == HUNG and now_s >= replica.hung_s + mechanics.eviction_after_s:
                retire(replica, now_s)  # its requests are lost: they stay failed (inf)
                serving.remove(replica)
                changed = evicted = True
            elif state == DRAINING and (
                not replica.gateway.demand or now_s >= replica.drain_deadline_s
            ):
                retire(replica, now_s)
            elif state == PENDING and now_s >= replica.ready_s:
                replica.state = SERVING
                replica.last_s = now_s
                replica.area = replica.queue_area = 0.0
                serving.append(replica)
                changed = True
        wanted = controller.desired(FleetView(now_s, samples, desired, queues))
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
        timeline.queue_per_instance.append(sum(queues) / len(queues) if queues else 0.0)
        timeline.desired.append(desired)
        timeline.in_service.append(len(serving))

    def idle() -> bool:
        return all(r.state == SERVING and not r.gateway.demand for r in replicas)

    next_tick = start_s + period_s
    index = 0
    period_arrivals = 0
    while next_tick <= end_s:
        while deadlines and stale(deadlines[0]):
            heappop(deadlines)
        # The next event: a new request, a client's retry, or a queued request's deadline.
        horizon = arrival[index] if index < count else math.inf
        if retries and retries[0][0] < horizon:
            horizon = retries[0][0]
        if deadlines and deadlines[0][0] < horizon:
            horizon = deadlines[0][0]
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
        if horizon == math.inf or next_tick > end_s:
            break
        if deadlines and deadlines[0][0] == horizon:
            if not stale(deadlines[0]):  # a tick in between may have started it
                expire(deadlines[0][1], horizon)
            heappop(deadlines)
        elif retries and retries[0][0] == horizon:
            send(heappop(retries)[1], horizon)
        else:
            send(index, horizon)
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
        queue_wait_s=np.asarray(started, dtype=np.float64),
        refused=np.frombuffer(bytes(refused), dtype=np.int8).copy(),
        refusals=refusals,
        retries=retry_count,
        settled_s=np.asarray(settled, dtype=np.float64),
    )
