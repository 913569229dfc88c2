"""Composition root: one stack per environment, synthesized to cdktf.out/.

Run `python -m infra.main` (or `python infra/main.py`, or `cdktf synth` through
cdktf.json). Settings come from FINSIGHT_DEV_* / FINSIGHT_PROD_* environment variables.
"""

from __future__ import annotations

from cdktn import App

from infra.policy import FLEET_POLICY, FleetPolicy
from infra.stack.settings import load_settings
from infra.stack.stack import FleetStack

ENVIRONMENTS = ("dev", "prod")
OUTDIR = "cdktf.out"
# The Terraform releases the JSON is written for: S3-native state locking needs 1.10.
TARGET_VERSIONS = {"terraform": ">=1.10.0"}


def build_app(outdir: str = OUTDIR, policy: FleetPolicy = FLEET_POLICY) -> App:
    app = App(outdir=outdir, context={"targetVersions": TARGET_VERSIONS})
    for environment in ENVIRONMENTS:
        FleetStack(app, load_settings(environment), policy)
    return app


def main() -> None:
    build_app().synth()


if __name__ == "__main__":
    main()
