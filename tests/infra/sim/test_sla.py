"""The SLA defaults are what a replica gives the largest admitted request in a full batch."""

from __future__ import annotations

import pytest

from infra.sim.replica_model import A10G_VLLM
from infra.sim.sla import Sla
from infra.sim.traffic import Scenario

QUEUEING_ALLOWANCE_S = 2.0


def test_defaults_cover_the_largest_request_in_a_full_batch_with_little_to_spare() -> None:
    scenario = Scenario()
    full_batch = A10G_VLLM.per_sequence_speed(A10G_VLLM.max_num_seqs)
    prefill_s = A10G_VLLM.prefill_units(scenario.prompt_range[1]) / full_batch
    whole_s = prefill_s + scenario.output_range[1] / full_batch
    sla = Sla()
    assert prefill_s < sla.ttft_s <= prefill_s + QUEUEING_ALLOWANCE_S
    assert whole_s < sla.e2e_s <= whole_s + QUEUEING_ALLOWANCE_S


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"ttft_s": 0}, "ttft_s must be > 0"), ({"percentile": 100}, "percentile must be in")],
)
def test_bad_targets_are_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Sla(**fields)
