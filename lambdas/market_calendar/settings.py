"""The calendar Lambda's configuration (environment set by the stack) and its event, validated.

Plain dataclasses rather than pydantic-settings: the zip then vendors no compiled package,
so one build serves every Lambda architecture and stays small.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.policy import FLEET_POLICY, FleetPolicy, PolicyError
from infra.policy.loader import policy_from_mapping

DEFAULT_HORIZON_DAYS = 7
# Weeks of demand history the learned profile reads (0: off). CloudWatch keeps 1-minute
# datapoints for 15 days, so 2 weeks is what 1-minute history can give.
DEFAULT_PROFILE_WEEKS = 2
MAX_PROFILE_WEEKS = 2
# Long enough to cover a long weekend after a missed run; the exchange calendar makes longer
# horizons pointless and each day costs describe/put calls.
MAX_HORIZON_DAYS = 31
# Auto Scaling group names: 1-255 characters, no colon (a colon would make it an ARN).
_GROUP_NAME = re.compile(r"^[^:]{1,255}$")


class ConfigError(ValueError):
    """The function's environment or event is invalid: one line naming the variable or field."""


@dataclass(frozen=True)
class CalendarSettings:
    """What the stack tells the function: which group, how far ahead, under which policy."""

    asg_name: str
    horizon_days: int = DEFAULT_HORIZON_DAYS
    policy: FleetPolicy = FLEET_POLICY
    profile_weeks: int = DEFAULT_PROFILE_WEEKS

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CalendarSettings:
        asg_name = environ.get("ASG_NAME", "").strip()
        if not asg_name:
            raise ConfigError("ASG_NAME: must name the Auto Scaling group, got nothing")
        if not _GROUP_NAME.match(asg_name):
            raise ConfigError(f"ASG_NAME: not an Auto Scaling group name, got {asg_name!r}")
        horizon_text = environ.get("HORIZON_DAYS", str(DEFAULT_HORIZON_DAYS)).strip()
        try:
            horizon_days = int(horizon_text)
        except ValueError:
            raise ConfigError(
                f"HORIZON_DAYS: must be a whole number of days, got {horizon_text!r}"
            ) from None
        if not 1 <= horizon_days <= MAX_HORIZON_DAYS:
            raise ConfigError(
                f"HORIZON_DAYS: must be between 1 and {MAX_HORIZON_DAYS}, got {horizon_days}"
            )
        weeks_text = environ.get("PROFILE_WEEKS", str(DEFAULT_PROFILE_WEEKS)).strip()
        try:
            profile_weeks = int(weeks_text)
        except ValueError:
            raise ConfigError(
                f"PROFILE_WEEKS: must be a whole number of weeks, got {weeks_text!r}"
            ) from None
        if not 0 <= profile_weeks <= MAX_PROFILE_WEEKS:
            raise ConfigError(
                f"PROFILE_WEEKS: must be between 0 (off) and {MAX_PROFILE_WEEKS} (CloudWatch "
                f"keeps 1-minute data 15 days), got {profile_weeks}"
            )
        return cls(
            asg_name=asg_name,
            horizon_days=horizon_days,
            policy=_policy_from_env(environ.get("FLEET_POLICY_JSON", "")),
            profile_weeks=profile_weeks,
        )


def _policy_from_env(text: str) -> FleetPolicy:
    # The stack writes the policy it compiled into the recurring actions, so the function and
    # the group agree even if the packaged config.py and the deployed stack ever drift.
    if not text.strip():
        return FLEET_POLICY
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"FLEET_POLICY_JSON: not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"FLEET_POLICY_JSON: must be a JSON object, got {type(data).__name__}")
    try:
        return policy_from_mapping(data, FLEET_POLICY)
    except PolicyError as error:
        raise ConfigError(f"FLEET_POLICY_JSON: {error}") from None


@dataclass(frozen=True)
class CalendarRequest:
    """One invocation: the first local date to process (default today) and whether to apply."""

    date: dt.date | None = None
    dry_run: bool = False

    @classmethod
    def from_event(cls, event: Any) -> CalendarRequest:
        if event is None:
            return cls()
        if not isinstance(event, Mapping):
            raise ConfigError(f"event: must be a JSON object, got {type(event).__name__}")
        unknown = sorted(set(event) - {"date", "dry_run"})
        if unknown:
            raise ConfigError(f"event.{unknown[0]}: unknown field; allowed: date, dry_run")
        date: dt.date | None = None
        if event.get("date") is not None:
            text = event["date"]
            try:
                date = dt.date.fromisoformat(text) if isinstance(text, str) else None
            except ValueError:
                date = None
            if date is None or len(text) != len("YYYY-MM-DD"):
                raise ConfigError(f"event.date: must be a date as YYYY-MM-DD, got {text!r}")
        dry_run = event.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise ConfigError(f"event.dry_run: must be true or false, got {dry_run!r}")
        return cls(date=date, dry_run=dry_run)
