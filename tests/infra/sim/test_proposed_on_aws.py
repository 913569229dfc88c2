"""The simulator's `policy-aws` controller feeds the replay what CloudWatch would see:
the Average of Demand and of QueueDepth across the in-service instances, or no datapoint."""

from __future__ import annotations

from infra.policy import FLEET_POLICY
from infra.sim.aws import ScheduledMinimum
from infra.sim.controllers import FleetView, ProposedOnAws

SATURDAY_NOON_S = 1_795_885_200.0  # 2026-11-28 12:00 America/New_York: minimum 1


def controller() -> ProposedOnAws:
    day_s = 86_400.0
    schedule = ScheduledMinimum(FLEET_POLICY, SATURDAY_NOON_S, SATURDAY_NOON_S + day_s, 0, 1)
    return ProposedOnAws(FLEET_POLICY, schedule)


def run(demand: list[float], queued: list[float], periods: int) -> list[int]:
    """Desired after each period, the group starting at one instance per `demand` entry."""
    aws, desired, seen = controller(), len(demand), []
    period_s = FLEET_POLICY.default.metric_period_s
    for tick in range(1, periods + 1):
        view = FleetView(SATURDAY_NOON_S + tick * period_s, demand, desired, queued)
        desired = aws.desired(view)
        seen.append(desired)
    return seen


def test_a_lasting_queue_across_instances_scales_out_on_its_average() -> None:
    target = FLEET_POLICY.default.target_ongoing_requests
    periods = FLEET_POLICY.default.upscale_evaluation_periods
    # demand at the target: the demand alarm stays quiet; one of two instances queues 4,
    # so the Average across them is 2, above the 1.0 threshold: one more instance
    assert run([target, target], [4.0, 0.0], periods) == [2] * (periods - 1) + [3]
    # one period short of the up delay, nothing yet
    assert run([target, target], [4.0, 0.0], periods - 1)[-1] == 2
    # without a queue, or with the queue averaging to the threshold, nothing happens
    assert run([target, target], [], periods)[-1] == 2
    assert run([target, target], [2.0, 0.0], periods)[-1] == 2


def test_the_queue_datapoint_is_the_average_not_the_sum_or_the_worst() -> None:
    aws = controller()
    target = FLEET_POLICY.default.target_ongoing_requests
    aws.desired(FleetView(SATURDAY_NOON_S, [target, target], 2, [3.0, 0.0]))
    assert aws.state.queue_datapoints[-1] == 1.5
    aws.desired(FleetView(SATURDAY_NOON_S + 10, [], 2, []))
    assert aws.state.queue_datapoints[-1] is None
