"""ami/README.md's cold-start tables and infra/policy/cold_start.py say the same thing."""

from __future__ import annotations

import re

import pytest

from infra.policy.cold_start import (
    BAKED_EBS_TIMELINE,
    BOOT_TIMELINE,
    WARM_POOL_TIMELINE,
    WEIGHTS_LOAD_BY_PATH,
    BootPhase,
    WeightPath,
    boot_timeline,
    health_check_grace_period_s,
    instance_warmup_s,
    time_to_ready_quantile_s,
    time_to_ready_s,
)
from tests.ami.unitfile import AMI_DIR

README = AMI_DIR / "README.md"
# Each table between its markers, and the timeline it must show.
TABLES = {
    "boot-timeline": BOOT_TIMELINE,
    "warm-pool-timeline": WARM_POOL_TIMELINE,
    "baked-timeline": BAKED_EBS_TIMELINE,
}


def _table_rows(text: str, marker: str = "boot-timeline") -> list[list[str]]:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if text.count(start) != 1 or text.count(end) != 1:
        raise ValueError(f"the {marker} markers must appear once each")
    block = text.split(start, 1)[1].split(end, 1)[0]
    lines = [line.strip() for line in block.strip().splitlines()]
    if len(lines) < 3 or not re.fullmatch(r"\|(\s*-+\s*\|)+", lines[1].replace(" ", "")):
        raise ValueError("no markdown table between the boot-timeline markers")
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def _number(cell: str) -> float:
    return float(cell)


@pytest.fixture(scope="module")
def rows() -> list[list[str]]:
    return _table_rows(README.read_text())


@pytest.mark.parametrize("marker", TABLES)
def test_one_row_per_phase_in_order(marker: str) -> None:
    rows = _table_rows(README.read_text(), marker)
    phases = [row[0].strip("`") for row in rows if row[0].startswith("`")]
    assert phases == [phase.name for phase in TABLES[marker]]


@pytest.mark.parametrize(
    ("marker", "phase"),
    [(marker, phase) for marker, timeline in TABLES.items() for phase in timeline],
    ids=lambda value: value if isinstance(value, str) else value.name,
)
def test_figures_and_source_match_the_code(marker: str, phase: BootPhase) -> None:
    rows = _table_rows(README.read_text(), marker)
    (row,) = [row for row in rows if row[0] == f"`{phase.name}`"]
    _, typical, worst, source, design = row
    assert (_number(typical), _number(worst)) == (phase.typical_s, phase.worst_s)
    assert source == phase.source
    # Every phase says what the design does about it, not only how long it takes.
    assert len(design) > 40


@pytest.mark.parametrize("marker", TABLES)
def test_total_row_carries_the_sum_and_the_p95(marker: str) -> None:
    timeline = TABLES[marker]
    (total,) = [row for row in _table_rows(README.read_text(), marker) if row[0] == "**to ready**"]
    assert (_number(total[1]), _number(total[2])) == (
        time_to_ready_s(timeline=timeline),
        time_to_ready_s(True, timeline),
    )
    assert f"p95 {round(time_to_ready_quantile_s(0.95, timeline))} s" in total[3]


def test_derived_timings() -> None:
    text = README.read_text()
    assert f"health-check grace period **{health_check_grace_period_s()} s**" in text
    assert f"instance warm-up **{instance_warmup_s()} s**" in text


def test_weight_paths_table_matches_the_code() -> None:
    rows = {row[0].strip("`"): row for row in _table_rows(README.read_text(), "weight-paths")}
    assert set(rows) == {path.value for path in WeightPath}
    for path in WeightPath:
        _, fresh, warm, source, _ = rows[path.value]
        for cell, warm_pool in ((fresh, False), (warm, True)):
            timeline = boot_timeline(path, warm_pool)
            expected = (
                time_to_ready_s(timeline=timeline),
                time_to_ready_s(True, timeline),
                round(time_to_ready_quantile_s(0.95, timeline)),
            )
            assert tuple(float(part) for part in cell.split(" / ")) == expected
        assert source == WEIGHTS_LOAD_BY_PATH[path].source


def test_design_column_covers_the_levers_the_issue_names() -> None:
    text = README.read_text()
    rows = [row for marker in (*TABLES, "weight-paths") for row in _table_rows(text, marker)]
    design = " ".join(row[4] for row in rows).lower()
    for lever in (
        "instance-store NVMe",
        "fast snapshot restore",
        "volume initialization rate",
        "warm pool",
        "--enforce-eager",
        "runai_streamer",
        "RUNAI_STREAMER_MEMORY_LIMIT",
    ):
        assert lever.lower() in design, lever


def test_parser_rejects_a_table_without_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        _table_rows("| phase |\n|---|\n| `x` |\n")
