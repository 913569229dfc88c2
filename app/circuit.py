"""Circuit breaker on the upstream: consecutive connect failures or timeouts open it.

Closed: requests flow. Open: requests fail fast until the cool-down ends. Half-open: one
trial request is let through; its success closes the circuit, its failure re-opens it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class CircuitState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


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
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self._cooldown_s:
            return CircuitState.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May a request go upstream now? In half-open, only one trial at a time."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN or self._trial_in_flight:
            return False
        self._state = CircuitState.HALF_OPEN
        self._trial_in_flight = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._trial_in_flight = False
        self._state = CircuitState.CLOSED

    def record_failure(self) -> None:
        self._trial_in_flight = False
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN or self._failures >= self._threshold:
            self._state = CircuitState.OPEN
            self._opened_at = self._clock()

    def release_trial(self) -> None:
        """A trial that ended without telling us anything about the upstream (client left)."""
        self._trial_in_flight = False

    @property
    def retry_after_s(self) -> int:
        remaining = self._cooldown_s - (self._clock() - self._opened_at)
        return max(1, int(remaining + 0.999))
