"""One typed settings object per environment: everything a deploy varies, validated at synth.

Values come from the class defaults, overridden by environment variables with the
environment's prefix (`FINSIGHT_PROD_CERTIFICATE_ARN=...`); a bad value stops synth with
the field's name. The defaults are the documentation's example account, so a synth works
anywhere but a deploy fails until real ARNs are given.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.policy.aws_rules import METRICS_NAMESPACE
from infra.policy.errors import PolicyError

REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$"
# Named once: an environment class that changes a default redeclares the whole field.
VPC_CIDR_PATTERN = r"^\d+\.\d+\.\d+\.\d+/(1[6-9]|2[0-4])$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# CloudWatch Logs retention values (days) the API accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827)

SubnetId = Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]


class StackSettings(BaseSettings):
    """The deploy-time choices of one environment (the policy itself lives in infra.policy)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_nested_delimiter="__")

    environment: Literal["dev", "prod"]
    region: str = Field("us-east-1", pattern=REGION_PATTERN)
    availability_zones: tuple[str, ...] = ("us-east-1a", "us-east-1b")

    # Network: create a VPC (vpc_cidr) or use an existing one (vpc_id and its subnets).
    vpc_cidr: str = Field("10.40.0.0/16", pattern=VPC_CIDR_PATTERN)
    vpc_id: str | None = Field(None, pattern=r"^vpc-[0-9a-f]{8,17}$")
    public_subnet_ids: tuple[SubnetId, ...] = ()
    private_subnet_ids: tuple[SubnetId, ...] = ()

    # Fleet. The image: the SSM parameter the image build publishes its AMI id to, read at
    # each deploy (a new id rolls out with an instance refresh), or a fixed AMI id.
    instance_type: str = Field("g5.xlarge", pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    image_ssm_parameter: str | None = Field("/finsight/ami/latest", pattern=r"^/[\w./-]+$")
    image_id: str | None = Field(None, pattern=r"^ami-[0-9a-f]{8,17}$")
    root_volume_gb: int = Field(100, ge=30, le=1000)
    warm_pool: bool = False
    warm_pool_size: int = Field(1, ge=0, le=4)
    model_location: str = Field(
        "s3://finsight-models-123456789012/llama-3.1-8b-instruct/",
        pattern=r"^s3://[a-z0-9.-]{3,63}/",
    )
    tenants_secret_arn: str = Field(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:finsight/tenants-AbCdEf",
        pattern=r"^arn:aws[\w-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$",
    )
    # Where the gateways and the image's CloudWatch agent publish. The agent's config is baked
    # into the image (ami/cloudwatch/) with this default: changing it means rebuilding the
    # image with the same value.
    cloudwatch_namespace: str = Field(METRICS_NAMESPACE, pattern=r"^[A-Za-z0-9._/#:-]{1,255}$")

    # Load balancer
    certificate_arn: str = Field(
        "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
        pattern=r"^arn:aws[\w-]*:acm:[a-z0-9-]+:\d{12}:certificate/[\w-]+$",
    )
    # DNS: the API's name in a Route 53 hosted zone (both or neither). The stack then writes
    # an alias record to the load balancer, and a DNS-validated certificate when no
    # certificate_arn is given.
    # pydantic's regex engine has no look-ahead: the name's length is its own constraint.
    api_domain: str | None = Field(
        None,
        min_length=4,
        max_length=253,
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    )
    hosted_zone_id: str | None = Field(None, pattern=r"^Z[A-Z0-9]{1,31}$")
    # The longest request the service accepts (a long streamed answer, queueing included):
    # it sizes the ALB idle timeout, the deregistration delay and the drain deadline.
    longest_request_s: int = Field(300, ge=30, le=3600)
    deletion_protection: bool = True

    # Observability
    alarm_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
    latency_sla_p99_s: float = Field(20.0, gt=0, le=600)
    error_rate_5xx_percent: float = Field(1.0, gt=0, le=100)
    log_retention_days: int = 30

    # The calendar Lambda (NYSE holidays and early closes on top of the recurring actions).
    market_calendar: bool = True

    # Terraform state: an S3 bucket with S3-native locking, or a local file otherwise.
    state_bucket: str | None = Field(None, pattern=BUCKET_PATTERN)
    state_key: str = Field("finsight-serving/terraform.tfstate", min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> StackSettings:
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(f"log_retention_days must be one of {LOG_RETENTION_DAYS}")
        if len(set(self.availability_zones)) < 2:
            raise ValueError("availability_zones must list at least 2 distinct zones")
        for zone in self.availability_zones:
            if not re.fullmatch(re.escape(self.region) + r"[a-z]", zone):
                raise ValueError(f"availability_zones: {zone!r} is not a zone of {self.region}")
        if (self.image_ssm_parameter is None) == (self.image_id is None):
            raise ValueError("image_ssm_parameter / image_id: set exactly one of them")
        if self.vpc_id is not None:
            for name in ("public_subnet_ids", "private_subnet_ids"):
                if len(getattr(self, name)) < 2:
                    raise ValueError(f"{name} must list at least 2 subnets when vpc_id is set")
        elif self.public_subnet_ids or self.private_subnet_ids:
            raise ValueError("public_subnet_ids / private_subnet_ids need vpc_id")
        if (self.api_domain is None) != (self.hosted_zone_id is None):
            raise ValueError("api_domain / hosted_zone_id: set both or neither")
        if not self.certificate_arn.split(":")[3] == self.region:
            raise ValueError(f"certificate_arn must be in the stack's region {self.region}")
        if self.warm_pool and self.instance_type.split(".")[0] in ("g5g",):
            raise ValueError("warm_pool is not supported for this instance family")
        return self

    @property
    def drain_deadline_s(self) -> int:
        return self.longest_request_s

    @property
    def model_bucket(self) -> str:
        return self.model_location.removeprefix("s3://").split("/", 1)[0]

    @property
    def model_prefix(self) -> str:
        return self.model_location.removeprefix("s3://").split("/", 1)[1]


class DevSettings(StackSettings):
    model_config = SettingsConfigDict(env_prefix="FINSIGHT_DEV_")

    environment: Literal["dev", "prod"] = "dev"
    log_retention_days: int = 14


class ProdSettings(StackSettings):
    model_config = SettingsConfigDict(env_prefix="FINSIGHT_PROD_")

    environment: Literal["dev", "prod"] = "prod"
    vpc_cidr: str = Field("10.41.0.0/16", pattern=VPC_CIDR_PATTERN)
    warm_pool: bool = True
    log_retention_days: int = 90
    state_bucket: str | None = Field(
        "finsight-terraform-state-123456789012", pattern=BUCKET_PATTERN
    )


def load_settings(environment: str, **overrides: object) -> StackSettings:
    """The settings of one environment; a bad value raises PolicyError naming its field."""
    classes: dict[str, type[StackSettings]] = {"dev": DevSettings, "prod": ProdSettings}
    if environment not in classes:
        raise PolicyError("environment", f"must be one of {sorted(classes)}, got {environment!r}")
    try:
        return classes[environment](**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        field = ".".join(str(part) for part in first["loc"]) or _field_in(message)
        raise PolicyError(f"{environment}.{field}", message) from None


def _field_in(message: str) -> str:
    """Cross-field checks start their message with the field they refuse."""
    match = re.match(r"[a-z_]+", message)
    return match.group(0) if match else "settings"
