"""Per-environment settings: defaults, overrides from the environment, refusal of bad values."""

from __future__ import annotations

import pytest

from infra.main import main
from infra.policy import FLEET_POLICY, PolicyError
from infra.policy.cold_start import WeightPath
from infra.stack.settings import load_settings

from .conftest import DEPLOY_SETTINGS, NAMED_SETTINGS, REPO


def test_each_environment_has_its_own_defaults() -> None:
    dev, prod = load_settings("dev"), load_settings("prod")
    assert (dev.environment, prod.environment) == ("dev", "prod")
    assert dev.instance_type == prod.instance_type == "g5.xlarge"
    assert prod.warm_pool and not dev.warm_pool
    assert dev.vpc_cidr != prod.vpc_cidr
    assert (dev.image_ssm_parameter, dev.image_id) == ("/finsight/ami/latest", None)
    # Account-specific values have no default: an example ARN would deploy (issue 11, 6).
    for settings in (dev, prod):
        assert settings.certificate_arn is None and settings.tenants_secret_arn is None
        assert settings.state_bucket is None and settings.model_location is None
        assert (settings.model_bucket, settings.model_prefix) == (None, None)


def test_environment_variables_override_one_environment_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FINSIGHT_PROD_INSTANCE_TYPE", "g5.2xlarge")
    monkeypatch.setenv("FINSIGHT_PROD_ALARM_EMAIL", "oncall@finsight.example")
    assert load_settings("prod").instance_type == "g5.2xlarge"
    assert load_settings("prod").alarm_email == "oncall@finsight.example"
    assert load_settings("dev").instance_type == "g5.xlarge"


def test_the_alb_alarm_setting_and_the_ticket_address_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FINSIGHT_PROD_ALB_RESPONSE_TIME_P99_S", "15")
    monkeypatch.setenv("FINSIGHT_PROD_TICKET_EMAIL", "tickets@finsight.example")
    prod = load_settings("prod")
    assert (prod.alb_response_time_p99_s, prod.ticket_email) == (15, "tickets@finsight.example")
    assert load_settings("dev").ticket_email is None


def test_the_renamed_variable_stops_synth_naming_the_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a deploy environment that still sets the ALB alarm's old variable
    monkeypatch.setenv("FINSIGHT_PROD_LATENCY_SLA_P99_S", "15")
    # THEN prod refuses it (not silently back to the default), and dev is not concerned
    with pytest.raises(PolicyError) as refused:
        load_settings("prod")
    assert refused.value.field == "prod.alb_response_time_p99_s"
    assert "FINSIGHT_PROD_ALB_RESPONSE_TIME_P99_S" in str(refused.value)
    assert "FINSIGHT_PROD_LATENCY_SLA_P99_S" in str(refused.value)
    assert load_settings("dev").alb_response_time_p99_s == 20


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
        # An empty key prefix would grant the whole bucket (issue 11, 10).
        ({"model_location": "s3://finsight-models/"}, "model_location"),
        ({"model_location": "s3://finsight-models"}, "model_location"),
        ({"model_location": "s3://finsight-models/weights*/"}, "model_location"),
        # Baked weights are what no model_location means, not a way to load one.
        ({"model_load": "baked"}, "model_load"),
        ({"model_load": "lazy"}, "model_load"),
        ({"min_replicas": 5}, "min_replicas"),
        ({"max_replicas": 0}, "max_replicas"),
        ({"max_replicas": 17}, "max_replicas"),
        ({"max_replicas": 1}, "market_hours_min_replicas"),
        ({"market_hours_min_replicas": 0, "min_replicas": 1}, "market_hours_min_replicas"),
        ({"api_domain": "api.finsight.example.com"}, "api_domain"),
        ({"alarm_email": "nobody"}, "alarm_email"),
        ({"ticket_email": "nobody"}, "ticket_email"),
        ({"alb_response_time_p99_s": 0}, "alb_response_time_p99_s"),
        ({"alb_response_time_p99_s": 601}, "alb_response_time_p99_s"),
        # The setting's old name is no setting at all.
        ({"latency_sla_p99_s": 15}, "latency_sla_p99_s"),
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


def test_the_weight_path_follows_the_location_and_the_load() -> None:
    location = "s3://finsight-models/llama/"
    assert load_settings("prod").weight_path is WeightPath.BAKED
    assert load_settings("prod", model_location=location).weight_path is WeightPath.STREAM
    downloading = load_settings("prod", model_location=location, model_load="download")
    assert downloading.weight_path is WeightPath.DOWNLOAD


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


def test_the_root_volume_is_never_smaller_than_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    # The image's size is one number, in the file the Packer template reads (issue 11, 1).
    image_gb = int((REPO / "ami" / "root-volume-gb").read_text())
    for environment in ("dev", "prod"):
        assert load_settings(environment).root_volume_gb == image_gb
        with pytest.raises(PolicyError) as refused:
            load_settings(environment, root_volume_gb=image_gb - 1)
        assert refused.value.field == f"{environment}.root_volume_gb"
        assert f"between {image_gb}" in refused.value.problem and "16384" in refused.value.problem
        assert load_settings(environment, root_volume_gb=image_gb + 50).root_volume_gb > image_gb
    monkeypatch.setenv("FINSIGHT_PROD_ROOT_VOLUME_GB", "100")
    with pytest.raises(PolicyError, match=r"prod\.root_volume_gb"):
        load_settings("prod")


def test_a_deploy_needs_the_account_settings_and_names_their_variables() -> None:
    dev, prod = load_settings("dev"), load_settings("prod")
    assert set(dev.deploy_blockers()) == {"certificate_arn", "tenants_secret_arn"}
    assert set(prod.deploy_blockers()) == {"certificate_arn", "tenants_secret_arn", "state_bucket"}
    assert "FINSIGHT_PROD_CERTIFICATE_ARN" in prod.deploy_blockers()["certificate_arn"]
    assert "FINSIGHT_DEV_TENANTS_SECRET_ARN" in dev.deploy_blockers()["tenants_secret_arn"]
    assert "FINSIGHT_PROD_STATE_BUCKET" in prod.deploy_blockers()["state_bucket"]
    for environment, overrides in DEPLOY_SETTINGS.items():
        assert load_settings(environment, **overrides).deploy_blockers() == {}
    # With a name in a hosted zone the stack requests the certificate itself.
    assert load_settings("prod", **NAMED_SETTINGS).deploy_blockers() == {}


def test_dev_runs_one_instance_without_a_market_hours_minimum() -> None:
    # Issue 11, 9: dev followed prod's schedule, about 2 g5 through every trading day.
    dev, prod = load_settings("dev"), load_settings("prod")
    assert dev.replica_sizes(FLEET_POLICY) == (1, 1, 1)
    assert prod.replica_sizes(FLEET_POLICY) == (
        FLEET_POLICY.default.min_replicas,
        FLEET_POLICY.market_hours.min_replicas,
        FLEET_POLICY.max_replicas,
    )
    policy = dev.fleet_policy(FLEET_POLICY)
    assert (policy.default.min_replicas, policy.market_hours.min_replicas) == (1, 1)
    assert policy.max_replicas == 1
    # Everything else is the shared policy's.
    assert policy.default.target_ongoing_requests == FLEET_POLICY.default.target_ongoing_requests
    bigger = load_settings("dev", max_replicas=3, market_hours_min_replicas=2)
    assert bigger.replica_sizes(FLEET_POLICY) == (1, 2, 3)
