"""The failure runbook stays in step with the stack: one entry per alarm, under its exact
name, and no entry for an alarm that does not exist.

The alarms are read twice: from `infra.stack.observability.ALL_ALARMS` (every name the
stack declares) and from the synthesized Terraform JSON of every environment (what it
actually deploys, metric and composite alarms), with the fleet's name stripped; the two
must agree.

Two kinds of deployed alarm have no entry of their own, on purpose: the SLO burn-rate
composites' inputs (`<composite>-long` / `-short`, no actions: only the composite
notifies, and its entry describes them), and a tenant's burn-rate composite
(`slo-burn-fast-<tenant>`), which shares the fleet-wide one's entry. The test checks both
exemptions against the stack instead of trusting the names.
"""

from __future__ import annotations

import argparse
import json
import re

import pytest

from infra.policy import FLEET_POLICY
from infra.stack.observability import ALL_ALARMS, alarm_name
from infra.stack.slo_alarms import burn_rate_alarms
from tests.processes import REPO
from tests.security.synth import resources, synthesized_stacks

RUNBOOK = REPO / "runbooks" / "failure_runbook.md"
ALARM_SECTION = "## Part 1: alarms"
FIELDS = ("What it means", "How to confirm", "What to do", "How to know it is fixed")
# An alarm-shaped heading: a single kebab-case name in backticks.
ALARM_HEADING = re.compile(r"^#{2,4} `([a-z0-9]+(?:-[a-z0-9]+)+)`\s*$")
SCENARIOS = {
    "cold-start cascade": ("Cold-start cascade at the open",),
    "g5 capacity": ("g5 capacity errors",),
    "ALB fails open": ("ALB failing open",),
    "bad AMI rollout": ("bad AMI rollout", "rollback"),
    "oscillation": ("Oscillation", "recalibrat"),
    "Kubernetes + KEDA": ("Kubernetes + KEDA",),
}


def sections(text: str) -> dict[str, str]:
    """Heading line -> the text under it, up to the next heading of any level.

    A `#` inside a fenced code block is a shell comment, not a heading.
    """
    found: dict[str, str] = {}
    heading = ""
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if line.startswith("#") and not in_code:
            heading = line.strip()
            found[heading] = ""
        elif heading:
            found[heading] += line + "\n"
    return found


def prose(text: str) -> str:
    """The text without code blocks and inline code, on one line."""
    without_blocks = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    return re.sub(r"`[^`]*`", " ", without_blocks).replace("\n", " ")


def alarm_entries(text: str) -> dict[str, str]:
    """Alarm name -> its entry, for every alarm-shaped heading anywhere in the runbook."""
    return {
        match.group(1): body
        for heading, body in sections(text).items()
        if (match := ALARM_HEADING.match(heading))
    }


def deployed_alarms() -> set[str]:
    """The runbook entry of every alarm in every synthesized stack that notifies someone or
    something, without the `<fleet>-` prefix (a tenant's burn-rate alarm: its entry's)."""
    entry_of = {alarm.name: alarm.entry for alarm in burn_rate_alarms(FLEET_POLICY.slo)}
    names: set[str] = set()
    for stack_name, stack in synthesized_stacks().items():
        composites = resources(stack, "aws_cloudwatch_composite_alarm").values()
        inputs = {
            name for c in composites for name in re.findall(r'ALARM\("([^"]+)"\)', c["alarm_rule"])
        }
        for alarm in [*resources(stack, "aws_cloudwatch_metric_alarm").values(), *composites]:
            full = alarm["alarm_name"]
            assert full.startswith(stack_name + "-"), full
            if full in inputs:
                # an input acts only through its composite, whose entry describes it
                assert not alarm.get("alarm_actions") and not alarm.get("ok_actions"), full
                continue
            short = full.removeprefix(stack_name + "-")
            names.add(entry_of.get(short, short))
    return names


def dashboard_titles() -> set[str]:
    titles: set[str] = set()
    for stack in synthesized_stacks().values():
        for dashboard in resources(stack, "aws_cloudwatch_dashboard").values():
            body = json.loads(dashboard["dashboard_body"])
            titles.update(widget["properties"]["title"] for widget in body["widgets"])
    return titles


