"""One typed settings object per environment: everything a deploy varies, validated at synth.

Values come from the class defaults, overridden by environment variables with the
environment's prefix (`FINSIGHT_PROD_CERTIFICATE_ARN=...`); a bad value stops synth with
the field's name. The account-specific values (certificate, tenants secret, prod's state
bucket) have no default: a synth for review works without them, and the synthesized plan
refuses to deploy until they are set (`deploy_blockers`).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.policy.aws_rules import METRICS_NAMESPACE
from infra.policy.cold_start import WeightPath
from infra.policy.config import FLEET_POLICY
from infra.policy.errors import PolicyError
from infra.policy.fleet import FleetPolicy
from infra.policy.scaling import MAX_REPLICAS_CEILING

REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$"
# Named once: an environment class that changes a default redeclares the whole field.
VPC_CIDR_PATTERN = r"^\d+\.\d+\.\d+\.\d+/(1[6-9]|2[0-4])$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"
# Settings renamed, by their old name: a deploy that still sets the old variable stops
# (an environment variable nobody reads would silently keep the default).
RENAMED_SETTINGS = {"latency_sla_p99_s": "alb_response_time_p99_s"}
# CloudWatch Logs retention values (days) the API accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827)

# The image's root volume size, read by the Packer template too: the launch template may ask
# for more, never less (EC2 refuses a volume smaller than the AMI's root snapshot).
IMAGE_ROOT_VOLUME_FILE = Path(__file__).resolve().parents[2] / "ami" / "root-volume-gb"
# EBS gp3 volumes hold at most 16 TiB.
MAX_ROOT_VOLUME_GB = 16384


@functools.cache
def image_root_volume_gb() -> int:
    """The image's root volume in GB, as the Packer template builds it (read when needed)."""
    return int(IMAGE_ROOT_VOLUME_FILE.read_text().strip())


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
    # At least the image's root snapshot (ami/root-volume-gb), at most gp3's 16 TiB.
    root_volume_gb: int = Field(default_factory=image_root_volume_gb)
    warm_pool: bool = False
    warm_pool_size: int = Field(1, ge=0, le=4)
    # Weights to fetch from S3 at boot instead of the ones baked into the image: a bucket and
    # a non-empty key prefix ending in "/" (the instances may read exactly that prefix).
    model_location: str | None = Field(
        None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^*?\s]*[^*?\s/][^*?\s]*/$"
    )
    # How an instance loads model_location's weights (infra/policy/cold_start.py compares the
    # paths): "stream" into GPU memory with vLLM's Run:ai Model Streamer, or "download" to the
    # instance-store NVMe first. Ignored without model_location (the baked weights).
    model_load: Literal["stream", "download"] = "stream"
    tenants_secret_arn: str | None = Field(
        None,
        pattern=r"^arn:aws[\w-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$",
    )
    # Where the gateways and the image's CloudWatch agent publish. The agent's config is baked
    # into the image (ami/cloudwatch/) with this default: changing it means rebuilding the
    # image with the same value.
    cloudwatch_namespace: str = Field(METRICS_NAMESPACE, pattern=r"^[A-Za-z0-9._/#:-]{1,255}$")

    # The environment's sizing on top of the policy (infra.policy): None keeps the policy's
    # value. Replicas outside market hours, inside them, and the most the group may run.
    min_replicas: int | None = Field(None, ge=0, le=MAX_REPLICAS_CEILING)
    market_hours_min_replicas: int | None = Field(None, ge=0, le=MAX_REPLICAS_CEILING)
    max_replicas: int | None = Field(None, ge=1, le=MAX_REPLICAS_CEILING)

    # Load balancer
    # None with api_domain set: the stack requests a DNS-validated certificate itself.
    certificate_arn: str | None = Field(
        None,
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
        # No look-ahead: pydantic's regex engine has none (the length bounds do its job).
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    )
    hosted_zone_id: str | None = Field(None, pattern=r"^Z[A-Z0-9]{1,31}$")
    # The longest request the service accepts (a long streamed answer, queueing included):
    # it sizes the ALB idle timeout, the deregistration delay and the drain deadline.
    longest_request_s: int = Field(300, ge=30, le=3600)
    deletion_protection: bool = True

    # Observability. Pages (the alarm topic) and tickets (the slow burn-rate alarms) go to
    # these addresses when set.
    alarm_email: str | None = Field(None, pattern=EMAIL_PATTERN)
    ticket_email: str | None = Field(None, pattern=EMAIL_PATTERN)
    # The ALB's p99 TargetResponseTime alarm: time to the response headers (for a stream,
    # before its first token), not the SLO, which the burn-rate alarms judge.
    alb_response_time_p99_s: float = Field(20.0, gt=0, le=600)
    error_rate_5xx_percent: float = Field(1.0, gt=0, le=100)
    log_retention_days: int = 30

    # The calendar Lambda (NYSE holidays and early closes on top of the recurring actions).
    market_calendar: bool = True

    # Terraform state: an S3 bucket with S3-native locking, or a local file otherwise.
    state_bucket: str | None = Field(None, pattern=BUCKET_PATTERN)
    state_key: str = Field("finsight-serving/terraform.tfstate", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _no_renamed_variable(cls, data: object) -> object:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for old, new in RENAMED_SETTINGS.items():
            variable = f"{prefix}{old}".upper()
            if prefix and variable in os.environ:
                raise ValueError(
                    f"{new}: {variable} is no longer read; the setting was renamed, set "
                    f"{f'{prefix}{new}'.upper()} instead"
                )
        return data

    @field_validator("root_volume_gb")
    @classmethod
    def _fits_the_image(cls, value: int) -> int:
        image_gb = image_root_volume_gb()
        if not image_gb <= value <= MAX_ROOT_VOLUME_GB:
            raise ValueError(
                f"must be between {image_gb} (the image's root snapshot, "
                f"ami/root-volume-gb) and {MAX_ROOT_VOLUME_GB} GB, got {value}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StackSettings:
        minimum, market, maximum = self.replica_sizes(FLEET_POLICY)
        if minimum > maximum:
            raise ValueError(f"min_replicas must be <= max_replicas ({maximum}), got {minimum}")
        if not minimum <= market <= maximum:
            raise ValueError(
                f"market_hours_min_replicas must be between min_replicas ({minimum}) and "
                f"max_replicas ({maximum}), got {market}"
            )
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
        if self.certificate_arn is not None and self.certificate_arn.split(":")[3] != self.region:
            raise ValueError(f"certificate_arn must be in the stack's region {self.region}")
        if self.warm_pool and self.instance_type.split(".")[0] in ("g5g",):
            raise ValueError("warm_pool is not supported for this instance family")
        return self

    # Whether a deploy must keep its Terraform state in S3 (state_bucket set).
    remote_state_required: ClassVar[bool] = False

    @property
    def drain_deadline_s(self) -> int:
        return self.longest_request_s

    @property
    def model_bucket(self) -> str | None:
        if self.model_location is None:
            return None
        return self.model_location.removeprefix("s3://").split("/", 1)[0]

    @property
    def weight_path(self) -> WeightPath:
        """The weight-loading path the boot timeline and the user data follow."""
        if self.model_location is None:
            return WeightPath.BAKED
        return WeightPath(self.model_load)

    @property
    def model_prefix(self) -> str | None:
        if self.model_location is None:
            return None
        return self.model_location.removeprefix("s3://").split("/", 1)[1]

    def replica_sizes(self, policy: FleetPolicy) -> tuple[int, int, int]:
        """(minimum, market-hours minimum, maximum): this environment's over the policy's."""

        def pick(setting: int | None, policy_value: int) -> int:
            return policy_value if setting is None else setting

        return (
            pick(self.min_replicas, policy.default.min_replicas),
            pick(self.market_hours_min_replicas, policy.market_hours.min_replicas),
            pick(self.max_replicas, policy.max_replicas),
        )

    def fleet_policy(self, policy: FleetPolicy) -> FleetPolicy:
        """`policy` with this environment's replica settings applied (a new, validated one)."""
        minimum, market, maximum = self.replica_sizes(policy)
        return replace(
            policy,
            default=replace(policy.default, min_replicas=minimum, max_replicas=maximum),
            market_hours=replace(policy.market_hours, min_replicas=market, max_replicas=maximum),
        )

    def env_name(self, field: str) -> str:
        """The environment variable that sets `field`: FINSIGHT_PROD_CERTIFICATE_ARN."""
        return f"{self.model_config.get('env_prefix', '')}{field}".upper()

    def deploy_blockers(self) -> dict[str, str]:
        """Settings a deploy still needs, by field: why each is needed, naming its variable.

        Empty when the settings can deploy; otherwise the stack carries one plan-time
        precondition per entry, so `terraform plan` (and `cdktf deploy`) stops naming them.
        """
        needed: dict[str, str] = {}
        if self.certificate_arn is None and self.api_domain is None:
            needed["certificate_arn"] = (
                f"{self.env_name('certificate_arn')} is not set: the HTTPS listener needs an "
                f"ACM certificate in {self.region} (or set {self.env_name('api_domain')} and "
                f"{self.env_name('hosted_zone_id')} and the stack requests one)"
            )
        if self.tenants_secret_arn is None:
            needed["tenants_secret_arn"] = (
                f"{self.env_name('tenants_secret_arn')} is not set: the gateways read their "
                "tenants from this Secrets Manager secret and refuse to start without it"
            )
        if self.remote_state_required and self.state_bucket is None:
            needed["state_bucket"] = (
                f"{self.env_name('state_bucket')} is not set: {self.environment} keeps its "
                "Terraform state in your S3 bucket (versioned, encrypted), not a local file"
            )
        return needed


class DevSettings(StackSettings):
    model_config = SettingsConfigDict(env_prefix="FINSIGHT_DEV_")

    environment: Literal["dev", "prod"] = "dev"
    log_retention_days: int = 14
    # A development fleet: one instance, no market-hours pre-warm.
    market_hours_min_replicas: int | None = Field(1, ge=0, le=MAX_REPLICAS_CEILING)
    max_replicas: int | None = Field(1, ge=1, le=MAX_REPLICAS_CEILING)


class ProdSettings(StackSettings):
    model_config = SettingsConfigDict(env_prefix="FINSIGHT_PROD_")

    environment: Literal["dev", "prod"] = "prod"
    vpc_cidr: str = Field("10.41.0.0/16", pattern=VPC_CIDR_PATTERN)
    warm_pool: bool = True
    log_retention_days: int = 90
    remote_state_required: ClassVar[bool] = True


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
    match = re.match(r"[a-z][a-z0-9_]*", message)
    return match.group(0) if match else "settings"
