"""The gateway's bounded fair queue, per instance: how much runs, how much waits, how long.

Ray Serve, the model this fleet follows, lets each replica run `max_ongoing_requests` and
queues up to `max_queued_requests` beyond that, and scales on the sum, so the scaling
signal sees the whole demand. The gateway does the same in front of vLLM: it sends vLLM at
most `max_running` sequences, queues up to `max_queued` more (fairly, round-robin by
tenant), and publishes running + queued as `Demand`. Counts are sequences (prompts x n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infra.policy.errors import PolicyError, check_whole

# Upper bounds against unit slips (a wait in ms, a bound meant for the fleet).
MAX_ENGINE_SEQUENCES = 1024
MAX_QUEUE_WAIT_S = 600


@dataclass(frozen=True)
class GatewayQueue:
    # vLLM's `--max-num-seqs` on the image (ami/systemd/vllm.service; a test holds the two
    # equal). It bounds the batch and the CUDA graphs captured at start.
    engine_max_num_seqs: int = 32
    # Slots of that batch the gateway never fills with client requests, so the 1-token
    # readiness probe always finds one and is scheduled at once even when every client
    # slot is busy; a probe stuck behind a full batch would mark a busy instance unready.
    probe_reserve: int = 2
    # Sequences the gateway sends vLLM at once: what vLLM really runs at once on one
    # replica. Its KV cache binds before `--max-num-seqs`: about 12 of the reference
    # traffic's ~3.5k-token requests fit on an A10G next to an 8B model
    # (infra/sim/replica_model.py derives it, and a test holds the two equal; `fleet
    # calibrate` measures it on a real g5: set this to what it finds). Sent more, vLLM
    # would queue them first come, first served, where neither the tenants' round-robin
    # nor the wait deadline applies. The probe needs a few tokens of KV cache, not a
    # client's thousands, so it fits beside a full client batch.
    max_running: int = 12
    # Sequences that may wait at one instance beyond those running: what a replica
    # completes within `max_queue_wait_s`. 12 running get ~17 tokens/s each
    # (replica_model.py) and answers average ~340 tokens (infra/sim/traffic.py), so ~0.6
    # requests/s, about 18 in 30 s: one queued much further back would pass its deadline
    # anyway, so it is refused at once (503 + Retry-After) and the retry may find room elsewhere.
    max_queued: int = 16
    # One tenant may hold at most this share of the queue (429 + Retry-After beyond it):
    # a tenant's batch of hundreds cannot fill the queue and shut the others out.
    tenant_queue_share: float = 0.5
    # The longest a request waits for a slot before it is shed with 503 + Retry-After.
    # Half the SLO's end-to-end target (65 s, infra/policy/slo.py): a request that waited
    # this long still completes within the target at the median service time. The
    # simulator judged 5 s (sheds during every cold start) and 60 s (no gain) against it.
    max_queue_wait_s: float = 30.0
    # The queue-depth alarm: scale out when the average sequences queued per instance
    # (QueueDepth: the gateway's queue plus vLLM's own waiting) stays above this for the
    # up delay. The gateway queues once an instance runs `max_running` sequences, just
    # above the demand target, so a sustained queue is demand beyond the target that the
    # demand alarm's steps have not yet absorbed; its bands add capacity for the queue.
    scale_out_queue_depth: float = 1.0

    def __post_init__(self) -> None:
        check_whole("engine_max_num_seqs", self.engine_max_num_seqs, 2, MAX_ENGINE_SEQUENCES)
        check_whole("probe_reserve", self.probe_reserve, 1, self.engine_max_num_seqs - 1)
        client_slots = self.engine_max_num_seqs - self.probe_reserve
        check_whole("max_running", self.max_running, 1, client_slots)
        check_whole("max_queued", self.max_queued, 0, 100_000)
        if not 0 < self.tenant_queue_share <= 1:
            raise PolicyError(
                "tenant_queue_share", f"must be in (0, 1], got {self.tenant_queue_share}"
            )
        if not 0 < self.max_queue_wait_s <= MAX_QUEUE_WAIT_S:
            raise PolicyError(
                "max_queue_wait_s",
                f"must be in (0, {MAX_QUEUE_WAIT_S}] seconds, got {self.max_queue_wait_s}",
            )
        if not 0 <= self.scale_out_queue_depth <= self.max_queued:
            raise PolicyError(
                "scale_out_queue_depth",
                f"must be between 0 and max_queued ({self.max_queued}), "
                f"got {self.scale_out_queue_depth}",
            )

    @property
    def tenant_max_queued(self) -> int:
        """Sequences one tenant may hold in one instance's queue."""
        if not self.max_queued:
            return 0
        return max(1, math.floor(self.max_queued * self.tenant_queue_share))
