"""The boot timeline of one g5 replica, phase by phase: the one place cold-start figures live.

The stack derives its health-check grace period and instance warm-up from it, the simulator
draws launch times from it (the warm-pool timeline when the group has a warm pool), and
`ami/README.md` explains each figure and what the image does about it. Seconds are
(typical, worst) for a g5.xlarge serving an 8B model in bf16 (about 16 GB of safetensors),
from the scale-out decision's launch to the load balancer's first healthy check.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class BootPhase:
    name: str
    typical_s: float
    worst_s: float
    source: str


class WeightPath(StrEnum):
    """How the weights reach the GPU: the stack's `model_load` setting (`baked` without a
    `model_location`)."""

    # Baked into the AMI's root snapshot; read by vLLM from the lazily restored volume.
    BAKED = "baked"
    # Streamed from `model_location` into GPU memory by vLLM's Run:ai Model Streamer.
    STREAM = "stream"
    # Copied from `model_location` to the instance-store NVMe, then loaded from there.
    DOWNLOAD = "download"


# What the g5.xlarge and the 8B model give the figures below (AWS documentation, model card).
MODEL_BYTES = 16.1e9  # Llama-3.1-8B-Instruct, 4 safetensors shards in bf16
# "Up to 10 Gbps": a burst from network I/O credits (5-60 min for sizes up to 4xlarge, full
# at launch); 2.5 Gbps baseline. Same-Region S3 traffic may use all of it.
NETWORK_BURST_BPS = 10e9 / 8
NETWORK_BASELINE_BPS = 2.5e9 / 8
# EBS-optimized bandwidth "up to 3.5 Gbps" (burst), whatever gp3 throughput is provisioned.
EBS_BURST_BPS = 3.5e9 / 8

# Before this change: weights baked on a volume restored lazily from the AMI's snapshot.
# Kept for the comparison in ami/README.md and the simulator's before/after figures.
BAKED_EBS_TIMELINE: tuple[BootPhase, ...] = (
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

# A fresh launch with the default path: weights streamed from `model_location` (S3, same
# Region, through the VPC's gateway endpoint) straight into GPU memory.
BOOT_TIMELINE: tuple[BootPhase, ...] = (
    BAKED_EBS_TIMELINE[0],
    BAKED_EBS_TIMELINE[1],
    BAKED_EBS_TIMELINE[2],
    BootPhase(
        "vllm-process-start",
        10,
        25,
        "Python imports and CUDA context; venv blocks read lazily from the snapshot (+5 s worst)",
    ),
    BootPhase(
        "weights-load",
        20,
        55,
        "16.1 GB from S3 at the 10 Gbps burst (13 s) + GPU copy; 2.5 Gbps baseline: 52 s",
    ),
    BAKED_EBS_TIMELINE[5],
    BAKED_EBS_TIMELINE[6],
)

# Leaving a Stopped warm pool: the instance was launched, booted, streamed the weights,
# loaded the compile cache and read its root volume's files once (the warm-pool entry
# hook), then stopped. Its volume exists and is initialized; its GPU memory is empty.
WARM_POOL_TIMELINE: tuple[BootPhase, ...] = (
    BootPhase(
        "ec2-start",
        10,
        30,
        "StartInstances of a stopped instance: no volume to create (depot.dev, 2024)",
    ),
    BootPhase(
        "os-boot",
        15,
        30,
        "second boot: cloud-init's per-instance modules and user data already ran",
    ),
    BAKED_EBS_TIMELINE[2],
    BootPhase(
        "vllm-process-start",
        8,
        15,
        "Python imports and CUDA context from an initialized volume (page cache empty)",
    ),
    BOOT_TIMELINE[4],
    BAKED_EBS_TIMELINE[5],
    BAKED_EBS_TIMELINE[6],
)

# A Running warm pool keeps vLLM loaded on an instance that serves nothing: leaving the pool
# is only registration and the load balancer's checks. Priced as a serving instance (EC2
# bills a running instance by the second whatever it does), so it is dominated by one more
# replica in the group's minimum, which serves traffic for the same price: not offered.
WARM_POOL_RUNNING_TIMELINE: tuple[BootPhase, ...] = (
    BootPhase(
        "target-registration",
        5,
        15,
        "Warmed:Running to InService, then RegisterTargets on the target group",
    ),
    BAKED_EBS_TIMELINE[6],
)

# The weight-loading phase of a fresh launch for each path (the rest of the timeline is
# the same), compared in ami/README.md.
WEIGHTS_LOAD_BY_PATH: dict[WeightPath, BootPhase] = {
    WeightPath.BAKED: BAKED_EBS_TIMELINE[4],
    WeightPath.STREAM: BOOT_TIMELINE[4],
    WeightPath.DOWNLOAD: BootPhase(
        "weights-load",
        35,
        85,
        "S3 to instance-store NVMe at the network's rate (13-52 s), then read from NVMe (15 s)",
    ),
}

# Baked weights from the Stopped warm pool: the entry hook read every block, so the weights
# load at the instance's EBS burst (16.1 GB at 3.5 Gbps: 37 s), page cache empty.
WARM_POOL_BAKED_TIMELINE: tuple[BootPhase, ...] = (
    *WARM_POOL_TIMELINE[:4],
    BootPhase(
        "weights-load",
        40,
        60,
        "16.1 GB from an initialized volume at the g5.xlarge's 3.5 Gbps EBS burst: 37 s",
    ),
    *WARM_POOL_TIMELINE[5:],
)

# Headroom for what the table cannot see (AZ capacity retries, a slow EBS read).
GRACE_MARGIN = 1.2


def boot_timeline(
    path: WeightPath = WeightPath.STREAM, warm_pool: bool = False
) -> tuple[BootPhase, ...]:
    """The phases of one boot: fresh or from the Stopped warm pool, with `path`'s weight load."""
    if path is WeightPath.BAKED:
        # Without model_location: the volume's blocks are lazily loaded on a fresh launch;
        # a warm-pool instance read them at its warm-pool entry, so they load at EBS's rate.
        return WARM_POOL_BAKED_TIMELINE if warm_pool else BAKED_EBS_TIMELINE
    base = WARM_POOL_TIMELINE if warm_pool else BOOT_TIMELINE
    weights = WEIGHTS_LOAD_BY_PATH[path]
    return tuple(weights if phase.name == "weights-load" else phase for phase in base)


