"""The AWS mechanics around the controllers: boot times, late scheduled actions, health
checks, draining and the price; every figure a setting, with where it comes from."""

from __future__ import annotations

import bisect
import datetime as dt
import random
from dataclasses import dataclass

from infra.policy import FleetPolicy, effective_schedule
from infra.policy.cold_start import BootPhase, boot_timeline, draw_time_to_ready_s


@dataclass(frozen=True)
class AwsMechanics:
    """Settings of the simulated Auto Scaling group, load balancer and price."""

    # EC2 Auto Scaling documents that scheduled actions may start up to 2 minutes late.
    scheduled_action_max_late_s: float = 120.0
    # The target group's check (infra/stack/load_balancer.py): every 15 s, 10 s timeout,
    # unhealthy after 2.
    health_check_interval_s: float = 15.0
    health_check_timeout_s: float = 10.0
    unhealthy_threshold: int = 2
    # How long a scaled-in instance may drain in-flight requests before it is terminated
    # (the target group's deregistration delay / the lifecycle hook's timeout).
    drain_timeout_s: float = 300.0
    warm_pool: bool = False
    # g5.xlarge on-demand, us-east-1, Linux (AWS price list, 2025).
    hourly_usd: float = 1.006
    # Instants (epoch seconds) at which a serving instance hangs: it keeps its requests and
    # fails health checks until the load balancer evicts it and the group replaces it.
    instance_failures_s: tuple[float, ...] = ()

    @property
    def eviction_after_s(self) -> float:
        """From a hang to the target being marked unhealthy and the instance replaced."""
        return self.unhealthy_threshold * self.health_check_interval_s + self.health_check_timeout_s


class BootTimes:
    """Draws launch-to-serving times, phase by phase, from the cold-start timeline."""

    def __init__(self, seed: int, warm_pool: bool) -> None:
        self._random = random.Random(seed)
        # A warm-pool start reads its own timeline (infra/policy/cold_start.py), as the stack.
        self._timeline: tuple[BootPhase, ...] = boot_timeline(warm_pool=warm_pool)

    def draw(self) -> float:
        return draw_time_to_ready_s(self._random, self._timeline)

    @property
    def worst_s(self) -> float:
        return sum(phase.worst_s for phase in self._timeline)


class ScheduledMinimum:
    """The group's minimum over time, as the scheduled actions set it (each a little late)."""

    def __init__(
        self, policy: FleetPolicy, start_s: float, end_s: float, max_late_s: float, seed: int
    ) -> None:
        zone = policy.schedule.zone
        first = dt.datetime.fromtimestamp(start_s, zone).date() - dt.timedelta(days=1)
        days = int((end_s - start_s) // 86_400) + 3
        draw = random.Random(seed)
        self._times: list[float] = []
        self._minimums: list[int] = []
        for change in effective_schedule(policy, first, days):
            late = draw.uniform(0, max_late_s) if max_late_s > 0 else 0.0
            self._times.append(change.local_time.timestamp() + late)
            self._minimums.append(change.min_replicas)
        self._default = policy.default.min_replicas

    def at(self, now_s: float) -> int:
        index = bisect.bisect_right(self._times, now_s) - 1
        return self._minimums[index] if index >= 0 else self._default

    def next_change_s(self, now_s: float) -> float:
        index = bisect.bisect_right(self._times, now_s)
        return self._times[index] if index < len(self._times) else float("inf")
