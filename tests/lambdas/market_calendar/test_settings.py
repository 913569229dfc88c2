"""The function's environment is validated with one line naming the variable at fault."""

from __future__ import annotations

import json

import pytest

from lambdas.market_calendar.settings import DEFAULT_HORIZON_DAYS, CalendarSettings, ConfigError


def test_defaults_use_the_packaged_policy() -> None:
    settings = CalendarSettings.from_env({"ASG_NAME": "finsight-fleet"})
    assert settings.horizon_days == DEFAULT_HORIZON_DAYS
    assert settings.policy.market_hours.min_replicas == 2


def test_policy_json_layers_over_the_packaged_policy() -> None:
    policy = json.dumps(
        {
            "market_hours": {"min_replicas": 3},
            "special_days": [
                {
                    "date": "2026-12-18",
                    "start": "15:00",
                    "end": "17:00",
                    "min_replicas": 4,
                    "reason": "index rebalance",
                }
            ],
        }
    )
    settings = CalendarSettings.from_env(
        {"ASG_NAME": "g", "HORIZON_DAYS": "14", "FLEET_POLICY_JSON": policy}
    )
    assert settings.horizon_days == 14
    assert settings.policy.market_hours.min_replicas == 3
    assert settings.policy.special_days[0].reason == "index rebalance"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "ASG_NAME: must name the Auto Scaling group"),
        ({"ASG_NAME": "  "}, "ASG_NAME: must name the Auto Scaling group"),
        ({"ASG_NAME": "arn:aws:autoscaling:x"}, "ASG_NAME: not an Auto Scaling group name"),
        ({"ASG_NAME": "g", "HORIZON_DAYS": "week"}, "HORIZON_DAYS: must be a whole number"),
        ({"ASG_NAME": "g", "HORIZON_DAYS": "0"}, "HORIZON_DAYS: must be between 1 and 31, got 0"),
        ({"ASG_NAME": "g", "PROFILE_WEEKS": "two"}, "PROFILE_WEEKS: must be a whole number"),
        (
            {"ASG_NAME": "g", "PROFILE_WEEKS": "3"},
            "PROFILE_WEEKS: must be between 0 \\(off\\) and 2 \\(CloudWatch keeps 1-minute",
        ),
        ({"ASG_NAME": "g", "FLEET_POLICY_JSON": "{"}, "FLEET_POLICY_JSON: not valid JSON"),
        ({"ASG_NAME": "g", "FLEET_POLICY_JSON": "[]"}, "FLEET_POLICY_JSON: must be a JSON object"),
        (
            {"ASG_NAME": "g", "FLEET_POLICY_JSON": '{"market_hours": {"min_replicas": 9}}'},
            "FLEET_POLICY_JSON: market_hours.min_replicas: must be <= max_replicas",
        ),
        (
            {
                "ASG_NAME": "g",
                "FLEET_POLICY_JSON": '{"special_days": [{"date": "2026-12-18", "start": "17:00",'
                ' "end": "15:00", "min_replicas": 3, "reason": "x"}]}',
            },
            r"FLEET_POLICY_JSON: special_days\[0\].end: must be after start",
        ),
    ],
)
def test_bad_environment_is_one_clear_line(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        CalendarSettings.from_env(environ)
    assert "\n" not in str(caught.value)
