"""The local fleet: HAProxy, replicas and the autoscaler executing the compiled AWS rules.

Every metric period the autoscaler reads the Average of `Demand` and `QueueDepth` per
instance back from the CloudWatch endpoint (moto_server) the gateways publish to, feeds them
to `infra.policy.aws_rules.replay_step` (the alarms, step policies, warm-up and repeat of
the deployed stack) with the schedule's minimum at the clock's instant, and carries the
desired capacity out: a launch starts a replica whose engine opens after the cold-start
timeline (scaled by the clock's speed) and which serves once HAProxy's checks pass; a
scale-in turns the replica's lifecycle state `Terminated` and puts its HAProxy slot in
drain (the ALB's deregistration), the gateway drains and calls CompleteLifecycleAction,
and the replica is then detached and stopped. A replica whose process dies, or that fails
HAProxy's checks once in service, is replaced (the ASG's ELB health check).

The state a person reads (`fleet local status`) is written to `status.json` in the state
directory after every step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from infra.local.aws_local import InstanceMetadataServer, LifecycleEndpoint
from infra.local.haproxy import HaproxyConfig, HaproxyRuntime, start_haproxy
from infra.local.offline_env import offline_aws_env
from infra.local.procfs import session_cpu_s, session_rss_mib
from infra.policy import cold_start
from infra.policy.aws_rules import (
    DEMAND_METRIC,
    GROUP_DIMENSION,
    METRICS_NAMESPACE,
    QUEUE_DEPTH_METRIC,
    ReplayState,
    ScalingRules,
    compile_scaling_rules,
    replay_step,
)
from infra.policy.fleet import FleetPolicy
from infra.policy.schedule import minimum_at

log = logging.getLogger("fleet.local")

REPO = Path(__file__).resolve().parents[2]
GROUP_NAME = "finsight-local"
HOOK_NAME = "finsight-local-drain"
STATUS_FILE = "status.json"
LOOP_INTERVAL_S = 0.1
# The gateway's production drain deadline and linger (GatewaySettings defaults), in
# policy seconds: divided by the clock's speed like every other delay.
DRAIN_DEADLINE_S = 120.0
DRAIN_MIN_S = 10.0
PROBE_INTERVAL_S = 5.0
PROBE_TIMEOUT_S = 10.0
IMDS_POLL_INTERVAL_S = 5.0
KEEP_ALIVE_S = 305
MAX_DECISIONS = 20
STATUS_INTERVAL_S = 0.5
EngineKind = Literal["emulated", "vllm"]
ReplicaState = Literal["pending", "in service", "draining"]


class FleetError(RuntimeError):
    """A bad option or a process that would not start; the message says which."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FleetClock:
    """Policy time, running `speed` times faster than the wall clock from `start_at`."""

    def __init__(self, speed: float, start_at: dt.datetime | None = None) -> None:
        if not (math.isfinite(speed) and 0 < speed <= 1000):
            raise FleetError(f"the clock's speed must be in (0, 1000], got {speed}")
        if start_at is not None and start_at.tzinfo is None:
            raise FleetError(f"the clock's start must carry a time zone, got {start_at}")
        self.speed = speed
        self.start_at = start_at or dt.datetime.now(dt.UTC)
        self._origin = time.monotonic()

    def elapsed_s(self) -> float:
        return (time.monotonic() - self._origin) * self.speed

    def now(self) -> dt.datetime:
        return self.start_at + dt.timedelta(seconds=self.elapsed_s())

    def wall_s(self, policy_s: float) -> float:
        return policy_s / self.speed


