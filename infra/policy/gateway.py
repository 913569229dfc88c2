"""The gateway's settings that follow from the fleet policy, as the stack writes them.

The gateway on the image does not import the policy: a policy change reaches running
gateways only through the env file the stack's user data writes (`GatewayEnv` in
infra/stack/fleet.py), so every number here is rendered into it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from contract import format_tenant_targets, gateway_env_name
from infra.policy.fleet import FleetPolicy


@dataclass(frozen=True)
class GatewayPolicySettings:
    """Fields of the gateway's settings (app/settings.py), by their field names."""

    # The fair queue (infra/policy/queue.py), in sequences: sent to vLLM at once, waiting
    # at most, waiting per tenant at most, and the longest wait before a 503.
    max_running_sequences: int
    max_queued_sequences: int
    tenant_max_queued_sequences: int
    max_queue_wait_s: float
    # The scaling alarms' period: one published datapoint per period and instance.
    cloudwatch_interval_s: float
    # The SLO's targets (infra/policy/slo.py), which each access line's `slo_miss` judges
    # a request by: the default, and the tenants whose contract differs
    # (`contract.format_tenant_targets`).
    slo_ttft_s: float
    slo_e2e_s: float
    slo_tenant_targets: str

    def env(self) -> dict[str, str]:
        """`GATEWAY_<FIELD>=value` for gateway.env."""
        return {gateway_env_name(name): _env_value(value) for name, value in asdict(self).items()}


def gateway_policy_settings(policy: FleetPolicy) -> GatewayPolicySettings:
    # The two configs share every field read here (FleetPolicy refuses otherwise).
    config = policy.default
    queue = policy.queue
    return GatewayPolicySettings(
        max_running_sequences=queue.max_running,
        max_queued_sequences=queue.max_queued,
        tenant_max_queued_sequences=queue.tenant_max_queued,
        max_queue_wait_s=queue.max_queue_wait_s,
        cloudwatch_interval_s=float(config.metric_period_s),
        slo_ttft_s=float(policy.slo.ttft_s),
        slo_e2e_s=float(policy.slo.e2e_s),
        slo_tenant_targets=format_tenant_targets(policy.slo.tenant_targets()),
    )


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
