"""A checker of CloudWatch Embedded Metric Format documents, written from AWS's
"Specification: Embedded metric format" (its document structure and JSON schema,
docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html) and the CloudWatch limits it points
to (MetricDatum's units, a namespace of at most 255 characters, a dimension value of at most
1024). A line CloudWatch Logs would reject or silently extract nothing from fails here
with the rule it breaks.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

# MetricDatum's Unit values, as the specification's schema lists them.
STANDARD_UNITS = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)
MAX_NAMESPACE_CHARS = 255  # CloudWatch's limit (the EMF schema alone allows 1024)
MAX_DIMENSIONS_PER_SET = 30
MAX_DIMENSION_NAME_CHARS = 250
MAX_DIMENSION_VALUE_CHARS = 1024
MAX_METRIC_NAME_CHARS = 1024
MAX_METRICS_PER_DIRECTIVE = 100
MAX_VALUES_PER_METRIC = 100
STORAGE_RESOLUTIONS = (1, 60)
# CloudWatch takes a datapoint from up to two weeks ago and up to two hours ahead.
OLDEST_TIMESTAMP_S = 14 * 86_400
NEWEST_TIMESTAMP_S = 2 * 3600
# CloudWatch Logs takes a log event of at most 1 MB (256 KB until 2025): the smaller bound
# is the one that holds everywhere.
MAX_EVENT_BYTES = 256 * 1024


class EmfError(AssertionError):
    """The document breaks a rule of the specification; the message names it."""


def _check(condition: bool, rule: str) -> None:
    if not condition:
        raise EmfError(rule)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_emf(line: str) -> dict[str, Any]:
    """Parse one log line and check it is a valid EMF document; returns the document."""
    _check(len(line.encode()) <= MAX_EVENT_BYTES, f"event over {MAX_EVENT_BYTES} bytes")
    _check("\n" not in line, "one document per log event: no newline inside")
    document = json.loads(line)
    _check(isinstance(document, dict), "the root node is a JSON object")
    metadata = document.get("_aws")
    _check(isinstance(metadata, dict), "the root node has an `_aws` object")
    timestamp = metadata.get("Timestamp")
    _check(
        isinstance(timestamp, int) and not isinstance(timestamp, bool),
        "`_aws.Timestamp` is an integer",
    )
    # Milliseconds, not seconds: a seconds value would be in January 1970.
    now_ms = time.time() * 1000
    _check(
        now_ms - OLDEST_TIMESTAMP_S * 1000 <= timestamp <= now_ms + NEWEST_TIMESTAMP_S * 1000,
        f"`_aws.Timestamp` is now, in milliseconds since the epoch, got {timestamp}",
    )
    directives = metadata.get("CloudWatchMetrics")
    _check(isinstance(directives, list), "`_aws.CloudWatchMetrics` is an array")
    for index, directive in enumerate(directives):
        where = f"CloudWatchMetrics[{index}]"
        _check(isinstance(directive, dict), f"{where} is an object")
        _check(
            {"Namespace", "Dimensions", "Metrics"} <= directive.keys(),
            f"{where} has Namespace, Dimensions and Metrics",
        )
        unknown = directive.keys() - {"Namespace", "Dimensions", "Metrics"}
        _check(not unknown, f"{where} has no other members, got {sorted(unknown)}")
        namespace = directive["Namespace"]
        _check(
            isinstance(namespace, str) and 1 <= len(namespace) <= MAX_NAMESPACE_CHARS,
            f"{where}.Namespace is a string of 1 to {MAX_NAMESPACE_CHARS} characters",
        )
        _check_dimensions(document, directive["Dimensions"], f"{where}.Dimensions")
        _check_metrics(document, directive["Metrics"], f"{where}.Metrics")
    return document


def _check_dimensions(document: dict[str, Any], sets: Any, where: str) -> None:
    _check(isinstance(sets, list) and len(sets) >= 1, f"{where} is a non-empty array")
    for index, names in enumerate(sets):
        _check(isinstance(names, list), f"{where}[{index}] is an array")
        _check(
            len(names) <= MAX_DIMENSIONS_PER_SET,
            f"{where}[{index}] has at most {MAX_DIMENSIONS_PER_SET} dimensions",
        )
        for name in names:
            _check(
                isinstance(name, str) and 1 <= len(name) <= MAX_DIMENSION_NAME_CHARS,
                f"{where}[{index}]: {name!r} is a name of 1 to {MAX_DIMENSION_NAME_CHARS} chars",
            )
            _check(name in document, f"{where}[{index}]: {name!r} is a member of the root")
            value = document[name]
            _check(
                isinstance(value, str) and 1 <= len(value) <= MAX_DIMENSION_VALUE_CHARS,
                f"dimension {name!r} holds a string of 1 to {MAX_DIMENSION_VALUE_CHARS} "
                f"characters, got {value!r}",
            )
            # CloudWatch's Dimension: ASCII, no control characters, not only whitespace.
            _check(
                value.isascii() and value.isprintable() and not value.isspace(),
                f"dimension {name!r} holds printable ASCII, got {value!r}",
            )


def _check_metrics(document: dict[str, Any], metrics: Any, where: str) -> None:
    _check(isinstance(metrics, list), f"{where} is an array")
    _check(
        len(metrics) <= MAX_METRICS_PER_DIRECTIVE,
        f"{where} has at most {MAX_METRICS_PER_DIRECTIVE} definitions",
    )
    for index, definition in enumerate(metrics):
        here = f"{where}[{index}]"
        _check(isinstance(definition, dict), f"{here} is an object")
        name = definition.get("Name")
        _check(
            isinstance(name, str) and 1 <= len(name) <= MAX_METRIC_NAME_CHARS,
            f"{here}.Name is a string of 1 to {MAX_METRIC_NAME_CHARS} characters",
        )
        _check(name in document, f"{here}: metric {name!r} is a member of the root")
        value = document[name]
        if isinstance(value, list):
            _check(
                1 <= len(value) <= MAX_VALUES_PER_METRIC and all(map(_is_number, value)),
                f"metric {name!r} holds 1 to {MAX_VALUES_PER_METRIC} numbers",
            )
        else:
            _check(_is_number(value), f"metric {name!r} holds a number, got {value!r}")
        if "Unit" in definition:
            _check(
                definition["Unit"] in STANDARD_UNITS,
                f"{here}.Unit {definition['Unit']!r} is a CloudWatch unit",
            )
        if "StorageResolution" in definition:
            _check(
                definition["StorageResolution"] in STORAGE_RESOLUTIONS
                and not isinstance(definition["StorageResolution"], bool),
                f"{here}.StorageResolution is 1 or 60",
            )
        unknown = definition.keys() - {"Name", "Unit", "StorageResolution"}
        _check(not unknown, f"{here} has no other members, got {sorted(unknown)}")


def emitted_metrics(document: dict[str, Any]) -> set[tuple[str, str, tuple[str, ...]]]:
    """(namespace, metric, dimension names) of every metric the document creates."""
    return {
        (directive["Namespace"], metric["Name"], tuple(names))
        for directive in document["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
        for names in directive["Dimensions"]
    }