@dataclass(frozen=True)
class FleetOptions:
    state_dir: Path
    tenants_file: Path
    policy: FleetPolicy
    port: int = 8000
    speed: float = 1.0
    start_at: dt.datetime | None = None
    initial_replicas: int = 2
    engine: EngineKind = "emulated"
    model_name: str = "finsight-tiny"
    model_dir: Path | None = None  # the tiny model, for engine "vllm"
    # Gateway settings the replicas take besides the ones the fleet derives (GATEWAY_* names
    # without the prefix), e.g. admission limits a test wants smaller.
    gateway_settings: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise FleetError(f"port must be 1-65535, got {self.port}")
        if self.engine not in ("emulated", "vllm"):
            raise FleetError(f"engine must be 'emulated' or 'vllm', got {self.engine!r}")
        if self.engine == "vllm" and self.model_dir is None:
            raise FleetError("engine 'vllm' needs the tiny model's directory")
        maximum = self.policy.max_replicas
        if not 1 <= self.initial_replicas <= maximum:
            raise FleetError(
                f"initial replicas must be between 1 and max_replicas ({maximum}), "
                f"got {self.initial_replicas}"
            )
        if not self.tenants_file.is_file():
            raise FleetError(f"no tenants file at {self.tenants_file}")
        FleetClock(self.speed, self.start_at)  # validates both


def boot_delay_s(engine: EngineKind) -> float:
    """Policy seconds from launch until the engine listens: the typical cold-start timeline
    without its last phase, the load balancer's first checks, which HAProxy really does."""
    if engine != "emulated":
        return 0.0  # a real vLLM takes its own time
    return sum(p.typical_s for p in cold_start.BOOT_TIMELINE if p.name != "first-ready-probe")


def gateway_argv(port: int) -> list[str]:
    """gateway.service's ExecStart, run by this interpreter, on loopback (a test holds the
    flags equal to the unit's)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "app.main:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--timeout-keep-alive",
        str(KEEP_ALIVE_S),
    ]


class Process:
    """A child in a session of its own (a stop reaches its children), logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        with log_path.open("ab") as log_file:
            self.popen = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)

    def stop(self, grace_s: float = 10.0) -> None:
        if self.alive():
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace_s)
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10.0)

    def rss_mib(self) -> float:
        return session_rss_mib(self.pid)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the session's live processes."""
        return session_cpu_s(self.pid)


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), b""
    except (urllib.error.URLError, OSError):
        return 0, b""


