"""A one-screen summary of synthesized stacks: `python -m infra.stack.summary cdktf.out`."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def summarize(stack_file: Path) -> list[str]:
    stack: dict[str, Any] = json.loads(stack_file.read_text())
    resources: dict[str, dict[str, Any]] = stack.get("resource", {})
    counts = Counter({kind: len(bodies) for kind, bodies in resources.items()})
    lines = [f"{stack_file}  ({sum(counts.values())} resources)"]
    row = "  "
    for kind, count in sorted(counts.items()):
        cell = f"{kind.removeprefix('aws_')} {count}"
        if len(row) + len(cell) > 96:
            lines.append(row.rstrip(", "))
            row = "  "
        row += cell + ", "
    lines.append(row.rstrip(", "))
    for group in resources.get("aws_autoscaling_group", {}).values():
        warm = (group.get("warm_pool") or {}).get("min_size", 0)
        lines.append(
            f"  group     {group['name']:<24} min={group.get('min_size', '(schedule)')} "
            f"max={group['max_size']}  warm pool {warm}"
        )
    for action in resources.get("aws_autoscaling_schedule", {}).values():
        lines.append(
            f"  schedule  {action['scheduled_action_name']:<24} {action['recurrence']:<20} "
            f"{action['time_zone']}  min={action['min_size']}"
        )
    for alarm in sorted(
        resources.get("aws_cloudwatch_metric_alarm", {}).values(), key=lambda a: a["alarm_name"]
    ):
        # A metric-math alarm's period is its metrics' (they share one).
        queried = [q["metric"]["period"] for q in alarm.get("metric_query", []) if "metric" in q]
        period = alarm.get("period", queried[0] if queried else 60)
        window = period * alarm["evaluation_periods"]
        lines.append(f"  alarm     {alarm['alarm_name']:<52} {window:>5} s window")
    for composite in sorted(
        resources.get("aws_cloudwatch_composite_alarm", {}).values(),
        key=lambda a: a["alarm_name"],
    ):
        lines.append(f"  alarm     {composite['alarm_name']:<52} {composite['alarm_rule']}")
    # Preconditions the plan stops on: the settings a deploy of this stack still needs.
    for check in resources.get("terraform_data", {}).values():
        for precondition in check.get("lifecycle", {}).get("precondition", []):
            lines.append(f"  DEPLOY NEEDS  {precondition['error_message']}")
    return lines


def main(outdir: str) -> int:
    stacks = sorted(Path(outdir).glob("stacks/*/cdk.tf.json"))
    if not stacks:
        sys.stderr.write(f"no synthesized stack under {outdir}/stacks\n")
        return 1
    for stack_file in stacks:
        sys.stdout.write("\n".join(summarize(stack_file)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cdktf.out"))
