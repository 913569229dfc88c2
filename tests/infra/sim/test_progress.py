"""The progress bar stays silent on short runs and draws on stderr once a run is long."""

from __future__ import annotations

import io

from infra.sim.progress import ProgressBar


def test_short_runs_draw_nothing() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, after_s=60)
    bar(0.5, "policy-aws")
    bar.close()
    assert stream.getvalue() == ""


def test_long_runs_draw_a_bar_and_end_the_line() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, after_s=0)
    bar(0.5, "policy-aws")
    bar(1.0, "done")
    bar.close()
    text = stream.getvalue()
    assert "\r[###############---------------]  50% policy-aws" in text
    assert "100% done" in text
    assert text.endswith("\n")
