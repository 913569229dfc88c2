"""The service-level objective: what a tenant feels, judged the same way everywhere.

One `Slo` is read by the simulator (each simulated request within both targets or not),
the gateway (each real request counted as a hit or a miss on its access line, see
`contract.SLO_MISS_METRIC`) and the stack (the burn-rate alarms and the dashboard's
error budget). A request counts against the objective when it is late (time to first
token or end to end over its tenant's target), failed (5xx) or shed (503, or 429 for a
tenant's share of the queue); a client's own mistake (another 4xx) is not counted.

The burn-rate alarms follow the multiwindow, multi-burn-rate method of Google's SRE
workbook ("Alerting on SLOs"): an alarm fires when both a long window and a short one
(a twelfth of it, so the alarm clears soon after the problem ends) burn the error budget
at least `burn_rate` times faster than the objective allows. `burn_rate` is the rate at
which the long window alone would spend `budget_share` of the whole window's budget:

    burn_rate = budget_share * window_hours / long_window_hours

With the defaults (99 % over 28 days = 672 h): 2 % of the budget in 1 h is a burn of
13.44 (pages: the budget would be gone in two days), 5 % in 6 h is 5.6 (a ticket: gone
in five). A window with fewer than `min_requests` counted requests never alarms, so one
failed request at night is not a page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from contract import TENANT_ID_PATTERN
from infra.policy.errors import PolicyError, check_whole

MAX_TTFT_S = 600.0
MAX_E2E_S = 3600.0
MAX_WINDOW_DAYS = 90
SECONDS_PER_HOUR = 3600


class Severity(StrEnum):
    PAGE = "page"
    TICKET = "ticket"


@dataclass(frozen=True)
class BurnRateWindow:
    """One multiwindow burn-rate alarm, derived from the objective."""

    name: str  # "fast" or "slow", part of the alarm's name
    severity: Severity
    long_window_s: int
    short_window_s: int
    budget_share: float  # of the whole window's error budget, spent in the long window
    burn_rate: float  # the threshold, in multiples of the budget's even spend

    def error_ratio(self, error_budget: float) -> float:
        """The share of requests missing that this burn rate means: 13.44 x 1 % = 13.44 %."""
        return self.burn_rate * error_budget


# (name, severity, long window, short window, share of the budget spent in the long window)
BURN_RATE_WINDOWS = (
    ("fast", Severity.PAGE, 1 * SECONDS_PER_HOUR, 5 * 60, 0.02),
    ("slow", Severity.TICKET, 6 * SECONDS_PER_HOUR, 30 * 60, 0.05),
)


@dataclass(frozen=True)
class TenantSlo:
    """A tenant named in the SLO: it gets burn-rate alarms of its own, and its own targets
    where its contract differs (a target left out is the SLO's default)."""

    tenant: str
    ttft_s: float | None = None
    e2e_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tenant, str) or not re.fullmatch(TENANT_ID_PATTERN, self.tenant):
            raise PolicyError(
                "tenant",
                f"must be a tenant id (letters, digits, '_', '.', '-', at most 63, starting "
                f"with a letter or digit), got {self.tenant!r}",
            )
        if self.ttft_s is not None:
            _seconds("ttft_s", self.ttft_s, MAX_TTFT_S)
        if self.e2e_s is not None:
            _seconds("e2e_s", self.e2e_s, MAX_E2E_S)


