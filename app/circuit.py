"""Circuit breaker on the upstream: consecutive connect failures or timeouts open it.

Closed: requests flow. Open: requests fail fast until the cool-down ends. Half-open: one
trial request is let through; its success closes the circuit, its failure re-opens it.
Every request let through holds a `Permit`, and only the trial's own permit can end the
trial: a request admitted earlier that ends without news (its client left) cannot make
room for a second trial.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass


class CircuitState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to go upstream: an ordinary one (trial 0), or the half-open trial numbered `trial`."""

    trial: int = 0


PASS = Permit()  # the permit of every request let through while the circuit is closed


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._state = CircuitState.CLOSED
        self._trial = 0  # the number of the trial in flight; 0 for none
        self._trials = 0

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self._cooldown_s:
            return CircuitState.HALF_OPEN
        return self._state

    def allow(self) -> Permit | None:
        """May a request go upstream now? None if not. In half-open, one trial at a time."""
        state = self.state
        if state is CircuitState.CLOSED:
            return PASS
        if state is CircuitState.OPEN or self._trial:
            return None
        self._state = CircuitState.HALF_OPEN
        self._trials += 1
        self._trial = self._trials
        return Permit(self._trial)

    def record_success(self, permit: Permit = PASS) -> None:
        """The upstream answered (any request, or the probe): close the circuit."""
        self._failures = 0
        self._trial = 0
        self._state = CircuitState.CLOSED

    def record_failure(self, permit: Permit = PASS) -> None:
        """Evidence that the upstream is unwell (the permit's holder, or the probe)."""
        self.release_trial(permit)
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN or self._failures >= self._threshold:
            self._state = CircuitState.OPEN
            self._opened_at = self._clock()
            self._trial = 0  # a trial still in flight no longer decides anything

    def release_trial(self, permit: Permit) -> None:
        """A request ended without telling anything about the upstream (its client left, say);
        if it was the trial, another may go."""
        if permit.trial and permit.trial == self._trial:
            self._trial = 0

    @property
    def retry_after_s(self) -> int:
        remaining = self._cooldown_s - (self._clock() - self._opened_at)
        return max(1, int(remaining + 0.999))
