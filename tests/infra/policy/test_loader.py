"""Proposed policies from TOML: fields layered over the deployed policy, errors named."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.policy import FLEET_POLICY, PolicyError
from infra.policy.loader import load_policy, policy_as_mapping, policy_from_mapping


def test_proposal_overrides_only_what_it_lists(tmp_path: Path) -> None:
    proposal = tmp_path / "proposal.toml"
    proposal.write_text(
        '[default]\nupscale_delay_s = 60\n[schedule]\nopen_time = "09:30"\n'
        '[[special_days]]\ndate = 2026-12-18\nstart = "09:00"\nend = "16:00"\n'
        'min_replicas = 3\nreason = "index rebalance"\n'
    )
    policy = load_policy(proposal, FLEET_POLICY)
    assert policy.default.upscale_delay_s == 60
    assert policy.market_hours.upscale_delay_s == 60  # inherits from the proposal's default
    assert policy.market_hours.min_replicas == 2
    assert policy.schedule.prewarm_time.strftime("%H:%M") == "09:20"
    assert policy.special_days[0].reason == "index rebalance"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"default": {"min_replicas": 9}}, "default.min_replicas: must be <= max_replicas (4)"),
        ({"default": {"min_replica": 1}}, "default.min_replica: unknown field"),
        ({"defaults": {}}, "defaults: unknown section"),
        ({"schedule": {"open_time": "9am"}}, "schedule.open_time: must be a time as HH:MM"),
        ({"schedule": {"time_zone": "Mars/Olympus"}}, "schedule.time_zone: unknown IANA"),
        ({"queue": {"max_queue_wait_s": 0}}, "queue.max_queue_wait_s: must be in (0, 600]"),
        ({"queue": {"max_queue_wait_s": 30_000}}, "queue.max_queue_wait_s: must be in (0, 600]"),
        ({"queue": {"max_queued": 2.5}}, "queue.max_queued: must be a whole number"),
        ({"queue": {"engine_max_num_seqs": 1}}, "queue.engine_max_num_seqs: must be between 2"),
        ({"queue": {"probe_reserve": 32}}, "queue.probe_reserve: must be between 1 and 31"),
        ({"queue": {"tenant_queue_share": 0}}, "queue.tenant_queue_share: must be in (0, 1]"),
        (
            {"queue": {"max_queued": 4, "scale_out_queue_depth": 5.0}},
            "queue.scale_out_queue_depth: must be between 0 and max_queued (4)",
        ),
        ({"queue": {"max_queue": 8}}, "queue.max_queue: unknown field"),
        (
            {
                "special_days": [
                    {
                        "date": "2026-02-30",
                        "start": "09:00",
                        "end": "10:00",
                        "min_replicas": 3,
                        "reason": "x",
                    }
                ]
            },
            "special_days[0].date: must be a date",
        ),
    ],
)
def test_bad_proposals_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        policy_from_mapping(data, FLEET_POLICY)
    assert str(raised.value).startswith(message)


def test_a_queue_section_overrides_only_what_it_lists(tmp_path: Path) -> None:
    proposal = tmp_path / "queue.toml"
    proposal.write_text(
        "[queue]\nmax_queued = 48\nmax_queue_wait_s = 20.5\nscale_out_queue_depth = 2\n"
    )
    queue = load_policy(proposal, FLEET_POLICY).queue
    assert (queue.max_queued, queue.max_queue_wait_s, queue.scale_out_queue_depth) == (48, 20.5, 2)
    # the rest is the deployed policy's
    assert queue.engine_max_num_seqs == FLEET_POLICY.queue.engine_max_num_seqs
    assert queue.tenant_queue_share == FLEET_POLICY.queue.tenant_queue_share
    assert queue.max_running == FLEET_POLICY.queue.max_running == 12
    assert queue.tenant_max_queued == 24


def test_bad_toml_is_a_policy_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[default\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(broken, FLEET_POLICY)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml", FLEET_POLICY)


def test_mapping_round_trips() -> None:
    assert policy_from_mapping(policy_as_mapping(FLEET_POLICY), FLEET_POLICY) == FLEET_POLICY
