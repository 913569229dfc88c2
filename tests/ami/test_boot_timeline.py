"""ami/README.md's cold-start table and infra/policy/cold_start.py say the same thing."""

from __future__ import annotations

import re

import pytest

from infra.policy.cold_start import (
    BOOT_TIMELINE,
    BootPhase,
    health_check_grace_period_s,
    instance_warmup_s,
    time_to_ready_s,
)
from tests.ami.unitfile import AMI_DIR

README = AMI_DIR / "README.md"
START, END = "<!-- boot-timeline:start -->", "<!-- boot-timeline:end -->"


def _table_rows(text: str) -> list[list[str]]:
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError("the boot-timeline markers must appear once each")
    block = text.split(START, 1)[1].split(END, 1)[0]
    lines = [line.strip() for line in block.strip().splitlines()]
    if len(lines) < 3 or not re.fullmatch(r"\|(\s*-+\s*\|)+", lines[1].replace(" ", "")):
        raise ValueError("no markdown table between the boot-timeline markers")
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def _number(cell: str) -> float:
    return float(cell)


@pytest.fixture(scope="module")
def rows() -> list[list[str]]:
    return _table_rows(README.read_text())


def test_one_row_per_phase_in_order(rows: list[list[str]]) -> None:
    phases = [row[0].strip("`") for row in rows if row[0].startswith("`")]
    assert phases == [phase.name for phase in BOOT_TIMELINE]


@pytest.mark.parametrize("phase", BOOT_TIMELINE, ids=lambda p: p.name)
def test_figures_and_source_match_the_code(rows: list[list[str]], phase: BootPhase) -> None:
    (row,) = [row for row in rows if row[0] == f"`{phase.name}`"]
    _, typical, worst, source, design = row
    assert (_number(typical), _number(worst)) == (phase.typical_s, phase.worst_s)
    assert source == phase.source
    # Every phase says what the design does about it, not only how long it takes.
    assert len(design) > 40


def test_total_row_and_derived_timings(rows: list[list[str]]) -> None:
    (total,) = [row for row in rows if row[0] == "**to ready**"]
    assert (_number(total[1]), _number(total[2])) == (time_to_ready_s(), time_to_ready_s(True))
    text = README.read_text()
    assert f"health-check grace period **{health_check_grace_period_s()} s**" in text
    assert f"instance warm-up **{instance_warmup_s()} s**" in text


def test_design_column_covers_the_levers_the_issue_names(rows: list[list[str]]) -> None:
    design = " ".join(row[4] for row in rows).lower()
    for lever in (
        "instance-store NVMe",
        "fast snapshot restore",
        "volume initialization rate",
        "warm pool",
        "--enforce-eager",
    ):
        assert lever.lower() in design, lever


def test_parser_rejects_a_table_without_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        _table_rows("| phase |\n|---|\n| `x` |\n")
