"""The boot timeline of one g5 replica, phase by phase: the one place cold-start figures live.

The stack derives its health-check grace period and instance warm-up from it, the simulator
draws launch times from it, and `ami/README.md` explains each figure and what the image
does about it. Seconds are (typical, worst) for a g5.xlarge booting the baked image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BootPhase:
    name: str
    typical_s: float
    worst_s: float
    source: str


BOOT_TIMELINE: tuple[BootPhase, ...] = (
    BootPhase(
        "ec2-start",
        20,
        45,
        "RunInstances to running: about 40 s launch to boot before tuning (depot.dev, 2024)",
    ),
    BootPhase("os-boot", 25, 45, "kernel + cloud-init + user data on the Deep Learning Base AMI"),
    BootPhase("nvidia-driver", 5, 15, "driver load and persistence daemon on first GPU use"),
    BootPhase("vllm-process-start", 10, 20, "Python imports and CUDA context creation"),
    BootPhase("weights-load", 30, 90, "the ADR's measured model load (30-90 s)"),
    BootPhase(
        "graph-capture",
        10,
        30,
        "compile cache baked; vllm#20264: 7.5 s compile from cache + 17 s CUDA-graph capture",
    ),
    BootPhase("first-ready-probe", 15, 30, "ALB health checks: 2 x 15 s to healthy"),
)

# Headroom for what the table cannot see (AZ capacity retries, a slow EBS read).
GRACE_MARGIN = 1.2


def time_to_ready_s(worst: bool = False) -> float:
    return sum(phase.worst_s if worst else phase.typical_s for phase in BOOT_TIMELINE)


def health_check_grace_period_s() -> int:
    """ELB health checks are ignored this long after launch: the worst boot, with margin."""
    return int(math.ceil(time_to_ready_s(worst=True) * GRACE_MARGIN / 10) * 10)


def instance_warmup_s() -> int:
    """A new instance's metrics count toward the group only after a typical boot to ready."""
    return int(math.ceil(time_to_ready_s() / 10) * 10)
