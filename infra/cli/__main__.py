"""`python -m infra.cli` is the `fleet` command."""

from infra.cli.main import run

run()
