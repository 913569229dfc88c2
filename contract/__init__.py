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
