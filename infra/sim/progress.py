"""A progress bar on stderr that appears only once a run has taken a couple of seconds."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, after_s: float = 2.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.after_s = after_s
        self.began = time.monotonic()
        self.drawn = False

    def __call__(self, done: float, label: str) -> None:
        if time.monotonic() - self.began < self.after_s and not self.drawn:
            return  # short runs stay quiet
        filled = round(WIDTH * min(max(done, 0.0), 1.0))
        bar = "#" * filled + "-" * (WIDTH - filled)
        self.stream.write(f"\r[{bar}] {done:4.0%} {label:<20}")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
