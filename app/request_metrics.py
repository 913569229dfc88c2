"""Each inference request judged against the SLO, and its access line made a CloudWatch
Embedded Metric Format (EMF) document, so the log agent's shipping turns it into metrics.

`slo_miss` (a pure function) says whether a request counts against the SLO and, if so,
whether it missed. `RequestMetrics.annotate` adds that verdict to the access line and,
where the line names the instance's Auto Scaling group, the `_aws` member that tells
CloudWatch Logs which of the line's own fields are metrics (the EMF specification:
docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html). A metric's name is the line's field
name, since EMF reads a metric's value from the root member of that name.

Only counted requests to `contract.SLO_ROUTES` from an authenticated tenant carry
metrics: the dimension values (tenant, route, shed reason) then come from bounded sets,
so the number of custom metrics cannot grow with what clients send.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.admission import CLIENT_CLOSED, CLIENT_GONE
from app.logs import JsonText
from contract import (
    GROUP_DIMENSION,
    REQUEST_DIMENSION_SETS,
    REQUEST_DURATION_METRIC,
    REQUEST_QUEUE_WAIT_METRIC,
    REQUEST_TTFT_METRIC,
    REQUESTS_SHED_METRIC,
    SHED_DIMENSION_SETS,
    SLO_MISS_METRIC,
    SLO_ROUTES,
)

if TYPE_CHECKING:
    from app.settings import GatewaySettings

# Standard resolution: the SLO alarms' windows are 5 minutes and longer, and a
# high-resolution custom metric costs the same per metric but its alarms cost more.
STORAGE_RESOLUTION_S = 60
MILLISECONDS = "Milliseconds"
COUNT = "Count"


@dataclass(frozen=True, slots=True)
class SloTargets:
    """A tenant's targets, in milliseconds as the access line measures."""

    ttft_ms: float
    e2e_ms: float

    @classmethod
    def from_seconds(cls, ttft_s: float, e2e_s: float) -> SloTargets:
        return cls(ttft_s * 1000, e2e_s * 1000)


def slo_miss(
    status: int,
    stream: bool | None,
    ttft_ms: float | None,
    duration_ms: float,
    shed_reason: str | None,
    targets: SloTargets,
) -> int | None:
    """1 if the request counts against the SLO and missed it, 0 if it met it, None if it
    does not count (the client's own mistake or limit, or a client that left in time)."""
    if 200 <= status < 300:
        # A non-streamed answer is judged end to end only: its client sees nothing, no
        # first token either, before the whole answer.
        if stream and (ttft_ms is None or ttft_ms > targets.ttft_ms):
            return 1
        return int(duration_ms > targets.e2e_ms)
    if status >= 500:
        # Failed or refused by us: vLLM failing (502/504, a stream broken mid-way), the
        # instance full, the queue wait over, the circuit open, draining.
        return 1
    if status == 429:
        # The tenant's share of the queue is full: capacity ours to add, so it counts.
        # A 429 without a shed reason would be a limit of the client's own.
        return 1 if shed_reason else None
    if status == CLIENT_CLOSED and stream is not None:
        # The client left. It counts only if it had already waited past its target: then
        # it was late whatever made it leave. A stream's target is its first token (the
        # first one's arrival, if late, or the wait without one); a whole answer's is the
        # end-to-end target, as for a served one. `stream` is None when the client left
        # before its body was read: that time was its own.
        if stream:
            waited_ms = ttft_ms if ttft_ms is not None else duration_ms
            return 1 if waited_ms > targets.ttft_ms else None
        return 1 if duration_ms > targets.e2e_ms else None
    # 400/401/404/408/413/422...: the client's request, key, path, body or reading.
    return None


