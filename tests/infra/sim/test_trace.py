"""Reading recorded traces: the documented CSV format and one-line errors naming row/field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infra.policy import FLEET_POLICY
from infra.sim.trace import TraceError, read_trace, write_trace

ZONE = FLEET_POLICY.schedule.zone
HEADER = "timestamp,tenant,prompt_tokens,output_tokens\n"


def write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(header + body)
    return path


def test_reads_iso_and_epoch_timestamps_sorted_with_tenants(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "2026-12-01T09:30:01-05:00,globex,800,120\n"
        "1796135400.5,acme,2100,240\n"  # 2026-12-01T09:30:00.5-05:00
        "2026-12-01T14:30:02Z,acme,10,1\n",
    )
    trace = read_trace(path, ZONE)
    assert len(trace) == 3
    assert trace.arrival_s.tolist() == [1796135400.5, 1796135401.0, 1796135402.0]
    assert [trace.tenants[i] for i in trace.tenant] == ["acme", "globex", "acme"]
    assert trace.prompt_tokens.tolist() == [2100, 800, 10]
    # The window spans the whole local day around the requests.
    assert trace.days == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("2026-12-01T09:30:00,acme,1,1\n", "trace.csv:2: timestamp: ISO 8601 timestamp needs"),
        ("yesterday,acme,1,1\n", "trace.csv:2: timestamp: expected ISO 8601"),
        ("1764599400,,1,1\n", "trace.csv:2: tenant: must not be empty"),
        ("1764599400,acme,many,1\n", "trace.csv:2: prompt_tokens: expected a whole number"),
        ("1764599400,acme,5,0\n", "trace.csv:2: output_tokens: must be between 1 and"),
        ("1764599400,acme,5\n", "trace.csv:2: expected 4 fields, got 3"),
        ("1764599400,acme,5,5\n1764599400,acme,5,-2\n", "trace.csv:3: output_tokens"),
        ("", "no requests after the header"),
    ],
)
def test_bad_rows_name_the_row_and_field(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(TraceError) as error:
        read_trace(write(tmp_path, body), ZONE)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_wrong_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"trace.csv:1: header must be timestamp,tenant"):
        read_trace(write(tmp_path, "1,a,1,1\n", header="time,tenant,prompt,output\n"), ZONE)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        read_trace(tmp_path / "absent.csv", ZONE)


def test_written_trace_reads_back(tmp_path: Path) -> None:
    original = read_trace(
        write(tmp_path, "1764599400.25,acme,2100,240\n1764599460,globex,80,20\n"), ZONE
    )
    copy_path = tmp_path / "copy.csv"
    write_trace(original, copy_path)
    copy = read_trace(copy_path, ZONE)
    np.testing.assert_allclose(copy.arrival_s, original.arrival_s)
    assert copy.tenants == original.tenants
    assert copy.output_tokens.tolist() == [240, 20]
