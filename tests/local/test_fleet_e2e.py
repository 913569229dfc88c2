"""The control loop end to end on real processes: HAProxy, gateways, emulated engines,
moto_server's CloudWatch and the autoscaler replaying the compiled AWS rules.

One fleet for the module (tests/local/conftest.py); the burst runs first and leaves the
fleet at its floor, where the kill test starts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest

from infra.local.fleet import boot_delay_s
from infra.local.haproxy import HEALTH_INTERVAL_S, HEALTHY_THRESHOLD, HaproxyConfig
from infra.local.load import Outcome, RequestSpec, closed_loop
from infra.policy import FLEET_POLICY
from infra.policy.loader import load_policy
from tests.local.conftest import POLICY, SPEED, RunningFleet

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

MODEL = "finsight-tiny"
# 26 clients on 2 replicas: 13 sequences per instance against a target of 10, each gateway
# running 12 and queueing 1 (room for 16): the scale-out alarm breaches, nothing is shed.
BURST_CLIENTS = 26
BURST = RequestSpec(prompt_tokens=64, output_tokens=256)
# Long streams during the scale-in: demand ~1 per instance, under the scale-in point.
TAIL_CLIENTS = 3
TAIL = RequestSpec(prompt_tokens=16, output_tokens=600)


class Timeline:
    """Samples the fleet's status in a thread, for the figures and the assertions."""

    def __init__(self, fleet: RunningFleet) -> None:
        self.fleet = fleet
        self.started = time.monotonic()
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self.started, self.fleet.status()))
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def first(self, condition: Any) -> float | None:
        return next((t for t, s in self.samples if condition(s)), None)

    @property
    def latest(self) -> dict[str, Any]:
        return self.samples[-1][1] if self.samples else self.fleet.status()


def tally(outcomes: list[Outcome]) -> dict[str, int]:
    counts = Counter(
        "ok" if o.complete else f"status {o.status}" if o.status else (o.error or "error")
        for o in outcomes
    )
    return dict(counts)


def test_burst_scales_out_spreads_and_drains_back_without_loss(
    local_fleet: RunningFleet, figures: dict[str, Any]
) -> None:
    policy = load_policy(POLICY, FLEET_POLICY)
    config = policy.default
    period_s = config.metric_period_s
    # The up delay, the alarm's next evaluation and the scaled boot (the engine's load, then
    # HAProxy's `rise` checks), plus 5 s for process starts on two busy cores.
    scale_out_bound_s = (
        (config.upscale_delay_s + 2 * period_s + boot_delay_s("emulated")) / SPEED
        + HEALTHY_THRESHOLD * HEALTH_INTERVAL_S / SPEED
        + 5.0
    )
    before = local_fleet.status()
    assert before["desired"] == 2 and before["in_service"] == 2
    original = {r["instance_id"] for r in before["replicas"]}
    cpu_before = {r["instance_id"]: r["cpu_s"] for r in before["replicas"]}

    # GIVEN two replicas at the floor, WHEN a burst holds demand above target
    timeline = Timeline(local_fleet)

    def third_serving() -> bool:
        latest = timeline.latest
        fresh = [r for r in latest["replicas"] if r["instance_id"] not in original]
        return any(r["state"] == "in service" and r["served"] >= 3 for r in fresh)

    burst = asyncio.run(
        closed_loop(
            local_fleet.url,
            local_fleet.tenant.key,
            MODEL,
            clients=BURST_CLIENTS,
            duration_s=scale_out_bound_s + 10,
            spec=BURST,
            stream_every=4,
            stop_when=third_serving,
        )
    )
    burst_s = time.monotonic() - timeline.started
    scaled_at = timeline.first(lambda s: s["desired"] >= 3)
    in_service_at = timeline.first(lambda s: s["in_service"] >= 3)
    after_burst = timeline.latest

    # THEN the fleet grew within the up delay plus the scaled boot, and the new replica served
    assert scaled_at is not None, f"never scaled out: {after_burst}"
    assert in_service_at is not None and in_service_at <= scale_out_bound_s, (
        f"3rd replica in service after {in_service_at} s, bound {scale_out_bound_s:.1f} s"
    )
    fresh = [r for r in after_burst["replicas"] if r["instance_id"] not in original]
    assert any(r["served"] > 0 for r in fresh), f"the new replica got nothing: {fresh}"
    # AND nothing was refused while the queues had room (streams included)
    assert tally(burst) == {"ok": len(burst)}, tally(burst)
    assert any(o.spec.stream for o in burst)

    # WHEN the burst ends, with long streams still in flight during the scale-in
    def back_at_floor(status: dict[str, Any]) -> bool:
        states = [r["state"] for r in status["replicas"]]
        return status["desired"] == 2 and states.count("in service") == 2 and len(states) == 2

    drained_before = after_burst["terminated"]
    tail = asyncio.run(
        closed_loop(
            local_fleet.url,
            local_fleet.tenant.key,
            MODEL,
            clients=TAIL_CLIENTS,
            duration_s=40,
            spec=TAIL,
            stream_every=1,
            stop_when=lambda: back_at_floor(timeline.latest),
        )
    )
    local_fleet.wait_for(back_at_floor, 30, "back at the floor of 2")
    timeline.stop()
    final = local_fleet.status()

    # THEN it scaled back to the floor through drains, with no request lost
    assert tally(tail) == {"ok": len(tail)}, tally(tail)
    assert final["terminated"] > drained_before
    drained = [d for d in final["decisions"] if d["desired_to"] < d["desired_from"]]
    assert drained, final["decisions"]
    # AND each drained gateway completed its lifecycle action itself (the real drain path)
    completed = [
        path.parent.name
        for path in local_fleet.state_dir.glob("i-*/gateway.log")
        if "lifecycle action completed" in path.read_text(errors="replace")
    ]
    assert len(completed) >= final["terminated"], completed
    figures.update(
        {
            "speed": SPEED,
            "scale_out_decision_after_s": round(scaled_at, 1),
            "third_in_service_after_s": round(in_service_at, 1),
            "scale_out_bound_s": round(scale_out_bound_s, 1),
            "burst_requests": tally(burst),
            "tail_streams": tally(tail),
            "served_by_new_replicas": sum(r["served"] for r in fresh),
            "drained_replicas": final["terminated"] - drained_before,
            # Memory and CPU of one replica (gateway + emulated engine) over the burst.
            "replica_rss_mib": [r["rss_mib"] for r in after_burst["replicas"]],
            "replica_cpu_percent_in_burst": [
                round(100 * (r["cpu_s"] - cpu_before.get(r["instance_id"], 0.0)) / burst_s)
                for r in after_burst["replicas"]
                if r["instance_id"] in original
            ],
            "decisions": [f"{d['desired_from']}->{d['desired_to']}: {d['why']}" for d in drained],
        }
    )


