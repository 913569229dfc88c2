"""The gateway's settings that follow from the fleet policy, as the stack writes them.

The gateway on the image does not import the policy: a policy change reaches running
gateways only through the env file the stack's user data writes (`GatewayEnv` in
infra/stack/fleet.py), so every number here is rendered into it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from contract import gateway_env_name
from infra.policy.fleet import FleetPolicy

# Admission: twice the per-instance target, room for a burst while the fleet scales out
# (the scale-out alarm needs the average above the target, which a lower cap would hide).
ADMISSION_HEADROOM = 2


@dataclass(frozen=True)
class GatewayPolicySettings:
    """Fields of the gateway's settings (app/settings.py), by their field names."""

    max_ongoing_requests: int
    # The scaling alarms' period: one published datapoint per period and instance.
    cloudwatch_interval_s: float

    def env(self) -> dict[str, str]:
        """`GATEWAY_<FIELD>=value` for gateway.env."""
        return {gateway_env_name(name): _env_value(value) for name, value in asdict(self).items()}


def gateway_policy_settings(policy: FleetPolicy) -> GatewayPolicySettings:
    # The two configs share every field read here (FleetPolicy refuses otherwise).
    config = policy.default
    return GatewayPolicySettings(
        max_ongoing_requests=max(1, math.ceil(ADMISSION_HEADROOM * config.target_ongoing_requests)),
        cloudwatch_interval_s=float(config.metric_period_s),
    )


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
