"""The environment of a child process that talks only to local stand-ins for AWS.

boto3 must never look for credentials or a region on the network (IMDS) and must never
find a real profile: every AWS endpoint a local replica or a test uses is on 127.0.0.1.
The parent's gateway, uvicorn and AWS settings are dropped (uvicorn reads UVICORN_*
variables as its options, the gateway GATEWAY_*), and the repository is importable.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def offline_aws_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEWAY_", "UVICORN_", "AWS_")) and k != "PYTHONPATH"
    }
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "NO_PROXY": "*",
        }
    )
    env.update(extra or {})
    return env
