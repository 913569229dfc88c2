"""The gateway's settings: every knob, read from `GATEWAY_*` environment variables, bounded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.fair_queue import QueueLimits
from contract import (
    GATEWAY_ENV_PREFIX,
    METRICS_NAMESPACE,
    TENANT_ID_PATTERN,
    gateway_env_name,
    parse_tenant_targets,
)

ENV_PREFIX = GATEWAY_ENV_PREFIX

# Defaults for a gateway started without the stack (make serve, tests). On an instance the
# stack writes the values its policy gives (infra/policy/gateway.py) into gateway.env; a
# test holds these defaults equal to the shipped policy's.
# The fair queue (infra/policy/queue.py), in sequences: the 12 vLLM runs at once on an A10G
# run at once; 16 more may wait, 8 of them from one tenant, for at most 30 s.
DEFAULT_MAX_RUNNING_SEQUENCES = 12
DEFAULT_MAX_QUEUED_SEQUENCES = 16
DEFAULT_TENANT_MAX_QUEUED_SEQUENCES = 8
DEFAULT_MAX_QUEUE_WAIT_S = 30.0
# The policy's metric_period_s: the period of the high-resolution scaling alarms.
DEFAULT_CLOUDWATCH_INTERVAL_S = 10.0
# The SLO's targets (infra/policy/slo.py), which each access line's `slo_miss` judges a
# request by: time to the first token (streams) and to the last byte.
DEFAULT_SLO_TTFT_S = 5.0
DEFAULT_SLO_E2E_S = 65.0
MAX_SLO_TTFT_S = 600.0
MAX_SLO_E2E_S = 3600.0


class SettingsError(ValueError):
    """A setting is missing or out of range; the message names the environment variable."""


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # The upstream vLLM OpenAI server.
    upstream_url: str = "http://127.0.0.1:8001"
    upstream_connect_timeout_s: float = Field(default=2.0, gt=0, le=60)
    upstream_timeout_s: float = Field(default=300.0, gt=0, le=3600)
    upstream_max_idle_connections: int = Field(default=64, ge=1, le=4096)
    # A stream whose client reads nothing for this long is ended and its slot freed.
    stream_stall_timeout_s: float = Field(default=30.0, gt=0, le=3600)

    # Tenants: exactly one source.
    tenants_file: Path | None = None
    tenants_secret_id: str | None = Field(default=None, min_length=1, max_length=2048)
    tenants_reload_s: float = Field(default=30.0, ge=1, le=86_400)

    # Input limits and per-tenant defaults (a tenant entry may override the last two).
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    max_n: int = Field(default=4, ge=1, le=128)
    default_max_tokens: int = Field(default=2048, ge=1, le=1_000_000)
    default_tenant_max_concurrent_requests: int = Field(default=8, ge=1, le=100_000)
    # Request shape and client connections: prompts in one request's `prompt` array, the
    # time a client has to send its body, HTTP exchanges in flight in the process.
    max_prompts: int = Field(default=4, ge=1, le=128)
    body_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_connections: int = Field(default=256, ge=1, le=100_000)

    # Admission: sequences (prompts x n) sent to vLLM at once; beyond that a bounded queue,
    # served round-robin by tenant, each request waiting at most `max_queue_wait_s`.
    max_running_sequences: int = Field(default=DEFAULT_MAX_RUNNING_SEQUENCES, ge=1, le=100_000)
    max_queued_sequences: int = Field(default=DEFAULT_MAX_QUEUED_SEQUENCES, ge=0, le=100_000)
    tenant_max_queued_sequences: int = Field(
        default=DEFAULT_TENANT_MAX_QUEUED_SEQUENCES, ge=0, le=100_000
    )
    max_queue_wait_s: float = Field(default=DEFAULT_MAX_QUEUE_WAIT_S, gt=0, le=600)
    retry_after_s: int = Field(default=1, ge=1, le=3600)
    circuit_failure_threshold: int = Field(default=5, ge=1, le=1000)
    circuit_cooldown_s: float = Field(default=10.0, gt=0, le=3600)

    # Readiness probe: a 1-token completion on its own interval.
    probe_interval_s: float = Field(default=5.0, ge=0.05, le=300)
    probe_timeout_s: float = Field(default=10.0, gt=0, le=300)
    probe_freshness_s: float = Field(default=10.0, gt=0, le=3600)
    probe_failures_to_unready: int = Field(default=2, ge=1, le=100)
    upstream_metrics_interval_s: float = Field(default=5.0, ge=0.05, le=300)

    # Scaling signal.
    cloudwatch_enabled: bool = True
    cloudwatch_namespace: str = Field(default=METRICS_NAMESPACE, min_length=1, max_length=255)
    cloudwatch_interval_s: float = Field(default=DEFAULT_CLOUDWATCH_INTERVAL_S, ge=0.05, le=300)
    autoscaling_group_name: str | None = Field(default=None, min_length=1, max_length=255)
    aws_region: str | None = Field(default=None, min_length=1, max_length=64)

    # Scale-in: lifecycle watcher and drain.
    lifecycle_watch_enabled: bool = True
    lifecycle_hook_name: str | None = Field(default=None, min_length=1, max_length=255)
    imds_url: str = "http://169.254.169.254"
    imds_poll_interval_s: float = Field(default=5.0, ge=0.05, le=300)
    drain_deadline_s: float = Field(default=120.0, gt=0, le=7200)
    drain_min_s: float = Field(default=10.0, ge=0, le=600)

    # The SLO each request is judged by on its access line (app/request_metrics.py): the
    # default targets, and the tenants whose contract differs, as
    # `<tenant>=<ttft_s>:<e2e_s>,...` (`contract.format_tenant_targets`).
    slo_ttft_s: float = Field(default=DEFAULT_SLO_TTFT_S, gt=0, le=MAX_SLO_TTFT_S)
    slo_e2e_s: float = Field(default=DEFAULT_SLO_E2E_S, gt=0, le=MAX_SLO_E2E_S)
    slo_tenant_targets: str = Field(default="", max_length=65_536)

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("upstream_url", "imds_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        # Checked here, named, rather than as a traceback when the upstream client is made.
        try:
            parts.port  # noqa: B018 - urlsplit parses the port lazily; reading it validates
        except ValueError:
            raise ValueError(f"port must be 0-65535, got {value!r}") from None
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"must look like http://host:port with no path, got {value!r}")
        return value.rstrip("/")

    @field_validator("slo_tenant_targets")
    @classmethod
    def _tenant_targets(cls, value: str) -> str:
        # Read here so that a bad entry stops the start, not the first request's log line.
        _parse_slo_tenant_targets(value)
        return value

    @model_validator(mode="after")
    def _coherent(self) -> GatewaySettings:
        if (self.tenants_file is None) == (self.tenants_secret_id is None):
            raise ValueError(
                "set exactly one of GATEWAY_TENANTS_FILE and GATEWAY_TENANTS_SECRET_ID"
            )
        if self.cloudwatch_enabled and not self.autoscaling_group_name:
            raise ValueError(
                "GATEWAY_AUTOSCALING_GROUP_NAME is required while GATEWAY_CLOUDWATCH_ENABLED "
                "is true (set it, or GATEWAY_CLOUDWATCH_ENABLED=false for a local run)"
            )
        if self.lifecycle_watch_enabled and not (
            self.autoscaling_group_name and self.lifecycle_hook_name
        ):
            raise ValueError(
                "GATEWAY_AUTOSCALING_GROUP_NAME and GATEWAY_LIFECYCLE_HOOK_NAME are required "
                "while GATEWAY_LIFECYCLE_WATCH_ENABLED is true (set them, or "
                "GATEWAY_LIFECYCLE_WATCH_ENABLED=false for a local run)"
            )
        if self.slo_ttft_s > self.slo_e2e_s:
            raise ValueError(
                f"GATEWAY_SLO_TTFT_S ({self.slo_ttft_s:g}) cannot exceed GATEWAY_SLO_E2E_S "
                f"({self.slo_e2e_s:g}): a first token comes before the last byte"
            )
        if self.tenant_max_queued_sequences > self.max_queued_sequences:
            raise ValueError(
                f"GATEWAY_TENANT_MAX_QUEUED_SEQUENCES ({self.tenant_max_queued_sequences}) "
                f"cannot exceed GATEWAY_MAX_QUEUED_SEQUENCES ({self.max_queued_sequences})"
            )
        return self

    @property
    def queue_limits(self) -> QueueLimits:
        return QueueLimits(
            max_running=self.max_running_sequences,
            max_queued=self.max_queued_sequences,
            tenant_max_queued=self.tenant_max_queued_sequences,
        )

    @property
    def slo_targets_by_tenant(self) -> dict[str, tuple[float, float]]:
        """(ttft_s, e2e_s) of each tenant whose targets differ from the default."""
        return _parse_slo_tenant_targets(self.slo_tenant_targets)

    @property
    def upstream_host(self) -> str:
        return urlsplit(self.upstream_url).hostname or "127.0.0.1"

    @property
    def upstream_port(self) -> int:
        return urlsplit(self.upstream_url).port or 80


def _parse_slo_tenant_targets(text: str) -> dict[str, tuple[float, float]]:
    """`GATEWAY_SLO_TENANT_TARGETS`, each entry checked; ValueError names the variable."""
    name = gateway_env_name("slo_tenant_targets")
    form = "<tenant>=<ttft_s>:<e2e_s>[,...]"
    try:
        targets = parse_tenant_targets(text)
    except ValueError as error:
        raise ValueError(f"{name}: {error} (the form is {form})") from None
    for tenant, (ttft_s, e2e_s) in targets.items():
        if not re.fullmatch(TENANT_ID_PATTERN, tenant):
            raise ValueError(f"{name}: {tenant!r} is not a tenant id (the form is {form})")
        if not (0 < ttft_s <= MAX_SLO_TTFT_S and 0 < e2e_s <= MAX_SLO_E2E_S):
            raise ValueError(
                f"{name}: {tenant!r} needs 0 < ttft_s <= {MAX_SLO_TTFT_S:g} and "
                f"0 < e2e_s <= {MAX_SLO_E2E_S:g}, got {ttft_s:g}:{e2e_s:g}"
            )
        if ttft_s > e2e_s:
            raise ValueError(f"{name}: {tenant!r} has ttft_s ({ttft_s:g}) above e2e_s ({e2e_s:g})")
    return targets


def load_settings() -> GatewaySettings:
    """Read the environment; a bad value becomes one SettingsError naming its variable."""
    try:
        return GatewaySettings()
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            got = item.get("input")
            shown = "" if field == "" or isinstance(got, dict) else f" (got {got!r})"
            problems.append(f"{name}: {item['msg']}{shown}")
        raise SettingsError("; ".join(problems)) from None
