"""Runs inside .venv-vllm: vLLM's own server entry point parses and validates a command line.

`python vllm_argcheck.py ARGS...` calls the same `main()` that
`python -m vllm.entrypoints.openai.api_server ARGS...` runs (parser, logging setup,
validation), with the event loop replaced so that the server is not started. Prints the
parsed values as JSON, and whether the same parser refuses an unknown flag; before that,
vLLM's logger writes one record (LOG_MARKER) in whatever format the flags chose.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import uvloop

parsed: dict[str, Any] = {}


def _capture(coroutine: Any) -> None:
    # main() hands run_server(args) to uvloop.run; read args from the coroutine and drop it.
    args = coroutine.cr_frame.f_locals["args"]
    for key, value in vars(args).items():
        # Config groups such as --logging-config.* arrive as dataclasses.
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if _jsonable(value):
            parsed[key] = value
    coroutine.close()


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def _run_main(argv: list[str]) -> int:
    from vllm.entrypoints.launchers.api_server import entry

    sys.argv = ["api_server", *argv]
    try:
        entry.main()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


LOG_MARKER = "vllm-argcheck-log-probe"

if __name__ == "__main__":
    uvloop.run = _capture
    status = _run_main(sys.argv[1:])
    # main() configured logging from the flags; one record shows what the log lines look like.
    from vllm.logger import init_logger

    init_logger("vllm.argcheck").info(LOG_MARKER)
    rejected = _run_main([*sys.argv[1:], "--no-such-flag-for-test"]) != 0
    print(json.dumps({"status": status, "args": parsed, "unknown_flag_rejected": rejected}))
