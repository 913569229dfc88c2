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

from infra.policy.errors import PolicyError

# Upper bounds against unit slips (a wait in ms, a bound meant for the fleet).
MAX_ENGINE_SEQUENCES = 1024
MAX_QUEUE_WAIT_S = 600


@dataclass(frozen=True)
class GatewayQueue:
    # vLLM's `--max-num-seqs` on the image (ami/systemd/vllm.service; a test holds the two
    # equal). It bounds the batch and the CUDA graphs captured at start.
    engine_max_num_seqs: int = 32
    # Sequences of vLLM's batch the gateway never fills with client requests, so the
    # 1-token readiness probe is scheduled at once even when every client slot is busy; a
    # probe stuck behind a full batch would mark a busy instance unready.
    probe_reserve: int = 2
    # Sequences that may wait at one instance beyond those running: about what a replica
    # running a full batch completes within `max_queue_wait_s` (30 running at ~10 tokens/s
    # each, ~250-token answers: ~1.2 requests/s, so ~36 in 30 s). Past the bound a new
    # request gets 503 + Retry-After at once, and the load balancer's next pick may have room.
    max_queued: int = 32
    # One tenant may hold at most this share of the queue (429 + Retry-After beyond it):
    # a tenant's batch of hundreds cannot fill the queue and shut the others out.
    tenant_queue_share: float = 0.5
    # The longest a request waits for a slot before it is shed with 503 + Retry-After.
    # Half the SLA's end-to-end target (65 s, infra/sim/sla.py): a request that waited
    # this long still completes within the target at the median service time, and a warm
    # pool instance started at the burst's start is serving before it (cold_start.py).
    max_queue_wait_s: float = 30.0
    # The queue-depth alarm: scale out when the average sequences queued per instance
    # (QueueDepth) stays above this for the up delay. Queueing starts only once an
    # instance runs `max_running` sequences, three times the demand target, so any
    # sustained queue means the demand alarm's steps were not enough.
    scale_out_queue_depth: float = 1.0

    def __post_init__(self) -> None:
        _whole("engine_max_num_seqs", self.engine_max_num_seqs, 2, MAX_ENGINE_SEQUENCES)
        _whole("probe_reserve", self.probe_reserve, 1, self.engine_max_num_seqs - 1)
        _whole("max_queued", self.max_queued, 0, 100_000)
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
    def max_running(self) -> int:
        """Sequences the gateway lets vLLM run at once: its batch minus the probe's reserve."""
        return self.engine_max_num_seqs - self.probe_reserve

    @property
    def tenant_max_queued(self) -> int:
        """Sequences one tenant may hold in one instance's queue."""
        if not self.max_queued:
            return 0
        return max(1, math.floor(self.max_queued * self.tenant_queue_share))


def _whole(field: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(field, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise PolicyError(field, f"must be between {low} and {high}, got {value}")
