"""Per-environment settings: defaults, overrides from the environment, refusal of bad values."""

from __future__ import annotations

import pytest

from infra.main import main
from infra.policy import PolicyError
from infra.stack.settings import load_settings


def test_each_environment_has_its_own_defaults() -> None:
    dev, prod = load_settings("dev"), load_settings("prod")
    assert (dev.environment, prod.environment) == ("dev", "prod")
    assert dev.instance_type == prod.instance_type == "g5.xlarge"
    assert dev.state_bucket is None and prod.state_bucket is not None
    assert prod.warm_pool and not dev.warm_pool
    assert dev.vpc_cidr != prod.vpc_cidr
    assert (dev.image_ssm_parameter, dev.image_id) == ("/finsight/ami/latest", None)
    assert (prod.model_bucket, prod.model_prefix) == (
        "finsight-models-123456789012",
        "llama-3.1-8b-instruct/",
    )


def test_environment_variables_override_one_environment_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FINSIGHT_PROD_INSTANCE_TYPE", "g5.2xlarge")
    monkeypatch.setenv("FINSIGHT_PROD_ALARM_EMAIL", "oncall@finsight.example")
    assert load_settings("prod").instance_type == "g5.2xlarge"
    assert load_settings("prod").alarm_email == "oncall@finsight.example"
    assert load_settings("dev").instance_type == "g5.xlarge"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"region": "mars-north-1x"}, "region"),
        ({"availability_zones": ("us-east-1a",)}, "availability_zones"),
        ({"availability_zones": ("us-east-1a", "eu-west-1b")}, "availability_zones"),
        ({"instance_type": "g5"}, "instance_type"),
        ({"certificate_arn": "not-an-arn"}, "certificate_arn"),
        (
            {
                "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/abc",
            },
            "certificate_arn",
        ),
        ({"tenants_secret_arn": "finsight/tenants"}, "tenants_secret_arn"),
        ({"model_location": "/opt/models"}, "model_location"),
        ({"alarm_email": "nobody"}, "alarm_email"),
        ({"log_retention_days": 8}, "log_retention_days"),
        ({"longest_request_s": 5}, "longest_request_s"),
        ({"image_id": "ami-0123456789abcdef0"}, "image_ssm_parameter"),
        ({"vpc_id": "vpc-0123456789abcdef0"}, "public_subnet_ids"),
        ({"private_subnet_ids": ("subnet-0123456789abcdef0",) * 2}, "public_subnet_ids"),
        ({"warm_pool_size": 9}, "warm_pool_size"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(PolicyError) as refused:
        load_settings("prod", **overrides)
    assert refused.value.field == f"prod.{field}"


def test_an_unknown_environment_is_refused() -> None:
    with pytest.raises(PolicyError, match="environment"):
        load_settings("staging")


def test_an_existing_vpc_needs_its_subnets_and_is_accepted_with_them() -> None:
    settings = load_settings(
        "dev",
        vpc_id="vpc-0123456789abcdef0",
        public_subnet_ids=("subnet-0000000000000000a", "subnet-0000000000000000b"),
        private_subnet_ids=("subnet-0000000000000000c", "subnet-0000000000000000d"),
    )
    assert settings.vpc_id == "vpc-0123456789abcdef0"


def test_synth_stops_with_the_field_before_building_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FINSIGHT_DEV_REGION", "nowhere")
    with pytest.raises(SystemExit) as stopped:
        main()
    assert "dev.region" in str(stopped.value.code)


@pytest.mark.parametrize(
    "overrides",
    [
        {"api_domain": "API.example.com", "hosted_zone_id": "Z0123456789ABC"},
        {"api_domain": "a" * 250 + ".com", "hosted_zone_id": "Z0123456789ABC"},
        {"api_domain": "api.example.com"},
    ],
)
def test_an_api_domain_is_a_lower_case_dns_name_with_its_zone(overrides: dict[str, str]) -> None:
    with pytest.raises(PolicyError) as refused:
        load_settings("prod", **overrides)
    assert refused.value.field == "prod.api_domain"
    settings = load_settings("prod", api_domain="api.example.com", hosted_zone_id="Z0123456789ABC")
    assert settings.api_domain == "api.example.com"
