"""Composition root: one stack per environment, synthesized to cdktf.out/.

Run `python -m infra.main` (or `python infra/main.py`, or `cdktf synth` through
cdktf.json). Settings come from FINSIGHT_DEV_* / FINSIGHT_PROD_* environment variables.
"""

from __future__ import annotations

import sys

from cdktn import App

from infra.policy import FLEET_POLICY, FleetPolicy, PolicyError
from infra.stack.naming import ENVIRONMENTS
from infra.stack.settings import load_settings
from infra.stack.stack import FleetStack

OUTDIR = "cdktf.out"
# The Terraform releases the JSON is written for: S3-native state locking needs 1.10.
TARGET_VERSIONS = {"terraform": ">=1.10.0"}


def build_app(outdir: str = OUTDIR, policy: FleetPolicy = FLEET_POLICY) -> App:
    """Every environment's stack; settings are all read first, so a bad one stops early."""
    settings = [load_settings(environment) for environment in ENVIRONMENTS]
    app = App(outdir=outdir, context={"targetVersions": TARGET_VERSIONS})
    for environment_settings in settings:
        FleetStack(app, environment_settings, policy)
    return app


def main() -> None:
    try:
        app = build_app()
    except PolicyError as error:
        sys.exit(f"synth refused: {error}")
    app.synth()


if __name__ == "__main__":
    main()
