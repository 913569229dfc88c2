"""Completes this instance's Auto Scaling lifecycle action once it has drained.

Not when the instance is headed for the warm pool: it is being stopped, not terminated, and
no termination hook waits for it (the call would only fail).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from app.imds import WARM_POOL_STATES

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient

log = logging.getLogger(__name__)


class LifecycleCompleter:
    def __init__(
        self,
        client: AutoScalingClient,
        *,
        autoscaling_group_name: str,
        hook_name: str,
        instance_id: Callable[[], Awaitable[str]],
        lifecycle_state: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._client = client
        self._group = autoscaling_group_name
        self._hook = hook_name
        self._instance_id = instance_id
        self._lifecycle_state = lifecycle_state
        self.completed = False

    async def __call__(self) -> None:
        if self.completed:
            return
        state = self._lifecycle_state()
        if state in WARM_POOL_STATES:
            log.info("no lifecycle action to complete: headed for the warm pool (%s)", state)
            return
        instance_id = await self._instance_id()
        await asyncio.to_thread(
            self._client.complete_lifecycle_action,
            LifecycleHookName=self._hook,
            AutoScalingGroupName=self._group,
            LifecycleActionResult="CONTINUE",
            InstanceId=instance_id,
        )
        self.completed = True
        log.warning("lifecycle action completed for %s (hook %s)", instance_id, self._hook)