class RequestMetrics:
    """Adds the SLO verdict and, with a group name, the EMF metadata to an access line.

    The directives are built and encoded once per combination of the line's optional
    metrics (eight at most) and shared by every line: per request, only the timestamp is
    new. Encoding them for each line would make it several times dearer (`make bench`
    prints the EMF line's cost beside the plain line's).
    """

    def __init__(
        self,
        *,
        namespace: str,
        autoscaling_group_name: str | None,
        default_targets: SloTargets,
        tenant_targets: Mapping[str, SloTargets] | None = None,
    ) -> None:
        self._namespace = namespace
        self._group = autoscaling_group_name
        self._default = default_targets
        self._tenants = dict(tenant_targets or {})
        self._request_dimensions = [list(names) for names in REQUEST_DIMENSION_SETS]
        self._shed_directive: dict[str, Any] = {
            "Namespace": namespace,
            "Dimensions": [list(names) for names in SHED_DIMENSION_SETS],
            "Metrics": [_definition(REQUESTS_SHED_METRIC, COUNT)],
        }
        self._directives: dict[tuple[bool, bool, bool], str] = {}

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> RequestMetrics:
        return cls(
            namespace=settings.cloudwatch_namespace,
            autoscaling_group_name=settings.autoscaling_group_name,
            default_targets=SloTargets.from_seconds(settings.slo_ttft_s, settings.slo_e2e_s),
            tenant_targets={
                tenant: SloTargets.from_seconds(ttft_s, e2e_s)
                for tenant, (ttft_s, e2e_s) in settings.slo_targets_by_tenant.items()
            },
        )

    def targets(self, tenant: str) -> SloTargets:
        return self._tenants.get(tenant, self._default)

    def annotate(self, fields: dict[str, Any]) -> None:
        """Judge the request of this access line and make the line an EMF document.

        Reads `route`, `tenant`, `status`, `stream`, `ttft_ms`, `duration_ms`, `queue_ms`
        and `shed_reason`, the access line's own fields; leaves a line that does not count
        unchanged.
        """
        tenant = fields.get("tenant")
        if tenant is None or fields["route"] not in SLO_ROUTES:
            return
        shed_reason = fields.get("shed_reason")
        miss = slo_miss(
            fields["status"],
            fields.get("stream"),
            fields.get(REQUEST_TTFT_METRIC),
            fields[REQUEST_DURATION_METRIC],
            shed_reason,
            self.targets(tenant),
        )
        if miss is None:
            return
        fields[SLO_MISS_METRIC] = miss
        # A client that left while queued is recorded with a shed reason, but it is no
        # refusal of ours (the scaling signal's `Shed` leaves it out too).
        shed = shed_reason is not None and shed_reason != CLIENT_GONE
        if shed:
            fields[REQUESTS_SHED_METRIC] = 1
        if self._group is None:
            return  # local: the verdict stays on the line for Logs Insights, no metrics
        fields[GROUP_DIMENSION] = self._group
        key = (REQUEST_TTFT_METRIC in fields, REQUEST_QUEUE_WAIT_METRIC in fields, shed)
        directives = self._directives.get(key)
        if directives is None:
            directives = self._directives[key] = json.dumps(self._build(*key))
        timestamp_ms = int(time.time() * 1000)  # the request's end, when its outcome is known
        fields["_aws"] = JsonText(
            f'{{"Timestamp":{timestamp_ms},"CloudWatchMetrics":{directives}}}'
        )

    def _build(self, ttft: bool, queue: bool, shed: bool) -> list[dict[str, Any]]:
        timings = (
            (REQUEST_TTFT_METRIC, ttft),
            (REQUEST_DURATION_METRIC, True),
            (REQUEST_QUEUE_WAIT_METRIC, queue),
        )
        metrics = [_definition(name, MILLISECONDS) for name, present in timings if present]
        metrics.append(_definition(SLO_MISS_METRIC, COUNT))
        request = {
            "Namespace": self._namespace,
            "Dimensions": self._request_dimensions,
            "Metrics": metrics,
        }
        return [request, self._shed_directive] if shed else [request]


def _definition(name: str, unit: str) -> dict[str, Any]:
    return {"Name": name, "Unit": unit, "StorageResolution": STORAGE_RESOLUTION_S}
