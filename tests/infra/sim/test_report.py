"""The simulator's JSON output is strict JSON even when a percentile is infinite."""

from __future__ import annotations

import json
import math

from infra.sim.report import json_safe


def test_non_finite_figures_become_null_at_any_depth() -> None:
    payload = {
        "p99_ttft_s": math.inf,
        "runs": {"proposed": {"p99_e2e_s": math.nan, "gpu_hours": 31.4}},
        "findings": [{"value": -math.inf, "name": "sla"}],
    }
    # allow_nan=False raises on Infinity/NaN, which strict JSON parsers reject.
    text = json.dumps(json_safe(payload), allow_nan=False)
    assert json.loads(text) == {
        "p99_ttft_s": None,
        "runs": {"proposed": {"p99_e2e_s": None, "gpu_hours": 31.4}},
        "findings": [{"value": None, "name": "sla"}],
    }
