"""Deployed names that tools outside the stack need without loading cdktn (the `fleet` CLI)."""

from __future__ import annotations

from infra.stack.settings import StackSettings

ENVIRONMENTS = ("dev", "prod")


def environment_stack_name(environment: str) -> str:
    return f"finsight-serving-{environment}"


def stack_name(settings: StackSettings) -> str:
    return environment_stack_name(settings.environment)
