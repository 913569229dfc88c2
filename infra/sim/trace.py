"""A request trace: arrival times and token counts as numpy arrays, and its CSV reader.

CSV format (header required, one request per row, rows in any order):

    timestamp,tenant,prompt_tokens,output_tokens
    2026-12-01T09:30:00.250-05:00,acme,2100,240
    1764599400.5,globex,800,120

`timestamp` is ISO 8601 with a UTC offset (or `Z`), or epoch seconds; `tenant` is any
non-empty name; token counts are whole numbers >= 1 (prompt) and >= 1 (output).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

HEADER = ("timestamp", "tenant", "prompt_tokens", "output_tokens")
MAX_TOKENS = 1_000_000  # far above any context window: a larger count is a broken export

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class TraceError(ValueError):
    """A trace that cannot be read; the message names the file, row and field."""


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival, over the window [start_s, end_s) in epoch seconds."""

    arrival_s: FloatArray
    tenant: IntArray  # index into `tenants`
    prompt_tokens: IntArray
    output_tokens: IntArray
    tenants: tuple[str, ...]
    start_s: float
    end_s: float
    # Start times of known bursts (the generator labels its own; a recorded trace has none),
    # used to measure how long a burst waits for added capacity.
    burst_starts_s: tuple[float, ...] = field(default=())

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    @property
    def days(self) -> float:
        return (self.end_s - self.start_s) / 86_400


def _parse_timestamp(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected ISO 8601 with offset or epoch seconds, got {text!r}") from None
    if stamp.tzinfo is None:
        raise ValueError(f"ISO 8601 timestamp needs a UTC offset (e.g. -05:00 or Z), got {text!r}")
    return stamp.timestamp()


def _parse_tokens(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if not minimum <= value <= MAX_TOKENS:
        raise ValueError(f"must be between {minimum} and {MAX_TOKENS}, got {value}")
    return value


def read_trace(path: Path, zone: ZoneInfo) -> Trace:
    """Read a trace CSV; its window spans whole local days (in `zone`) around the requests."""
    try:
        handle = path.open(newline="")
    except OSError as error:
        raise TraceError(f"{path}: cannot read: {error.strerror}") from None
    arrivals: list[float] = []
    tenant_ids: list[int] = []
    prompts: list[int] = []
    outputs: list[int] = []
    names: dict[str, int] = {}
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(cell.strip() for cell in header) != HEADER:
            raise TraceError(f"{path}:1: header must be {','.join(HEADER)}, got {header!r}")
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(HEADER):
                raise TraceError(f"{path}:{line}: expected {len(HEADER)} fields, got {len(row)}")
            cells = [cell.strip() for cell in row]
            column = "timestamp"
            try:
                arrival = _parse_timestamp(cells[0])
                if not math.isfinite(arrival):
                    raise ValueError(f"must be finite, got {cells[0]!r}")
                column = "tenant"
                if not cells[1]:
                    raise ValueError("must not be empty")
                column = "prompt_tokens"
                prompt = _parse_tokens(cells[2], 1)
                column = "output_tokens"
                output = _parse_tokens(cells[3], 1)
            except ValueError as error:
                raise TraceError(f"{path}:{line}: {column}: {error}") from None
            arrivals.append(arrival)
            tenant_ids.append(names.setdefault(cells[1], len(names)))
            prompts.append(prompt)
            outputs.append(output)
    if not arrivals:
        raise TraceError(f"{path}: no requests after the header")
    arrival_s = np.asarray(arrivals, dtype=np.float64)
    order = np.argsort(arrival_s, kind="stable")
    arrival_s = arrival_s[order]
    first = dt.datetime.fromtimestamp(float(arrival_s[0]), zone).date()
    last = dt.datetime.fromtimestamp(float(arrival_s[-1]), zone).date()
    return Trace(
        arrival_s=arrival_s,
        tenant=np.asarray(tenant_ids, dtype=np.int64)[order],
        prompt_tokens=np.asarray(prompts, dtype=np.int64)[order],
        output_tokens=np.asarray(outputs, dtype=np.int64)[order],
        tenants=tuple(names),
        start_s=local_midnight(first, zone),
        end_s=local_midnight(last + dt.timedelta(days=1), zone),
    )


def local_midnight(date: dt.date, zone: ZoneInfo) -> float:
    return dt.datetime.combine(date, dt.time(0), zone).timestamp()


def write_trace(trace: Trace, path: Path) -> None:
    """Write a trace in the CSV format above (epoch seconds), e.g. to replay a generated day."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for arrival, tenant, prompt, output in zip(
            trace.arrival_s.tolist(),
            trace.tenant.tolist(),
            trace.prompt_tokens.tolist(),
            trace.output_tokens.tolist(),
            strict=True,
        ):
            writer.writerow([f"{arrival:.3f}", trace.tenants[tenant], prompt, output])
