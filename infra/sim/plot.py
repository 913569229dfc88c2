"""The timeline PNG: traffic, demand and queue depth per instance vs target, capacity,
rolling p99."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from infra.policy.slo import Slo
from infra.sim.engine import RunResult
from infra.sim.runner import POLICY_CONFIG, Outcome
from infra.sim.trace import Trace

ROLLING_WINDOW_S = 600.0
COMPARED = ("target-tracking", "clairvoyant")  # drawn lighter, for reference
COLOURS = {POLICY_CONFIG: "tab:blue", "target-tracking": "tab:orange", "clairvoyant": "tab:green"}


def _times(seconds: Iterable[float], zone: ZoneInfo) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(float(s), zone) for s in seconds]


def _rolling_p99(trace: Trace, run: RunResult) -> tuple[np.ndarray, np.ndarray]:
    windows = np.floor((trace.arrival_s - trace.start_s) / ROLLING_WINDOW_S).astype(np.int64)
    starts: list[float] = []
    values: list[float] = []
    # Arrivals are sorted, so each window is one slice: no mask over the whole trace per
    # window, which made a month's plot quadratic. (An empty trace splits into one empty
    # piece and no key, hence strict=False.)
    keys, firsts = np.unique(windows, return_index=True)
    for window, ttft_s in zip(keys, np.split(run.ttft_s, firsts[1:]), strict=False):
        if ttft_s.size < 5:
            continue  # a percentile of a handful of requests is noise
        starts.append(trace.start_s + (window + 0.5) * ROLLING_WINDOW_S)
        values.append(float(np.percentile(ttft_s, 99, method="higher")))
    return np.asarray(starts), np.minimum(np.asarray(values), 1e4)


def write_timeline(
    path: Path, outcome: Outcome, trace: Trace, slo: Slo, zone: ZoneInfo, target: float
) -> None:
    names = {run.config for run in outcome.runs}
    shown = [name for name in (POLICY_CONFIG, *COMPARED) if name in names]
    if not shown:
        shown = [outcome.runs[0].config]
    # The object API renders straight to a file: no pyplot state, no display backend.
    figure = Figure(figsize=(13, 11))
    axes = figure.subplots(4, 1, sharex=True)
    traffic, load, capacity, latency = axes

    minutes = np.floor((trace.arrival_s - trace.start_s) / 60).astype(np.int64)
    span = int(np.ceil((trace.end_s - trace.start_s) / 60))
    per_minute = np.bincount(minutes, minlength=span)[:span]
    traffic.fill_between(
        _times(trace.start_s + np.arange(span) * 60, zone), per_minute, step="post", color="0.4"
    )
    for burst in trace.burst_starts_s:
        traffic.axvline(dt.datetime.fromtimestamp(burst, zone), color="tab:red", alpha=0.3, lw=1)
    traffic.set_ylabel("requests / min")
    traffic.set_title("traffic (red lines: burst starts)", loc="left", fontsize=10)

    for name in shown:
        run = outcome.run(name)
        line = run.timeline
        when = _times(line.time_s, zone)
        primary = name == shown[0]
        style = {"color": COLOURS.get(name, "tab:blue"), "alpha": 1.0 if primary else 0.6}
        load.step(
            when,
            line.ongoing_per_instance,
            where="post",
            lw=1.2 if primary else 0.8,
            label=name,
            **style,
        )
        if primary:
            load.step(
                when,
                line.queue_per_instance,
                where="post",
                lw=0.8,
                ls="--",
                color="black",
                label=f"{name} queue depth",
            )
        capacity.step(
            when,
            line.in_service,
            where="post",
            lw=1.6 if primary else 1.0,
            label=f"{name} in service",
            **style,
        )
        if primary:
            capacity.step(
                when,
                line.desired,
                where="post",
                lw=1,
                ls="--",
                color="black",
                label=f"{name} desired",
            )
        starts, p99 = _rolling_p99(trace, run)
        latency.plot(
            _times(starts, zone),
            p99,
            marker=".",
            ms=3,
            lw=1 if primary else 0.8,
            label=name,
            **style,
        )
    load.axhline(target, color="tab:red", ls=":", label=f"target {target:g}")
    load.set_ylabel("demand / instance")
    load.set_title(
        "demand (running + queued) per serving instance, 10 s average, vs target; "
        "queue depth dashed",
        loc="left",
        fontsize=10,
    )
    load.legend(loc="upper right", fontsize=8)
    capacity.set_ylabel("instances")
    capacity.set_title(
        "instances: in service (solid) and desired (dashed)", loc="left", fontsize=10
    )
    capacity.legend(loc="upper right", fontsize=8)
    capacity.yaxis.set_major_locator(MaxNLocator(integer=True))
    latency.axhline(slo.ttft_s, color="tab:red", ls=":", label=f"SLO target {slo.ttft_s:g} s")
    latency.set_yscale("log")
    latency.set_ylabel("p99 TTFT (s)")
    latency.set_title(
        f"rolling p99 time to first token ({ROLLING_WINDOW_S / 60:.0f}-min windows)",
        loc="left",
        fontsize=10,
    )
    latency.legend(loc="upper right", fontsize=8)
    locator = mdates.AutoDateLocator(tz=zone)  # type: ignore[no-untyped-call]
    latency.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator, tz=zone)  # type: ignore[no-untyped-call]
    latency.xaxis.set_major_formatter(formatter)
    latency.set_xlabel(f"local time ({zone.key})")
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
