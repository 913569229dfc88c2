"""Drain: stop taking requests, let the admitted ones finish, release the instance, exit.

Triggered by SIGTERM or by the Auto Scaling lifecycle state turning `Terminated`. The
instance reports not-ready at once (so the load balancer stops routing to it), refuses
new requests with 503, waits for in-flight requests and streams, and for the requests
already queued (they are served, not dropped), up to the deadline (and
stays up at least a minimum time, for the load balancer to notice), then completes the
lifecycle action (so the ASG terminates it without waiting for the hook's
timeout) and asks the server to exit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from app.admission import Admission

log = logging.getLogger(__name__)


class Drainer:
    def __init__(
        self,
        admission: Admission,
        *,
        deadline_s: float,
        min_s: float = 0.0,
        complete_lifecycle: Callable[[], Awaitable[None]] | None,
        exit_process: Callable[[], None],
    ) -> None:
        self._admission = admission
        self._deadline_s = deadline_s
        self._min_s = min_s
        self._complete_lifecycle = complete_lifecycle
        self._exit_process = exit_process
        self.reason: str | None = None
        self.finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        return self.reason is not None

    def begin(self, reason: str) -> None:
        """Start draining (idempotent: a second trigger changes nothing)."""
        if self.reason is not None:
            return
        self.reason = reason
        self._admission.draining = True
        log.warning(
            "draining (%s): %d sequences running, %d queued, deadline %g s",
            reason,
            self._admission.running,
            self._admission.queued,
            self._deadline_s,
        )
        self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            async with asyncio.timeout(self._deadline_s):
                await self._admission.wait_idle()
            log.warning("drain complete: no request in flight or queued")
        except TimeoutError:
            log.error(
                "drain deadline of %g s passed with %d sequences still running, %d queued",
                self._deadline_s,
                self._admission.running,
                self._admission.queued,
            )
        # Stay up, refusing new work, until the load balancer has had time to see the
        # instance not ready: a closed port would turn its last requests into 502s.
        linger_s = self._min_s - (loop.time() - began)
        if linger_s > 0:
            await asyncio.sleep(linger_s)
        if self._complete_lifecycle is not None:
            try:
                await self._complete_lifecycle()
            except Exception as error:  # the instance goes away anyway once the hook times out
                log.error("CompleteLifecycleAction failed: %s", error)
        self.finished.set()
        self._exit_process()
