"""Small traces built by hand, for tests that need to know exactly what arrives when."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import numpy as np

from infra.policy import FLEET_POLICY
from infra.sim.trace import Trace

NEW_YORK = FLEET_POLICY.schedule.zone
# A Saturday: the schedule's minimum is the off-hours 1 all day.
SATURDAY = dt.date(2026, 11, 28)

CraftTrace = Callable[..., Trace]


def craft_trace(
    arrivals_after_midnight_s: Sequence[float],
    prompt_tokens: int = 100,
    output_tokens: int = 200,
    date: dt.date = SATURDAY,
    hours: float = 24.0,
    bursts_after_midnight_s: Sequence[float] = (),
    tenants: Sequence[str] = (),
    outputs: Sequence[int] = (),
) -> Trace:
    """`tenants` and `outputs`, when given, name each request's tenant and output tokens
    in arrival order (default: all "acme", all `output_tokens`)."""
    start = dt.datetime.combine(date, dt.time(0), NEW_YORK).timestamp()
    order = np.argsort(np.asarray(arrivals_after_midnight_s, dtype=np.float64), kind="stable")
    arrivals = np.asarray(arrivals_after_midnight_s, dtype=np.float64)[order] + start
    size = arrivals.size
    names = tuple(dict.fromkeys(tenants)) or ("acme",)
    tenant = (
        np.asarray([names.index(t) for t in tenants], dtype=np.int64)[order]
        if tenants
        else np.zeros(size, dtype=np.int64)
    )
    output = (
        np.asarray(outputs, dtype=np.int64)[order]
        if outputs
        else np.full(size, output_tokens, dtype=np.int64)
    )
    return Trace(
        arrival_s=arrivals,
        tenant=tenant,
        prompt_tokens=np.full(size, prompt_tokens, dtype=np.int64),
        output_tokens=output,
        tenants=names,
        start_s=start,
        end_s=start + hours * 3600,
        burst_starts_s=tuple(start + b for b in bursts_after_midnight_s),
    )
