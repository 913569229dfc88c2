"""The SLO's multiwindow burn-rate alarms, fleet-wide and for each tenant the SLO names.

Each burn-rate window of `infra/policy/slo.py` (`Slo.burn_rate_windows`) becomes one
CloudWatch composite alarm, `ALARM("<name>-long") AND ALARM("<name>-short")`, over two
metric-math alarms without actions of their own:

    burn = IF(n >= min_requests, miss / error_budget, 0)

where `miss` is the Average of the gateway's per-request `slo_miss` (1 late, failed or
shed, 0 met) over the window, which is the window's error ratio, and `n` its SampleCount,
the requests counted. A burn of 1 spends the budget exactly over the SLO's window; the
threshold is the window's `burn_rate`, derived in `infra/policy/slo.py` as
`budget_share * window_hours / long_window_hours` (99 % over 28 days: 2 % of the budget in
1 h is 13.44, 5 % in 6 h is 5.6). The long window proves the burn is real, the short one (a
twelfth) that it is still going on, so the composite clears minutes after the problem ends.
Below `min_requests` the expression is 0: a quiet night's single failure never pages.
The fast window pages (the alarm topic), the slow one tickets (the ticket topic).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktn_provider_aws.cloudwatch_composite_alarm import CloudwatchCompositeAlarm
from cdktn_provider_aws.cloudwatch_metric_alarm import (
    CloudwatchMetricAlarm,
    CloudwatchMetricAlarmMetricQuery,
    CloudwatchMetricAlarmMetricQueryMetric,
)
from constructs import Construct

from contract import GROUP_DIMENSION, SLO_MISS_METRIC, TENANT_DIMENSION
from infra.policy.errors import PolicyError
from infra.policy.slo import BURN_RATE_WINDOWS, BurnRateWindow, Severity, Slo

BURN_ALARM_PREFIX = "slo-burn-"
# The fleet-wide composite of each window (`slo-burn-fast`, `slo-burn-slow`); a tenant's
# is `slo-burn-fast-<tenant>` and shares the fleet-wide one's runbook entry.
SLO_ALARMS = tuple(f"{BURN_ALARM_PREFIX}{name}" for name, *_ in BURN_RATE_WINDOWS)
LONG_SUFFIX = "-long"
SHORT_SUFFIX = "-short"


@dataclass(frozen=True)
class BurnRateAlarm:
    """One composite burn-rate alarm and its two inputs, named without the fleet prefix."""

    window: BurnRateWindow
    tenant: str | None  # None: fleet-wide

    @property
    def entry(self) -> str:
        """The runbook entry (and the fleet-wide alarm's name): `slo-burn-fast`."""
        return f"{BURN_ALARM_PREFIX}{self.window.name}"

    @property
    def name(self) -> str:
        return self.entry if self.tenant is None else f"{self.entry}-{self.tenant}"

    @property
    def long_name(self) -> str:
        return self.name + LONG_SUFFIX

    @property
    def short_name(self) -> str:
        return self.name + SHORT_SUFFIX


def burn_rate_alarms(slo: Slo) -> tuple[BurnRateAlarm, ...]:
    """Every composite the SLO asks for: each window fleet-wide, then for each tenant.

    A tenant whose alarm names would equal another alarm's (a tenant called `long`
    gives `slo-burn-fast-long`, the fleet-wide alarm's input) is refused, naming it.
    """
    alarms = tuple(
        BurnRateAlarm(window, tenant)
        for tenant in (None, *(entry.tenant for entry in slo.tenants))
        for window in slo.burn_rate_windows()
    )
    seen: dict[str, BurnRateAlarm] = {}
    for alarm in alarms:
        for name in (alarm.name, alarm.long_name, alarm.short_name):
            if name in seen:
                raise PolicyError(
                    "slo.tenants",
                    f"tenant {alarm.tenant or seen[name].tenant!r} gives the alarm name "
                    f"{name!r}, which another burn-rate alarm already has; rename the tenant",
                )
            seen[name] = alarm
    return alarms


def burn_expression(slo: Slo) -> str:
    """The children's metric math: the burn rate, 0 below `min_requests`."""
    return f"IF(n >= {slo.min_requests}, miss / {slo.error_budget:g}, 0)"


@dataclass(frozen=True)
class SloAlarmsProps:
    name: str  # the fleet's name: every alarm is `<name>-...` (the topic key's condition)
    namespace: str
    autoscaling_group_name: str
    slo: Slo
    page_topic_arn: str
    ticket_topic_arn: str


class SloAlarms(Construct):
    # Deployed composite name -> the deployed names of its two inputs.
    composites: dict[str, tuple[str, str]]

    def __init__(self, scope: Construct, id_: str, props: SloAlarmsProps) -> None:
        super().__init__(scope, id_)
        self._props = props
        self.composites = {}
        for alarm in burn_rate_alarms(props.slo):
            self._composite(alarm)

    def _composite(self, alarm: BurnRateAlarm) -> None:
        props, window = self._props, alarm.window
        who = "fleet-wide" if alarm.tenant is None else f"tenant {alarm.tenant}"
        long_alarm = self._child(alarm, alarm.long_name, window.long_window_s)
        short_alarm = self._child(alarm, alarm.short_name, window.short_window_s)
        topic = props.page_topic_arn if window.severity is Severity.PAGE else props.ticket_topic_arn
        deployed = f"{props.name}-{alarm.name}"
        long_deployed = f"{props.name}-{alarm.long_name}"
        short_deployed = f"{props.name}-{alarm.short_name}"
        CloudwatchCompositeAlarm(
            self,
            alarm.name,
            alarm_name=deployed,
            alarm_description=(
                f"{window.severity.value}: {who} spends the SLO's error budget "
                f"({props.slo.describe(alarm.tenant)}) at >= {window.burn_rate:g}x its even "
                f"rate over both the last {duration(window.long_window_s)} and the last "
                f"{duration(window.short_window_s)} ({window.budget_share:.0%} of the budget "
                f"in {duration(window.long_window_s)}); runbook entry {alarm.entry}"
            ),
            # Names, not references: the rule reads as it is deployed; depends_on orders
            # the creation (CloudWatch refuses a rule naming an alarm that does not exist).
            alarm_rule=f'ALARM("{long_deployed}") AND ALARM("{short_deployed}")',
            alarm_actions=[topic],
            ok_actions=[topic],
            depends_on=[long_alarm, short_alarm],
        )
        self.composites[deployed] = (long_deployed, short_deployed)

    def _child(self, alarm: BurnRateAlarm, name: str, period_s: int) -> CloudwatchMetricAlarm:
        props, window = self._props, alarm.window
        dimensions = {GROUP_DIMENSION: props.autoscaling_group_name}
        if alarm.tenant is not None:
            dimensions[TENANT_DIMENSION] = alarm.tenant

        def read(id_: str, stat: str) -> CloudwatchMetricAlarmMetricQuery:
            return CloudwatchMetricAlarmMetricQuery(
                id=id_,
                metric=CloudwatchMetricAlarmMetricQueryMetric(
                    namespace=props.namespace,
                    metric_name=SLO_MISS_METRIC,
                    dimensions=dimensions,
                    stat=stat,
                    period=period_s,
                ),
            )

        # No actions: only the composite notifies, when both windows burn.
        return CloudwatchMetricAlarm(
            self,
            name,
            alarm_name=f"{props.name}-{name}",
            alarm_description=(
                f"Input of {props.name}-{alarm.name}: error budget burn rate over "
                f"{duration(period_s)} at or above {window.burn_rate:g}"
            ),
            evaluation_periods=1,
            datapoints_to_alarm=1,
            threshold=window.burn_rate,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            metric_query=[
                read("miss", "Average"),
                read("n", "SampleCount"),
                CloudwatchMetricAlarmMetricQuery(
                    id="burn",
                    label="error budget burn rate",
                    expression=burn_expression(props.slo),
                    return_data=True,
                ),
            ],
        )


def duration(seconds: int) -> str:
    """`1 h`, `5 min`: a window as the alarms and the dashboard name it."""
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min"
