"""The gateway in front of each simulated replica, and the clients that call it.

The gateway's admission is `app.fair_queue.FairQueue` itself, with the limits the stack
writes into the gateway's env from the policy (`infra.policy.queue`), so the simulated
gateway is the deployed one. Clients retry as the OpenAI Python SDK does
(`openai/_base_client.py` `_calculate_retry_timeout`, `openai/_constants.py`): up to
`DEFAULT_MAX_RETRIES` = 2 retries on 408/409/429/5xx, each after the response's
`Retry-After` when it is in (0, 60] seconds, else after `min(0.5 * 2**retries, 8)` seconds
times a jitter of `1 - 0.25 * random()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.fair_queue import QUEUE_FULL, TENANT_QUEUE_FULL, QueueLimits
from app.settings import GatewaySettings
from infra.policy import FleetPolicy

# The SDK's defaults (openai/_constants.py).
SDK_MAX_RETRIES = 2
SDK_INITIAL_RETRY_DELAY_S = 0.5
SDK_MAX_RETRY_DELAY_S = 8.0
SDK_MAX_RETRY_AFTER_S = 60.0

# The gateway's own defaults, read from its settings (one source): the Retry-After it sends
# with a 503 or 429, and a tenant's running sequences per instance when its entry sets no
# `max_concurrent_requests`.
_GATEWAY_FIELDS = GatewaySettings.model_fields
GATEWAY_RETRY_AFTER_S = float(_GATEWAY_FIELDS["retry_after_s"].default)
DEFAULT_TENANT_MAX_RUNNING: int = _GATEWAY_FIELDS["default_tenant_max_concurrent_requests"].default

# Why a request attempt was refused, as the client sees it. The codes are small integers
# so a month of requests keeps them in a byte array.
NOT_REFUSED = 0
REFUSED_QUEUE_FULL = 1  # 503: the instance's queue is at its bound
REFUSED_TENANT_SHARE = 2  # 429: the tenant holds its share of the queue
REFUSED_DEADLINE = 3  # 503: waited `max_queue_wait_s` without a slot
REFUSED_NO_TARGET = 4  # 503 from the load balancer: no instance in service, no Retry-After
REFUSAL_NAMES = {
    REFUSED_QUEUE_FULL: "503_queue_full",
    REFUSED_TENANT_SHARE: "429_tenant_share",
    REFUSED_DEADLINE: "503_queue_wait",
    REFUSED_NO_TARGET: "503_no_target",
}
REFUSAL_OF_REASON = {QUEUE_FULL: REFUSED_QUEUE_FULL, TENANT_QUEUE_FULL: REFUSED_TENANT_SHARE}


@dataclass(frozen=True)
class GatewayModel:
    """What one instance's gateway admits, and what its clients do when refused."""

    limits: QueueLimits
    max_queue_wait_s: float
    tenant_max_running: int = DEFAULT_TENANT_MAX_RUNNING
    retry_after_s: float | None = GATEWAY_RETRY_AFTER_S
    client_max_retries: int = SDK_MAX_RETRIES

    def __post_init__(self) -> None:
        if not self.max_queue_wait_s > 0:
            raise ValueError(f"max_queue_wait_s must be > 0, got {self.max_queue_wait_s}")
        if self.tenant_max_running < 1:
            raise ValueError(f"tenant_max_running must be >= 1, got {self.tenant_max_running}")
        if self.client_max_retries < 0:
            raise ValueError(f"client_max_retries must be >= 0, got {self.client_max_retries}")

    @classmethod
    def from_policy(cls, policy: FleetPolicy) -> GatewayModel:
        queue = policy.queue
        return cls(
            limits=QueueLimits(
                max_running=queue.max_running,
                max_queued=queue.max_queued,
                tenant_max_queued=queue.tenant_max_queued,
            ),
            max_queue_wait_s=queue.max_queue_wait_s,
        )


def sdk_retry_delay_s(
    retries_taken: int, retry_after_s: float | None, draw: Callable[[], float]
) -> float:
    """Seconds the OpenAI SDK sleeps before its next attempt; `retries_taken` counts the
    retries already made (0 before the first) and `draw` is its `random.random`."""
    if retry_after_s is not None and 0 < retry_after_s <= SDK_MAX_RETRY_AFTER_S:
        return retry_after_s
    sleep_s = min(SDK_INITIAL_RETRY_DELAY_S * 2.0**retries_taken, SDK_MAX_RETRY_DELAY_S)
    return max(0.0, sleep_s * (1 - 0.25 * draw()))