def test_killed_replica_is_taken_out_and_replaced(
    local_fleet: RunningFleet, figures: dict[str, Any]
) -> None:
    haproxy = HaproxyConfig(port=0, slots=1, speed=SPEED, socket_path=local_fleet.state_dir)
    local_fleet.wait_for(lambda s: s["in_service"] == 2 and len(s["replicas"]) == 2, 30, "floor")
    before = local_fleet.status()
    victim = before["replicas"][0]

    # GIVEN a burst under the target (no scale-out), WHEN one replica dies mid-burst
    killed: dict[str, float] = {}

    def kill_soon() -> None:
        time.sleep(2.0)
        held = local_fleet.status()["replicas"]
        killed["held"] = next(
            r["running"] + r["queued"] for r in held if r["instance_id"] == victim["instance_id"]
        )
        for pid in (victim["gateway_pid"], victim["engine_pid"]):
            os.killpg(pid, signal.SIGKILL)  # as an instance's hardware fault
        killed["at"] = time.monotonic()

    killer = threading.Thread(target=kill_soon)
    timeline = Timeline(local_fleet)
    started = time.monotonic()
    killer.start()
    outcomes = asyncio.run(
        closed_loop(
            local_fleet.url,
            local_fleet.tenant.key,
            MODEL,
            clients=12,
            duration_s=2.0 + haproxy.takeout_s + 3.0,
            spec=BURST,
            stream_every=3,
        )
    )
    killer.join()

    # THEN HAProxy takes it out within its health-check thresholds, and the autoscaler
    # replaces it (the ASG's ELB health check)
    def replaced(status: dict[str, Any]) -> bool:
        return status["in_service"] == 2 and status["replaced"] > before["replaced"]

    local_fleet.wait_for(replaced, 40, "a replacement in service")
    time.sleep(0.5)  # for the timeline to sample it too
    timeline.stop()
    killed_at = killed["at"] - timeline.started

    def out_of_rotation(status: dict[str, Any]) -> bool:
        rows = [r for r in status["replicas"] if r["instance_id"] == victim["instance_id"]]
        return not rows or rows[0]["load_balancer"].startswith(("DOWN", "MAINT"))

    out_at = next((t for t, s in timeline.samples if t >= killed_at and out_of_rotation(s)), None)
    assert out_at is not None
    out_after = out_at - killed_at
    assert out_after <= haproxy.takeout_s + 0.5, (out_after, haproxy.takeout_s)
    replaced_at = next(t for t, s in timeline.samples if t >= killed_at and replaced(s))
    replaced_after = replaced_at - killed_at
    # AND its clients got errors only for the requests that replica held
    failures = [o for o in outcomes if not o.complete]
    failed_late = [o for o in failures if started + o.sent_at_s > killed["at"] + 0.5]
    assert len(failures) <= killed["held"] + 1, (tally(outcomes), killed)
    assert not failed_late, [(o.sent_at_s, o.status, o.error) for o in failed_late]
    figures.update(
        {
            "held_by_killed_replica": killed["held"],
            "failed_requests": len(failures),
            "requests": tally(outcomes),
            "taken_out_within_s": round(out_after, 1),
            "takeout_bound_s": round(haproxy.takeout_s, 1),
            "replacement_in_service_after_s": round(replaced_after, 1),
        }
    )