@dataclass(frozen=True)
class Slo:
    # Targets: what one replica gives the largest request the gateway admits (a
    # 6,144-token prompt, a 1,024-token answer) in a full batch, plus about 1.5 s of
    # queueing: prefill 6,144 / 100 = 61 decode units at ~17 units/s (12 sequences) is
    # 3.6 s, so 5 s to the first token; 61 + 1,024 units is 64 s, so 65 s end to end. A
    # tighter target would be missed by long prompts on an idle fleet, whatever the
    # autoscaler does; a looser one would hide queueing, which is what scaling controls.
    # `tests/infra/sim/test_slo_defaults.py` recomputes both from the replica model and the
    # scenario.
    ttft_s: float = 5.0
    e2e_s: float = 65.0
    # Share of counted requests that must meet their targets over `window_days`.
    objective: float = 0.99
    window_days: int = 28
    # A burn-rate window with fewer counted requests than this never alarms.
    min_requests: int = 20
    tenants: tuple[TenantSlo, ...] = ()

    def __post_init__(self) -> None:
        _seconds("ttft_s", self.ttft_s, MAX_TTFT_S)
        _seconds("e2e_s", self.e2e_s, MAX_E2E_S)
        if isinstance(self.objective, bool) or not isinstance(self.objective, int | float):
            raise PolicyError("objective", f"must be a number, got {self.objective!r}")
        if not 0.5 <= self.objective <= 0.9999:
            raise PolicyError("objective", f"must be in [0.5, 0.9999], got {self.objective}")
        check_whole("window_days", self.window_days, 1, MAX_WINDOW_DAYS)
        check_whole("min_requests", self.min_requests, 1, 100_000)
        seen: set[str] = set()
        for index, entry in enumerate(self.tenants):
            if not isinstance(entry, TenantSlo):
                raise PolicyError(f"tenants[{index}]", f"must be a tenant entry, got {entry!r}")
            if entry.tenant in seen:
                raise PolicyError(f"tenants[{index}].tenant", f"{entry.tenant!r} is listed twice")
            seen.add(entry.tenant)
            ttft_s, e2e_s = self.targets(entry.tenant)
            if ttft_s > e2e_s:
                raise PolicyError(
                    f"tenants[{index}]",
                    f"ttft_s ({ttft_s:g}) cannot exceed e2e_s ({e2e_s:g}) for {entry.tenant!r}",
                )
        if self.ttft_s > self.e2e_s:
            raise PolicyError(
                "ttft_s", f"cannot exceed e2e_s ({self.e2e_s:g}), got {self.ttft_s:g}"
            )
        for name, _, long_s, _, _ in BURN_RATE_WINDOWS:
            if self.window(name).error_ratio(self.error_budget) > 1:
                raise PolicyError(
                    "objective",
                    f"{self.objective} leaves a {self.error_budget:.2%} budget: the {name} "
                    f"burn-rate alarm would need more than every request of {long_s // 3600} h "
                    "to miss; use a higher objective or a shorter window_days",
                )

    @property
    def error_budget(self) -> float:
        """The share of counted requests that may miss: 0.01 for 99 %."""
        return round(1 - self.objective, 10)

    @property
    def percentile(self) -> float:
        """The percentile the targets hold at: 99 for a 99 % objective."""
        return self.objective * 100

    @property
    def attainment_goal(self) -> float:
        return self.objective

    @property
    def window_hours(self) -> int:
        return self.window_days * 24

    def targets(self, tenant: str | None = None) -> tuple[float, float]:
        """(ttft_s, e2e_s) for a tenant: its own where the SLO names it, else the default."""
        for entry in self.tenants:
            if entry.tenant == tenant:
                return (
                    self.ttft_s if entry.ttft_s is None else entry.ttft_s,
                    self.e2e_s if entry.e2e_s is None else entry.e2e_s,
                )
        return self.ttft_s, self.e2e_s

    def tenant_targets(self) -> dict[str, tuple[float, float]]:
        """Every tenant whose targets differ from the default, with its targets."""
        return {
            entry.tenant: self.targets(entry.tenant)
            for entry in self.tenants
            if self.targets(entry.tenant) != (self.ttft_s, self.e2e_s)
        }

    def for_tenant(self, tenant: str) -> Slo:
        """This SLO with the tenant's targets as the default (and no tenants listed)."""
        ttft_s, e2e_s = self.targets(tenant)
        return Slo(ttft_s, e2e_s, self.objective, self.window_days, self.min_requests)

    def window(self, name: str) -> BurnRateWindow:
        for window in self.burn_rate_windows():
            if window.name == name:
                return window
        raise KeyError(name)

    def burn_rate_windows(self) -> tuple[BurnRateWindow, ...]:
        return tuple(
            BurnRateWindow(
                name=name,
                severity=severity,
                long_window_s=long_s,
                short_window_s=short_s,
                budget_share=share,
                burn_rate=round(share * self.window_hours * SECONDS_PER_HOUR / long_s, 6),
            )
            for name, severity, long_s, short_s, share in BURN_RATE_WINDOWS
        )

    def describe(self, tenant: str | None = None) -> str:
        ttft_s, e2e_s = self.targets(tenant)
        return (
            f"{self.objective:.2%} of requests within TTFT {ttft_s:g} s and end-to-end "
            f"{e2e_s:g} s over {self.window_days} days"
        )


def _seconds(field: str, value: object, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(field, f"must be a number of seconds, got {value!r}")
    if not 0 < value <= high:
        raise PolicyError(field, f"must be in (0, {high:g}] seconds, got {value}")