@pytest.fixture(scope="module")
def runbook() -> str:
    return RUNBOOK.read_text()


def test_every_alarm_the_stack_declares_and_deploys_has_an_entry(runbook: str) -> None:
    entries = alarm_entries(runbook)
    declared, deployed = set(ALL_ALARMS), deployed_alarms()
    assert declared == deployed, (declared - deployed, deployed - declared)
    assert deployed - set(entries) == set(), "alarms without a runbook entry"


def test_every_alarm_shaped_entry_names_a_real_alarm(runbook: str) -> None:
    entries = alarm_entries(runbook)
    assert set(entries) - deployed_alarms() == set(), "runbook entries for no alarm"
    # and they all live in the alarms part, where an on-call engineer looks them up
    part1 = runbook.split(ALARM_SECTION, 1)[1].split("\n## ", 1)[0]
    assert set(alarm_entries(part1)) == set(entries)


def test_each_alarm_entry_answers_the_four_questions(runbook: str) -> None:
    titles = dashboard_titles()
    for name, body in alarm_entries(runbook).items():
        for field in FIELDS:
            assert f"**{field}" in body, (name, field)
        confirm = body.split("**How to confirm", 1)[1].split("**What to do", 1)[0]
        quoted = set(re.findall(r'"([^"]+)"', prose(confirm)))
        assert quoted & titles, (name, "names no dashboard widget by its exact title")
        assert "aws " in confirm, (name, "gives no AWS CLI command")
        # the alarm itself is looked up by its deployed name (through the `alarm` helper)
        assert f"alarm {name}" in confirm, name


def test_every_quoted_widget_title_exists_on_the_dashboard(runbook: str) -> None:
    # Widgets are quoted after "widget"/"widgets" and in the lists that follow; a quoted
    # phrase that starts like one of the dashboard's titles must be one of them, exactly.
    titles = dashboard_titles()
    starts = {title.split()[0] for title in titles}
    quoted = re.findall(r'"([^"]+)"', prose(runbook))
    mentioned = [phrase for phrase in quoted if phrase.split()[0] in starts]
    assert len(mentioned) >= 20
    for phrase in mentioned:
        assert phrase in titles, phrase


def test_the_scenarios_and_procedures_have_entries(runbook: str) -> None:
    headings = [h for h in sections(runbook) if h.startswith("### ")]
    for scenario, words in SCENARIOS.items():
        matching = [h for h in headings if all(w.lower() in h.lower() for w in words)]
        assert len(matching) == 1, (scenario, matching)
        body = sections(runbook)[matching[0]]
        for field in FIELDS:
            # A procedure is done rather than fixed.
            alternatives = (field, field.replace("fixed", "done"))
            assert any(f"**{a}" in body for a in alternatives), (scenario, field)


def test_the_procedures_use_the_fleet_commands_that_exist(runbook: str) -> None:
    body = sections(runbook)
    oscillation = next(v for k, v in body.items() if "Oscillation" in k)
    assert "fleet check" in oscillation and "fleet simulate" in oscillation
    keda = next(v for k, v in body.items() if "Kubernetes + KEDA" in k)
    assert "fleet export keda" in keda

    from infra.cli.main import build_parser

    commands = _subcommands(build_parser())
    for command, action in set(re.findall(r"(?:`|bin/)fleet ([a-z]+)(?: ([a-z]+))?", runbook)):
        assert command in commands, command
        nested = _subcommands(commands[command])
        if nested and action:
            assert action in nested, (command, action)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_entries_are_named_as_deployed_without_the_fleet_prefix(runbook: str) -> None:
    # The convention the runbook states: entry `x` is the alarm `<fleet>-x`.
    assert alarm_name("finsight-serving-prod", "alb-p99-response-time-high") == (
        "finsight-serving-prod-alb-p99-response-time-high"
    )
    assert "`<fleet>-<alarm>`" in runbook