def time_to_ready_s(worst: bool = False, timeline: tuple[BootPhase, ...] = BOOT_TIMELINE) -> float:
    return sum(phase.worst_s if worst else phase.typical_s for phase in timeline)


def draw_time_to_ready_s(rng: random.Random, timeline: tuple[BootPhase, ...]) -> float:
    """One boot: each phase triangular between 0.8 x typical, typical (the mode) and worst,
    so most boots are near typical and a few approach the worst case (the simulator's law)."""
    return sum(rng.triangular(0.8 * p.typical_s, p.worst_s, p.typical_s) for p in timeline)


def time_to_ready_quantile_s(
    quantile: float, timeline: tuple[BootPhase, ...] = BOOT_TIMELINE, draws: int = 20_000
) -> float:
    """The boot time that `quantile` of boots beat, under the simulator's law (seeded)."""
    rng = random.Random(0)
    samples = sorted(draw_time_to_ready_s(rng, timeline) for _ in range(draws))
    return samples[min(draws - 1, int(quantile * draws))]


def transfer_s(bytes_: float, rate_bps: float) -> float:
    """Seconds to move `bytes_` at `rate_bps` bytes per second."""
    return bytes_ / rate_bps


def health_check_grace_period_s(path: WeightPath = WeightPath.STREAM) -> int:
    """ELB health checks are ignored this long after launch: the worst boot, with margin."""
    worst = time_to_ready_s(worst=True, timeline=boot_timeline(path))
    return int(math.ceil(worst * GRACE_MARGIN / 10) * 10)


def instance_warmup_s(path: WeightPath = WeightPath.STREAM) -> int:
    """A new instance's metrics count toward the group only after a typical boot to ready."""
    return int(math.ceil(time_to_ready_s(timeline=boot_timeline(path)) / 10) * 10)
