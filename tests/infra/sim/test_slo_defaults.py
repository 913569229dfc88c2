"""The SLO's default targets are what a replica gives the largest admitted request in a
full batch (the derivation in `infra/policy/slo.py`)."""

from __future__ import annotations

from infra.policy.slo import Slo
from infra.sim.replica_model import A10G_VLLM
from infra.sim.traffic import Scenario

QUEUEING_ALLOWANCE_S = 2.0


def test_defaults_cover_the_largest_request_in_a_full_batch_with_little_to_spare() -> None:
    scenario = Scenario()
    full_batch = A10G_VLLM.per_sequence_speed(A10G_VLLM.max_num_seqs)
    prefill_s = A10G_VLLM.prefill_units(scenario.prompt_range[1]) / full_batch
    whole_s = prefill_s + scenario.output_range[1] / full_batch
    slo = Slo()
    assert prefill_s < slo.ttft_s <= prefill_s + QUEUEING_ALLOWANCE_S
    assert whole_s < slo.e2e_s <= whole_s + QUEUEING_ALLOWANCE_S
