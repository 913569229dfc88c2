"""The gateway's logs as JSON lines, one object per line, for CloudWatch Logs Insights.

Every line has `time` (UTC, ISO 8601), `level`, `logger` and `message`; a call adds fields
of its own with `extra={"fields": {...}}` (the access line does: `tenant`, `route`,
`status`, ...). Logs Insights discovers the fields of JSON lines by itself, so the
dashboard's per-tenant query can filter and group on `tenant` directly.
uvicorn's own lines go through the same handler, so the whole file is JSON; its access
line is off, since the gateway's own (`app.access`) says more.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
# The gateway writes its own access line (app.access), with the tenant; uvicorn's would
# repeat it. A logger with no handler anywhere is skipped by uvicorn without formatting.
UVICORN_ACCESS_LOGGER = "uvicorn.access"
# httpx logs every request at info: the IMDS poll would write a line every few seconds.
CHATTY_LOGGERS = ("httpx", "httpcore")


class JsonText(str):
    """A field's value already encoded as JSON, written into the line as it is.

    For the access line's Embedded Metric Format metadata (app/request_metrics.py): the
    same few hundred characters on most lines, which would cost more to encode each time
    than the rest of the line.
    """


class JsonFormatter(logging.Formatter):
    # One line per request is on the hot path: the encoder is built once (json.dumps with
    # an argument builds one per call), and the date part is formatted once a second.
    def __init__(self) -> None:
        super().__init__()
        self._encode = json.JSONEncoder(default=str).encode
        self._second = -1
        self._second_text = ""

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        encoded: list[tuple[str, JsonText]] = []
        if isinstance(fields, dict):
            for name, value in fields.items():
                if type(value) is JsonText:
                    encoded.append((name, value))
                else:
                    entry.setdefault(name, value)  # a field never hides the four above
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        result: str = self._encode(entry)
        if encoded:
            # The entry is a non-empty object: its closing brace gives way to the members.
            members = "".join(
                f",{self._encode(name)}:{text}" for name, text in encoded if name not in entry
            )
            result = f"{result[:-1]}{members}}}"
        return result


class JsonLinesHandler(logging.StreamHandler[IO[str]]):
    """Writes to the given stream, or to whatever `sys.stderr` is at the time of writing.

    systemd appends the gateway's stderr to /var/log/finsight/gateway.log, which the
    CloudWatch agent ships.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._fixed_stream = stream
        super().__init__(stream or sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return self._fixed_stream if self._fixed_stream is not None else sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass  # the stream is chosen in __init__


def configure_logging(level: str, stream: IO[str] | None = None) -> None:
    """Make the root logger write JSON lines at `level`; idempotent (one handler at most)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, JsonLinesHandler):
            root.removeHandler(handler)
    handler = JsonLinesHandler(stream)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The lines carry no source file, thread or process: skip collecting them on each
    # record (the logging HOWTO's "Optimization"); the access line is on the hot path.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # uvicorn configured its loggers with text handlers and its own level before calling
    # the factory: GATEWAY_LOG_LEVEL governs them too.
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    access = logging.getLogger(UVICORN_ACCESS_LOGGER)
    access.handlers.clear()
    access.propagate = False
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "debug" else logging.WARNING)
