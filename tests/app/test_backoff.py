"""The shared back-off: doubles per failure, capped, and never overflows."""

from __future__ import annotations

from app.backoff import backoff_delay_s


def test_doubles_per_failure_up_to_the_cap() -> None:
    delays = [backoff_delay_s(10, failures, 300) for failures in range(7)]
    assert delays == [10, 20, 40, 80, 160, 300, 300]


def test_any_number_of_failures_is_the_cap_not_an_overflow() -> None:
    for failures in (1_023, 1_024, 5_000, 10**9):
        assert backoff_delay_s(0.05, failures, 60) == 60
