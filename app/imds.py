"""EC2 instance metadata (IMDSv2): this instance's id and Auto Scaling lifecycle state.

The target lifecycle state is one of the steady states `InService`, `Terminated`,
`Standby`, `Detached` and, with a warm pool, `Warmed:Stopped`, `Warmed:Running`,
`Warmed:Hibernated`, `Warmed:Terminated`: where the instance is headed, set as soon as it
starts moving there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx

from app.backoff import backoff_delay_s

log = logging.getLogger(__name__)

TOKEN_TTL_S = 21_600
LIFECYCLE_STATE_PATH = "/latest/meta-data/autoscaling/target-lifecycle-state"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"

IN_SERVICE = "InService"
# Terminated from service, or from the warm pool (where the gateway runs while the
# instance is prepared, or for good with a Running pool): drain and complete the hook.
TERMINATION_STATES = frozenset({"Terminated", "Warmed:Terminated"})
# Headed for the warm pool: a stop there (SIGTERM from systemd) is no termination, and no
# termination hook waits for this instance.
WARM_POOL_STATES = frozenset({"Warmed:Stopped", "Warmed:Running", "Warmed:Hibernated"})


def counts_in_group_average(state: str | None) -> bool:
    """Whether this instance's load belongs in the group's per-instance average.

    Only an instance in service takes traffic. One being prepared for (or sitting in) the
    warm pool, in standby or detached would add zeros that pull the average down and
    trigger scale-in; an unknown state (no successful read yet) is not counted either.
    """
    return state == IN_SERVICE


class InstanceMetadata:
    def __init__(self, base_url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=2.0, transport=transport)
        self._token: str | None = None

    async def _get(self, path: str) -> str:
        for attempt in (1, 2):
            if self._token is None:
                response = await self._client.put(
                    "/latest/api/token",
                    headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
                )
                response.raise_for_status()
                self._token = response.text
            response = await self._client.get(
                path, headers={"X-aws-ec2-metadata-token": self._token}
            )
            if response.status_code == 401 and attempt == 1:
                self._token = None  # the token expired: fetch a new one, once
                continue
            response.raise_for_status()
            return response.text.strip()
        raise AssertionError("unreachable")

    async def lifecycle_state(self) -> str:
        return await self._get(LIFECYCLE_STATE_PATH)

    async def instance_id(self) -> str:
        return await self._get(INSTANCE_ID_PATH)

    async def aclose(self) -> None:
        await self._client.aclose()


class LifecycleWatcher:
    """Polls the lifecycle state into `state`; on a termination, calls `on_terminated` once
    and stops."""

    def __init__(
        self,
        metadata: InstanceMetadata,
        on_terminated: Callable[[str], None],
        *,
        interval_s: float,
        max_backoff_s: float = 60.0,
    ) -> None:
        self._metadata = metadata
        self._on_terminated = on_terminated
        self._interval_s = interval_s
        self._max_backoff_s = max_backoff_s
        self.state: str | None = None  # the last state read; kept while reads fail

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                state = await self._metadata.lifecycle_state()
                failures = 0
            except httpx.HTTPError as error:
                failures += 1
                delay = backoff_delay_s(self._interval_s, failures, self._max_backoff_s)
                log.warning(
                    "reading the lifecycle state from IMDS failed (%d): %s; next in %g s",
                    failures,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if state != self.state:
                log.info("lifecycle state: %s (was %s)", state, self.state or "unknown")
                self.state = state
            if state in TERMINATION_STATES:
                self._on_terminated(f"lifecycle state {state}")
                return
            await asyncio.sleep(self._interval_s)
