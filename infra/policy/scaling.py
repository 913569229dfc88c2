"""Replica-count limits and the Ray Serve-style controller parameters, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from infra.policy.errors import PolicyError

# A typo such as max_replicas=40 would otherwise request forty g5 instances (~$40/h);
# raising the ceiling is a deliberate edit here, not a config change.
MAX_REPLICAS_CEILING = 16

# CloudWatch alarm periods: 10, 20 and 30 s exist only for high-resolution metrics;
# anything longer must be a whole number of minutes.
HIGH_RESOLUTION_PERIODS_S = (10, 20, 30)

# One hour bounds both delays: CloudWatch evaluates at most 86,400 s of data per alarm,
# and a delay longer than an hour would hold idle A10Gs for no benefit.
MAX_DELAY_S = 3600

# Coupling check (see `coupling_warnings`): the ADR tuned target 10 with a 30 s up delay on
# 10 s metrics, i.e. 3 averaged samples of a signal whose mean is 10.
SEED_NOISE_BUDGET = 10 * 3


def is_valid_alarm_period(period_s: int) -> bool:
    return period_s in HIGH_RESOLUTION_PERIODS_S or (period_s >= 60 and period_s % 60 == 0)


@dataclass(frozen=True)
class ScalingConfig:
    """One autoscaling configuration, in the ADR's (Ray Serve's) vocabulary.

    `upscale_smoothing_factor` / `downscale_smoothing_factor` fall back to
    `smoothing_factor`, as in Ray Serve.
    """

    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float = 10.0
    upscale_delay_s: int = 30
    downscale_delay_s: int = 300
    smoothing_factor: float = 0.5
    upscale_smoothing_factor: float | None = None
    downscale_smoothing_factor: float | None = None
    metric_period_s: int = 10

    def __post_init__(self) -> None:
        _require_int("min_replicas", self.min_replicas)
        _require_int("max_replicas", self.max_replicas)
        _require_int("upscale_delay_s", self.upscale_delay_s)
        _require_int("downscale_delay_s", self.downscale_delay_s)
        _require_int("metric_period_s", self.metric_period_s)
        if self.min_replicas < 0:
            raise PolicyError("min_replicas", f"must be >= 0, got {self.min_replicas}")
        if not 1 <= self.max_replicas <= MAX_REPLICAS_CEILING:
            raise PolicyError(
                "max_replicas",
                f"must be between 1 and {MAX_REPLICAS_CEILING}, got {self.max_replicas}",
            )
        if self.min_replicas > self.max_replicas:
            raise PolicyError(
                "min_replicas",
                f"must be <= max_replicas ({self.max_replicas}), got {self.min_replicas}",
            )
        if not self.target_ongoing_requests > 0:
            raise PolicyError(
                "target_ongoing_requests", f"must be > 0, got {self.target_ongoing_requests}"
            )
        for name in ("smoothing_factor", "upscale_smoothing_factor", "downscale_smoothing_factor"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise PolicyError(name, f"must be in (0, 1], got {value}")
        if not is_valid_alarm_period(self.metric_period_s):
            raise PolicyError(
                "metric_period_s",
                f"must be 10, 20, 30 or a multiple of 60 (CloudWatch alarm periods), "
                f"got {self.metric_period_s}",
            )
        for name in ("upscale_delay_s", "downscale_delay_s"):
            delay = getattr(self, name)
            if not self.metric_period_s <= delay <= MAX_DELAY_S:
                raise PolicyError(
                    name,
                    f"must be between metric_period_s ({self.metric_period_s}) and "
                    f"{MAX_DELAY_S}, got {delay}",
                )
            if delay % self.metric_period_s:
                raise PolicyError(
                    name,
                    f"must be a multiple of metric_period_s ({self.metric_period_s}), got {delay}",
                )

    @property
    def upscale_factor(self) -> float:
        return self.upscale_smoothing_factor or self.smoothing_factor

    @property
    def downscale_factor(self) -> float:
        return self.downscale_smoothing_factor or self.smoothing_factor

    @property
    def upscale_evaluation_periods(self) -> int:
        """Alarm datapoints that must all breach before scaling out (window = up delay)."""
        return self.upscale_delay_s // self.metric_period_s

    @property
    def downscale_evaluation_periods(self) -> int:
        """Alarm datapoints that must all breach before scaling in (window = down delay)."""
        return self.downscale_delay_s // self.metric_period_s


def coupling_warnings(config: ScalingConfig) -> list[str]:
    """The coupled-parameter traps the ADR warns about, as human-readable warnings.

    Ongoing requests behave like a Poisson count: at a mean of `target` per replica its
    relative noise is 1/sqrt(target), and averaging `n` samples over the up delay divides
    that by sqrt(n). The ADR's tuning (target 10, 3 samples of 10 s) keeps target*n = 30;
    a smaller product makes single bursts look like sustained load, so the fleet scales
    out on noise and back in five minutes later: the oscillation the ADR describes.
    """
    warnings: list[str] = []
    budget = config.target_ongoing_requests * config.upscale_evaluation_periods
    if budget < SEED_NOISE_BUDGET:
        needed_s = _ceil_to(
            SEED_NOISE_BUDGET / config.target_ongoing_requests * config.metric_period_s,
            config.metric_period_s,
        )
        warnings.append(
            f"target_ongoing_requests={config.target_ongoing_requests:g} with "
            f"upscale_delay_s={config.upscale_delay_s} averages too few samples of a noisy "
            f"signal (target x samples = {budget:g} < {SEED_NOISE_BUDGET}); raise "
            f"upscale_delay_s to >= {needed_s} or the fleet will scale out on noise"
        )
    if config.downscale_delay_s < 5 * config.upscale_delay_s:
        warnings.append(
            f"downscale_delay_s={config.downscale_delay_s} is under 5x upscale_delay_s="
            f"{config.upscale_delay_s}: capacity added for a burst may be removed before "
            "the next burst of the same episode; expect up/down reversals"
        )
    return warnings


def _ceil_to(value: float, step: int) -> int:
    return int(-(-value // step) * step)


def _require_int(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(field, f"must be a whole number, got {value!r}")
