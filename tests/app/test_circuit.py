"""Circuit breaker transitions on a fake clock."""

from __future__ import annotations

from app.circuit import CircuitBreaker, CircuitState


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_consecutive_failures_open_then_a_trial_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after_s == 10
    clock.now += 9.5
    assert not breaker.allow()
    clock.now += 0.5
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()  # the one trial
    assert not breaker.allow()  # no second request while the trial runs
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow()


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=1, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED


def test_a_failed_trial_reopens_for_a_full_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    clock.now += 4
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()


def test_an_abandoned_trial_lets_another_one_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    trial = breaker.allow()
    assert trial is not None
    breaker.release_trial(trial)
    assert breaker.allow()


def test_a_request_admitted_before_the_trial_cannot_end_the_trial() -> None:
    # GIVEN a request let through while the circuit was closed, still in flight
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock)
    earlier = breaker.allow()
    assert earlier is not None
    breaker.record_failure()
    clock.now += 5
    trial = breaker.allow()
    assert trial is not None
    # WHEN the earlier request ends without news (its client left)
    breaker.release_trial(earlier)
    # THEN the trial is still the only one in flight
    assert not breaker.allow()
    # AND only the trial's own end makes room for another
    breaker.release_trial(trial)
    assert breaker.allow()


def test_a_trial_outlived_by_a_reopening_cannot_end_the_next_trial() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    first = breaker.allow()
    assert first is not None
    breaker.record_failure()  # evidence from elsewhere (the probe) re-opens the circuit
    clock.now += 5
    second = breaker.allow()
    assert second is not None and second != first
    breaker.release_trial(first)  # the first trial's client leaves, late
    assert not breaker.allow()
