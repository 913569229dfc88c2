"""HAProxy standing in for the ALB: least connections, active health checks, a runtime API.

The ALB's target group (infra/stack/load_balancer.py) balances by least outstanding
requests and checks `/health/ready` every 15 s, 2 failures out and 2 successes in; HAProxy
does the same with `balance leastconn` and `inter/fall/rise`, the interval divided by the
local clock's speed. Servers are slots of a `server-template`, started in maintenance; the
runtime API (a UNIX socket) gives a slot an address when a replica launches, puts it in
`drain` when the replica leaves (the ALB's deregistration: no new requests, the ones in
flight finish) and back in maintenance once the replica has stopped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The target group's health-check path (infra.stack.load_balancer.READY_PATH; importing the
# stack would load the CDK provider here, a test holds the two equal).
READY_PATH = "/health/ready"

# The target group's health check (infra/stack/load_balancer.py), in seconds.
HEALTH_INTERVAL_S = 15.0
HEALTH_TIMEOUT_S = 10.0
UNHEALTHY_THRESHOLD = 2
HEALTHY_THRESHOLD = 2
BACKEND = "gateways"
SLOT_PREFIX = "replica"


class HaproxyError(RuntimeError):
    """HAProxy is missing, refused its configuration, or its runtime API said no."""


@dataclass(frozen=True)
class HaproxyConfig:
    port: int
    slots: int
    speed: float
    socket_path: Path
    # The longest request (the ALB's idle timeout): no proxy timeout may cut it short.
    request_timeout_s: float = 300.0

    @property
    def check_interval_ms(self) -> int:
        return max(100, round(HEALTH_INTERVAL_S / self.speed * 1000))

    @property
    def check_timeout_ms(self) -> int:
        return max(100, min(self.check_interval_ms, round(HEALTH_TIMEOUT_S / self.speed * 1000)))

    @property
    def takeout_s(self) -> float:
        """The longest a dead server keeps receiving requests: fall x inter (+ a timeout)."""
        return (UNHEALTHY_THRESHOLD * self.check_interval_ms + self.check_timeout_ms) / 1000

    def render(self) -> str:
        timeout_ms = round(self.request_timeout_s * 1000)
        return "\n".join(
            [
                "global",
                f"    stats socket {self.socket_path} mode 600 level admin",
                "    maxconn 4096",
                "defaults",
                "    mode http",
                "    option http-server-close",
                # Forward each streamed token at once, as the ALB does: without it HAProxy
                # lets small chunks wait (measured +160 ms to the first token of a stream).
                "    option http-no-delay",
                # A request that cannot connect (a dead replica not yet out) goes to another
                # server, as the ALB retries a target it could not reach.
                "    retries 3",
                "    option redispatch",
                "    timeout connect 2s",
                f"    timeout client {timeout_ms}ms",
                f"    timeout server {timeout_ms}ms",
                f"    timeout check {self.check_timeout_ms}ms",
                "frontend api",
                f"    bind 127.0.0.1:{self.port}",
                f"    default_backend {BACKEND}",
                f"backend {BACKEND}",
                "    balance leastconn",
                f"    option httpchk GET {READY_PATH}",
                "    http-check expect status 200",
                # A slot starts in maintenance at a placeholder address until a replica
                # takes it; `init-addr none` lets it start without resolving anything.
                f"    default-server check inter {self.check_interval_ms}ms "
                f"fall {UNHEALTHY_THRESHOLD} rise {HEALTHY_THRESHOLD} init-addr none disabled",
                f"    server-template {SLOT_PREFIX} 1-{self.slots} 127.0.0.1:9",
                "",
            ]
        )


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found is None:
        raise HaproxyError("haproxy is not installed: `make haproxy` (apt-get install haproxy)")
    return found


class HaproxyRuntime:
    """HAProxy's runtime API over its UNIX socket: one command per connection."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def _checked(self, line: str) -> None:
        answer = self.command(line).strip()
        if answer and not answer.lower().startswith(("ok", "ip changed", "no need")):
            raise HaproxyError(f"haproxy refused {line!r}: {answer}")

    def attach(self, slot: int, port: int) -> None:
        """Point a slot at a replica's gateway and let health checks decide when it serves."""
        server = f"{BACKEND}/{SLOT_PREFIX}{slot}"
        self._checked(f"set server {server} addr 127.0.0.1 port {port}")
        self._checked(f"set server {server} state ready")
        # Down until `rise` checks pass, as a new target is in the ALB ("initial").
        self._checked(f"set server {server} health down")

    def drain(self, slot: int) -> None:
        self._checked(f"set server {BACKEND}/{SLOT_PREFIX}{slot} state drain")

    def detach(self, slot: int) -> None:
        self._checked(f"set server {BACKEND}/{SLOT_PREFIX}{slot} state maint")

    def servers(self) -> dict[int, dict[str, str]]:
        """Per slot: its status (UP, DOWN, DRAIN, MAINT, ...), current sessions, served total."""
        table: dict[int, dict[str, str]] = {}
        lines = self.command("show stat").splitlines()
        if not lines or not lines[0].startswith("# "):
            return table
        header = lines[0][2:].split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            name = row.get("svname", "")
            if row.get("pxname") == BACKEND and name.startswith(SLOT_PREFIX):
                table[int(name[len(SLOT_PREFIX) :])] = row
        return table


def start_haproxy(
    config: HaproxyConfig, state_dir: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """Validate the configuration, then run HAProxy in the foreground (its own session)."""
    binary = haproxy_binary()
    config_path = state_dir / "haproxy.cfg"
    config_path.write_text(config.render())
    check = subprocess.run(
        [binary, "-c", "-q", "-f", str(config_path)], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        raise HaproxyError(f"haproxy refused {config_path}: {check.stderr or check.stdout}")
    config.socket_path.unlink(missing_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [binary, "-db", "-f", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
