"""What a process session uses, read from /proc: its resident memory and CPU time.

A replica's gateway and engine, and the vLLM server with its engine and workers, each run
in a session of their own (started with `start_new_session`), so the session id (the
leader's pid) names every process that belongs to one of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")


def _session_processes(session_id: int) -> Iterator[Path]:
    for pid_dir in PROC.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            if os.getsid(int(pid_dir.name)) == session_id:
                yield pid_dir
        except OSError:  # gone since the listing
            continue


def session_rss_mib(session_id: int) -> float:
    """Resident memory of the session's live processes, MiB."""
    total_kib = 0
    for pid_dir in _session_processes(session_id):
        try:
            for line in (pid_dir / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total_kib / 1024


def session_cpu_s(session_id: int) -> float:
    """User + system CPU seconds of the session's live processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid_dir in _session_processes(session_id):
        try:
            fields = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, ValueError, IndexError):
            continue
    return total