def scrape_gauges(url: str) -> dict[str, float]:
    """A /metrics page's unlabelled-or-summed samples, by name (0 on failure)."""
    status, body = http_get(url, timeout_s=1.0)
    values: dict[str, float] = {}
    if status != 200:
        return values
    for line in body.decode(errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            values[name] = values.get(name, 0.0) + float(value)
    return values


@dataclass
class Replica:
    slot: int
    instance_id: str
    launched_at_s: float  # policy seconds
    engine_port: int
    gateway_port: int
    imds: InstanceMetadataServer
    engine: Process
    gateway: Process
    state: ReplicaState = "pending"
    in_service_at_s: float | None = None
    draining_since_s: float | None = None
    lifecycle_completed: bool = False
    served_before: int = 0  # the HAProxy slot's session total when this replica took it

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"


@dataclass(frozen=True)
class Decision:
    at: str  # the clock's instant, ISO
    elapsed_s: float
    desired_from: int
    desired_to: int
    why: str


@dataclass
class FleetStatus:
    replicas: dict[str, Replica] = field(default_factory=dict)
    desired: int = 0
    minimum: int = 0
    decisions: deque[Decision] = field(default_factory=lambda: deque(maxlen=MAX_DECISIONS))
    demand_per_instance: float | None = None
    queue_depth_per_instance: float | None = None
    launched: int = 0
    terminated: int = 0
    replaced: int = 0
    # (launched, stopped or None) in policy seconds, for replica-seconds.
    lifetimes: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    # One row per metric period: (at_s, Demand, QueueDepth per instance, desired, in service).
    periods: list[tuple[float, float | None, float | None, int, int]] = field(default_factory=list)
    in_service_changes: list[tuple[float, int]] = field(default_factory=list)


class LocalFleet:
    """Runs the whole shape until `stop()`; `run()` blocks (call `stop` from a signal)."""

    def __init__(self, options: FleetOptions) -> None:
        self.options = options
        self.clock = FleetClock(options.speed, options.start_at)
        self.rules: ScalingRules = compile_scaling_rules(options.policy)
        self.status = FleetStatus()
        self._replay = ReplayState()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._next_slot_ids = 0
        state_dir = options.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir = state_dir / "logs"
        self.logs_dir.mkdir(exist_ok=True)
        self.haproxy_config = HaproxyConfig(
            port=options.port,
            slots=options.policy.max_replicas * 2,
            speed=options.speed,
            socket_path=state_dir / "haproxy.sock",
        )
        self.moto_port = free_port()
        self._moto: Process | None = None
        self._haproxy: subprocess.Popen[bytes] | None = None
        self._lifecycle = LifecycleEndpoint(GROUP_NAME, HOOK_NAME, self._complete_lifecycle)
        self._cloudwatch: Any = None
        self._status_written = 0.0
        self._restarted = False

    # -- lifecycle of the whole fleet --------------------------------------------------

    @property
    def period_s(self) -> int:
        return self.rules.scale_out.alarm.period_s

    def start(self) -> None:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", self.options.port))
            except OSError:
                raise FleetError(
                    f"127.0.0.1:{self.options.port} is in use (another fleet or replica?)"
                ) from None
        env = offline_aws_env()
        self._moto = Process(
            "moto_server",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
            env,
            self.logs_dir / "moto.log",
        )
        self._haproxy = start_haproxy(
            self.haproxy_config, self.options.state_dir, self.logs_dir / "haproxy.log"
        )
        self.runtime = HaproxyRuntime(self.haproxy_config.socket_path)
        deadline = time.monotonic() + 30
        while http_get(f"http://127.0.0.1:{self.moto_port}/moto-api/data.json")[0] != 200:
            if time.monotonic() > deadline or not self._moto.alive():
                raise FleetError(f"moto_server did not start; see {self.logs_dir / 'moto.log'}")
            time.sleep(0.1)
        while not self.options.state_dir.joinpath("haproxy.sock").exists():
            if time.monotonic() > deadline or self._haproxy.poll() is not None:
                raise FleetError(f"haproxy did not start; see {self.logs_dir / 'haproxy.log'}")
            time.sleep(0.05)
        import boto3

        self._cloudwatch = boto3.client(
            "cloudwatch",
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        minimum = minimum_at(self.options.policy, self.clock.now())
        self.status.minimum = minimum
        self.status.desired = max(self.options.initial_replicas, minimum)
        self._decide(0, self.status.desired, "initial capacity")
        for _ in range(self.status.desired):
            self._launch("initial capacity", warm=True)

    def stop(self) -> None:
        self._stopping.set()

    def snapshot_in_service(self) -> int:
        return sum(r.state == "in service" for r in list(self.status.replicas.values()))

    def restart_clock(self) -> None:
        """Start policy time now (a replay's first instant), with the fleet as it stands:
        the replicas running count as launched at 0, and nothing is remembered of before."""
        with self._lock:
            self.clock = FleetClock(self.options.speed, self.options.start_at)
            self._replay = ReplayState()
            self._restarted = True
            for replica in self.status.replicas.values():
                replica.launched_at_s = 0.0
                if replica.in_service_at_s is not None:
                    replica.in_service_at_s = 0.0
                self.status.lifetimes[replica.instance_id] = (0.0, None)
            self.status.lifetimes = {
                k: v for k, v in self.status.lifetimes.items() if k in self.status.replicas
            }
            self.status.periods.clear()
            self.status.in_service_changes.clear()
            self._note_in_service()

    def run(self) -> None:
        """The control loop, until `stop()`; then every replica drains and all stops."""
        self.start()
        next_period = self.clock.elapsed_s() + self.period_s
        try:
            while not self._stopping.is_set():
                if self._restarted:
                    self._restarted = False
                    next_period = self.clock.elapsed_s() + self.period_s
                self._reconcile()
                if self.clock.elapsed_s() >= next_period:
                    self._scale(next_period)
                    next_period += self.period_s
                self.write_status()
                self._stopping.wait(LOOP_INTERVAL_S)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Drain every replica through the lifecycle path, then stop the rest."""
        with self._lock:
            replicas = list(self.status.replicas.values())
        for replica in replicas:
            if replica.state != "draining":
                with contextlib.suppress(OSError, RuntimeError):
                    self._begin_drain(replica, "shutdown")
        deadline = time.monotonic() + self.clock.wall_s(DRAIN_DEADLINE_S) + 15
        while time.monotonic() < deadline and any(
            r.gateway.alive() for r in self.status.replicas.values()
        ):
            self._reconcile(replace=False)
            self.write_status()
            time.sleep(LOOP_INTERVAL_S)
        for replica in list(self.status.replicas.values()):
            self._remove(replica)
        self.write_status(force=True)
        if self._haproxy is not None:
            self._haproxy.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._haproxy.wait(10)
        if self._moto is not None:
            self._moto.stop()
        self._lifecycle.close()

    # -- replicas -------------------------------------------------------------------------

    def gateway_env_file(self, replica_dir: Path, engine_port: int, imds_url: str) -> Path:
        """The replica's gateway.env, as the stack's user data writes it (delays scaled)."""
        speed = self.options.speed
        settings = {
            "UPSTREAM_URL": f"http://127.0.0.1:{engine_port}",
            "TENANTS_FILE": str(self.options.tenants_file),
            "CLOUDWATCH_ENABLED": "true",
            "CLOUDWATCH_INTERVAL_S": f"{max(0.05, self.period_s / speed):g}",
            "AUTOSCALING_GROUP_NAME": GROUP_NAME,
            "AWS_REGION": "us-east-1",
            "LIFECYCLE_WATCH_ENABLED": "true",
            "LIFECYCLE_HOOK_NAME": HOOK_NAME,
            "IMDS_URL": imds_url,
            "IMDS_POLL_INTERVAL_S": f"{max(0.05, IMDS_POLL_INTERVAL_S / speed):g}",
            "PROBE_INTERVAL_S": f"{max(0.05, PROBE_INTERVAL_S / speed):g}",
            # Not below 2 s of wall time: on two busy cores a probe can wait that long for
            # the event loop, and a stale probe takes a healthy replica out.
            "PROBE_FRESHNESS_S": f"{max(2.0, 2 * PROBE_INTERVAL_S / speed):g}",
            "PROBE_TIMEOUT_S": f"{max(2.0, PROBE_TIMEOUT_S / speed):g}",
            "UPSTREAM_METRICS_INTERVAL_S": f"{max(0.05, PROBE_INTERVAL_S / speed):g}",
            "DRAIN_DEADLINE_S": f"{DRAIN_DEADLINE_S / speed:g}",
            # HAProxy's slot is put in drain before the lifecycle state turns, so no new
            # request arrives during the linger: production's, scaled.
            "DRAIN_MIN_S": f"{DRAIN_MIN_S / speed:g}",
        }
        settings.update(dict(self.options.gateway_settings))
        path = replica_dir / "gateway.env"
        lines = [f"GATEWAY_{name.upper()}={value}" for name, value in settings.items()]
        lines.append(f"UVICORN_TIMEOUT_KEEP_ALIVE={KEEP_ALIVE_S}")
        path.write_text("\n".join(lines) + "\n")
        return path

    def _launch(self, why: str, warm: bool = False) -> Replica:
        """Start a replica; `warm`: already booted (the capacity running when the clock starts)."""
        self._next_slot_ids += 1
        used = {r.slot for r in self.status.replicas.values()}
        slot = next(s for s in range(1, self.haproxy_config.slots + 1) if s not in used)
        instance_id = f"i-local{self._next_slot_ids:08x}"
        replica_dir = self.options.state_dir / instance_id
        replica_dir.mkdir(exist_ok=True)
        imds = InstanceMetadataServer(instance_id)
        engine_port, gateway_port = free_port(), free_port()
        env = offline_aws_env()
        if self.options.engine == "emulated":
            ready_after = 0.0 if warm else self.clock.wall_s(boot_delay_s("emulated"))
            engine_argv = [
                sys.executable,
                "-m",
                "infra.local.engine",
                "--port",
                str(engine_port),
                "--model",
                self.options.model_name,
                "--speed",
                f"{self.options.speed:g}",
                "--ready-after",
                f"{ready_after:g}",
            ]
        else:
            assert self.options.model_dir is not None
            engine_argv = [
                str(REPO / "local" / "vllm_server.sh"),
                str(self.options.model_dir),
                self.options.model_name,
                str(engine_port),
            ]
        engine = Process("engine", engine_argv, env, replica_dir / "engine.log")
        env_file = self.gateway_env_file(replica_dir, engine_port, imds.url)
        gateway_env = dict(env)
        for line in env_file.read_text().splitlines():
            name, _, value = line.partition("=")
            gateway_env[name] = value
        # AWS_ENDPOINT_URL_<SERVICE>: boto3's own per-service endpoint variables.
        gateway_env["AWS_ENDPOINT_URL_CLOUDWATCH"] = f"http://127.0.0.1:{self.moto_port}"
        gateway_env["AWS_ENDPOINT_URL_AUTO_SCALING"] = self._lifecycle.url
        argv = gateway_argv(gateway_port)
        gateway = Process("gateway", argv, gateway_env, replica_dir / "gateway.log")
        served_before = int(float(self.runtime.servers().get(slot, {}).get("stot", 0) or 0))
        replica = Replica(
            slot=slot,
            instance_id=instance_id,
            launched_at_s=self.clock.elapsed_s(),
            engine_port=engine_port,
            gateway_port=gateway_port,
            imds=imds,
            engine=engine,
            gateway=gateway,
            served_before=served_before,
        )
        self.runtime.attach(slot, gateway_port)
        with self._lock:
            self.status.replicas[instance_id] = replica
            self.status.launched += 1
            self.status.lifetimes[instance_id] = (replica.launched_at_s, None)
        log.info("launched %s in slot %d (%s)", instance_id, slot, why)
        return replica

    def _complete_lifecycle(self, instance_id: str) -> bool:
        with self._lock:
            replica = self.status.replicas.get(instance_id)
            if replica is None or replica.state != "draining" or replica.lifecycle_completed:
                return False
            replica.lifecycle_completed = True
        log.info("%s completed its lifecycle action", instance_id)
        return True

    def _note_in_service(self) -> None:
        count = sum(r.state == "in service" for r in self.status.replicas.values())
        changes = self.status.in_service_changes
        if not changes or changes[-1][1] != count:
            changes.append((self.clock.elapsed_s(), count))

    def _begin_drain(self, replica: Replica, why: str) -> None:
        replica.state = "draining"
        replica.draining_since_s = self.clock.elapsed_s()
        self._note_in_service()
        # What EC2 Auto Scaling does on a scale-in with a termination hook: deregister from
        # the target group (new requests go elsewhere) and enter Terminating:Wait.
        try:
            self.runtime.drain(replica.slot)
        finally:
            replica.imds.lifecycle_state = "Terminated"
        log.info("draining %s (%s)", replica.instance_id, why)

    def _remove(self, replica: Replica) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.runtime.detach(replica.slot)
        replica.gateway.stop(grace_s=self.clock.wall_s(DRAIN_DEADLINE_S) + 5)
        replica.engine.stop()
        replica.imds.close()
        with self._lock:
            self.status.replicas.pop(replica.instance_id, None)
            launched, _ = self.status.lifetimes[replica.instance_id]
            self.status.lifetimes[replica.instance_id] = (launched, self.clock.elapsed_s())
        self._note_in_service()

    def _reconcile(self, replace: bool = True) -> None:
        """Move replicas between states; replace the failed; launch or drain to `desired`."""
        try:
            servers = self.runtime.servers()
        except OSError:
            servers = {}
        grace_s = cold_start.health_check_grace_period_s()
        for replica in list(self.status.replicas.values()):
            health = servers.get(replica.slot, {}).get("status", "")
            dead = not replica.gateway.alive() or not replica.engine.alive()
            if replica.state == "draining":
                # Done once the gateway exited after completing its action (or its deadline).
                if not replica.gateway.alive():
                    self._remove(replica)
                    self.status.terminated += 1
                continue
            if replica.state == "pending" and health.startswith("UP"):
                replica.state = "in service"
                replica.in_service_at_s = self.clock.elapsed_s()
                self._note_in_service()
                log.info("%s in service", replica.instance_id)
            age_s = self.clock.elapsed_s() - replica.launched_at_s
            # As the ASG with ELB health checks: a replica in service is replaced when the
            # load balancer finds it unhealthy (its processes are not looked at, as no
            # instance's are); one still booting when its launch failed or its grace ran out.
            unhealthy = replica.state == "in service" and health.startswith("DOWN")
            failed_launch = replica.state == "pending" and (dead or age_s > grace_s)
            if replace and (unhealthy or failed_launch):
                reason = "failed health checks" if unhealthy else "launch failed"
                why = f"replace {replica.instance_id}: {reason}"
                self._decide(self.status.desired, self.status.desired, why)
                self._remove(replica)
                self.status.replaced += 1
        if not replace:
            return
        active = [r for r in self.status.replicas.values() if r.state != "draining"]
        missing = self.status.desired - len(active)
        for _ in range(max(0, missing)):
            self._launch("desired capacity")
        if missing < 0:
            # Pending first, then the newest in service (a stable choice, as AWS's
            # default termination policy is once zones and templates tie).
            victims = sorted(active, key=lambda r: (r.state != "pending", -r.launched_at_s))
            for replica in victims[:-missing]:
                self._begin_drain(replica, "scale-in")

    # -- the autoscaler ------------------------------------------------------------------

    def read_metric(self, name: str) -> float | None:
        """The Average per instance over the last metric period, read with GetMetricData."""
        end = dt.datetime.now(dt.UTC)
        start = end - dt.timedelta(seconds=self.clock.wall_s(self.period_s))
        answer = self._cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "m",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": METRICS_NAMESPACE,
                            "MetricName": name,
                            "Dimensions": [{"Name": GROUP_DIMENSION, "Value": GROUP_NAME}],
                        },
                        # One bucket spanning the (scaled) period.
                        "Period": 60,
                        "Stat": "Average",
                    },
                }
            ],
            StartTime=start,
            EndTime=end,
        )
        values = answer["MetricDataResults"][0]["Values"]
        return float(values[0]) if values else None

    def _scale(self, at_s: float) -> None:
        demand = self.read_metric(DEMAND_METRIC)
        queue = self.read_metric(QUEUE_DEPTH_METRIC)
        minimum = minimum_at(self.options.policy, self.clock.now())
        before = self.status.desired
        desired, self._replay = replay_step(
            self.rules,
            self._replay,
            at_s,
            demand,
            before,
            minimum,
            queue_depth_per_instance=queue,
        )
        self.status.demand_per_instance = demand
        self.status.queue_depth_per_instance = queue
        if desired != before:
            self._decide(before, desired, self._why(demand, queue, minimum))
        self.status.minimum = minimum
        self.status.desired = desired
        in_service = sum(r.state == "in service" for r in self.status.replicas.values())
        self.status.periods.append((at_s, demand, queue, desired, in_service))

    def _why(self, demand: float | None, queue: float | None, minimum: int) -> str:
        alarms = []
        if self._replay.scale_out_next_action_s is not None:
            alarms.append(f"Demand > {self.rules.scale_out.alarm.threshold:g}")
        if self._replay.queue_depth_next_action_s is not None:
            alarms.append(f"QueueDepth > {self.rules.queue_depth.alarm.threshold:g}")
        if self._replay.scale_in_next_action_s is not None:
            alarms.append(f"Demand <= {self.rules.scale_in.alarm.threshold:g}")
        if minimum != self.status.minimum:
            alarms.append(f"schedule minimum {self.status.minimum} -> {minimum}")
        shown = "none" if demand is None else f"{demand:.1f}"
        queued = "none" if queue is None else f"{queue:.1f}"
        return f"{' and '.join(alarms) or 'bounds'} (Demand {shown}/instance, QueueDepth {queued})"

    def _decide(self, before: int, after: int, why: str) -> None:
        decision = Decision(
            at=self.clock.now().isoformat(timespec="seconds"),
            elapsed_s=round(self.clock.elapsed_s(), 1),
            desired_from=before,
            desired_to=after,
            why=why,
        )
        self.status.decisions.append(decision)
        log.info("desired %d -> %d: %s", before, after, why)

    # -- what `fleet local status` reads ---------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        try:
            servers = self.runtime.servers()
        except (OSError, AttributeError):
            servers = {}
        replicas = []
        for replica in sorted(self.status.replicas.values(), key=lambda r: r.slot):
            gauges = scrape_gauges(replica.gateway_url + "/metrics")
            row = servers.get(replica.slot, {})
            replicas.append(
                {
                    "instance_id": replica.instance_id,
                    "slot": replica.slot,
                    "state": replica.state,
                    "load_balancer": row.get("status", "?"),
                    "gateway": replica.gateway_url,
                    "rss_mib": round(replica.gateway.rss_mib() + replica.engine.rss_mib(), 1),
                    "cpu_s": round(replica.gateway.cpu_s() + replica.engine.cpu_s(), 2),
                    "gateway_pid": replica.gateway.pid,
                    "engine_pid": replica.engine.pid,
                    "running": gauges.get("gateway_running_sequences", 0.0),
                    "queued": gauges.get("gateway_queued_sequences", 0.0),
                    "served": int(float(row.get("stot", 0) or 0)) - replica.served_before,
                    "launched_at_s": round(replica.launched_at_s, 1),
                    "in_service_at_s": replica.in_service_at_s
                    and round(replica.in_service_at_s, 1),
                }
            )
        return {
            "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "pid": os.getpid(),
            "load_balancer": f"http://127.0.0.1:{self.options.port}",
            "clock": {
                "now": self.clock.now().isoformat(timespec="seconds"),
                "elapsed_s": round(self.clock.elapsed_s(), 1),
                "speed": self.options.speed,
            },
            "engine": self.options.engine,
            "desired": self.status.desired,
            "in_service": sum(r["state"] == "in service" for r in replicas),
            "actual": sum(r["state"] != "draining" for r in replicas),
            "minimum": self.status.minimum,
            "maximum": self.rules.max_capacity,
            "demand_per_instance": self.status.demand_per_instance,
            "queue_depth_per_instance": self.status.queue_depth_per_instance,
            "launched": self.status.launched,
            "terminated": self.status.terminated,
            "replaced": self.status.replaced,
            "replicas": replicas,
            "decisions": [dataclasses.asdict(d) for d in self.status.decisions],
            "stopping": self._stopping.is_set(),
        }

    def write_status(self, force: bool = False) -> None:
        # A few times a second at most: each write scrapes every gateway's /metrics.
        if not force and time.monotonic() - self._status_written < STATUS_INTERVAL_S:
            return
        self._status_written = time.monotonic()
        path = self.options.state_dir / STATUS_FILE
        partial = path.with_suffix(".partial")
        with contextlib.suppress(OSError):  # the state directory removed under us
            partial.write_text(json.dumps(self.snapshot(), indent=2))
            partial.replace(path)
