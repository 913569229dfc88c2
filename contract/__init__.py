"""The names the gateway, the stack, the calendar Lambda and the `fleet` CLI share.

Constants only, importing nothing from the project: the gateway on the image (`app`) and
the stack (`infra`) both import this package without pulling in each other. A value that
follows from the policy is not here: the stack computes it and writes it into gateway.env.
"""

from __future__ import annotations

# CloudWatch: each ready gateway publishes these per instance every metric period, with the
# group as dimension, so the alarms' Average across instances is load per instance.
# Demand: sequences in flight plus sequences queued at the gateway (the scaling signal,
# capped by no limit). QueueDepth: sequences queued at the gateway plus vLLM's waiting.
# Shed: requests refused in the period (503 or 429), whatever the reason.
METRICS_NAMESPACE = "FinsightServing"  # the default; the stack writes the one it deploys
DEMAND_METRIC = "Demand"
SHED_METRIC = "Shed"
QUEUE_DEPTH_METRIC = "QueueDepth"
GROUP_DIMENSION = "AutoScalingGroupName"

# Scheduled actions on the group, by owner: the stack's recurring market-hours actions, the
# calendar Lambda's one-off corrections, and the overrides `fleet override` adds. Each
# owner touches only its own names.
RECURRING_ACTION_PREFIX = "market-hours-"
PREWARM_ACTION = f"{RECURRING_ACTION_PREFIX}prewarm"
CLOSE_ACTION = f"{RECURRING_ACTION_PREFIX}close"
CALENDAR_ACTION_PREFIX = "finsight-calendar-"
OVERRIDE_ACTION_PREFIX = "finsight-override-"

# /etc/finsight/gateway.env, written by the stack's user data. `GATEWAY_<FIELD>` variables
# are read by the gateway's settings (app/settings.py), one per field of the same name.
GATEWAY_ENV_PREFIX = "GATEWAY_"
GATEWAY_ENV_PATH = "/etc/finsight/gateway.env"
# Read by gateway.service's command line (uvicorn --timeout-keep-alive), not by the
# gateway's settings: how long uvicorn keeps an idle client connection open. It must
# outlast the load balancer's idle timeout, or the ALB reuses a closed connection (502).
GATEWAY_KEEP_ALIVE_ENV = "UVICORN_TIMEOUT_KEEP_ALIVE"


def gateway_env_name(field: str) -> str:
    """The variable that sets one field of the gateway's settings: `GATEWAY_<FIELD>`."""
    return f"{GATEWAY_ENV_PREFIX}{field.upper()}"


# Tenant ids, as the tenants document (app/tenants.py) and the SLO's per-tenant targets
# (infra/policy/slo.py) both accept them: safe as a CloudWatch dimension value.
TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

# Per-request metrics. The gateway's access line is a CloudWatch Embedded Metric Format
# document: CloudWatch Logs turns its fields into metrics as the log agent ships the file,
# with no call per request. Metric names are the line's own field names. Only requests
# to the inference routes from a known tenant carry metrics (bounded dimension values).
REQUEST_TTFT_METRIC = "ttft_ms"  # streams only: the client's time to the first token
REQUEST_DURATION_METRIC = "duration_ms"  # to the last byte
REQUEST_QUEUE_WAIT_METRIC = "queue_ms"  # waiting for a turn in the gateway's queue
# 1 when the request counts against the SLO (late, failed or shed), 0 when it met it:
# its Average over a window is the error ratio, its SampleCount the requests counted.
SLO_MISS_METRIC = "slo_miss"
REQUESTS_SHED_METRIC = "requests_shed"  # 1 per request refused, by reason
TENANT_DIMENSION = "tenant"
ROUTE_DIMENSION = "route"
SHED_REASON_DIMENSION = "shed_reason"
SLO_ROUTES = ("/v1/completions", "/v1/chat/completions")
# Every metric of the access line is published for each of these dimension sets: fleet,
# per tenant, per tenant and route. Sheds are counted by reason, fleet-wide.
REQUEST_DIMENSION_SETS: tuple[tuple[str, ...], ...] = (
    (GROUP_DIMENSION,),
    (GROUP_DIMENSION, TENANT_DIMENSION),
    (GROUP_DIMENSION, TENANT_DIMENSION, ROUTE_DIMENSION),
)
SHED_DIMENSION_SETS: tuple[tuple[str, ...], ...] = ((GROUP_DIMENSION, SHED_REASON_DIMENSION),)


def format_tenant_targets(targets: dict[str, tuple[float, float]]) -> str:
    """Per-tenant SLO targets for gateway.env: `acme=3:40,globex=2.5:30` (ttft_s:e2e_s).

    Plain characters only (no quotes, no spaces), so systemd's EnvironmentFile parser
    passes the value through unchanged.
    """
    entries = sorted(targets.items())
    return ",".join(f"{tenant}={_number(ttft)}:{_number(e2e)}" for tenant, (ttft, e2e) in entries)


def parse_tenant_targets(text: str) -> dict[str, tuple[float, float]]:
    """The inverse of `format_tenant_targets`; ValueError names the entry it cannot read."""
    targets: dict[str, tuple[float, float]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        tenant, separator, pair = entry.partition("=")
        ttft, colon, e2e = pair.partition(":")
        try:
            if not (separator and colon and tenant):
                raise ValueError
            targets[tenant] = (float(ttft), float(e2e))
        except ValueError:
            raise ValueError(f"cannot read {entry!r}: expected <tenant>=<ttft_s>:<e2e_s>") from None
    return targets


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
