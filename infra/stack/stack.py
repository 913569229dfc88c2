"""One environment's stack: builds each concern's construct and wires their attributes.

No resource is declared here; each lives in its construct (network, load_balancer, dns,
fleet, scaling, schedule, observability, deploy_checks).
"""

from __future__ import annotations

from cdktn import LocalBackend, S3Backend, TerraformOutput, TerraformStack
from cdktn_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktn_provider_aws.provider import AwsProvider, AwsProviderDefaultTags
from constructs import Construct

from infra.policy import FLEET_POLICY, FleetPolicy, cold_start
from infra.policy.aws_rules import ScalingRules, compile_scaling_rules
from infra.policy.gateway import gateway_policy_settings
from infra.stack.deploy_checks import DeployChecks
from infra.stack.dns import ApiAlias, ApiAliasProps, ApiCertificate, ApiCertificateProps
from infra.stack.fleet import Fleet, FleetProps, model_fetch_allowance_s
from infra.stack.load_balancer import LoadBalancer, LoadBalancerProps
from infra.stack.market_calendar import MarketCalendar, MarketCalendarProps
from infra.stack.naming import stack_name as stack_name
from infra.stack.network import Network, NetworkProps
from infra.stack.observability import (
    QUEUE_DEPTH_ALARM,
    SCALE_IN_ALARM,
    SCALE_OUT_ALARM,
    UNHEALTHY_HOST_ALARM,
    Observability,
    ObservabilityProps,
    alarm_name,
)
from infra.stack.scaling import Scaling, ScalingProps
from infra.stack.schedule import Schedule, ScheduleProps
from infra.stack.settings import StackSettings

# The same JSON must init offline against the mirrored 5.100 and deploy with 6.x.
AWS_PROVIDER_VERSION = ">= 5.100.0, < 7.0.0"


class FleetStack(TerraformStack):
    settings: StackSettings
    policy: FleetPolicy
    rules: ScalingRules
    network: Network
    load_balancer: LoadBalancer
    fleet: Fleet
    scaling: Scaling
    schedule: Schedule
    observability: Observability
    market_calendar: MarketCalendar | None
    # The deployed name of every alarm in this stack: metric alarms, the burn-rate composites
    # and their inputs.
    alarm_names: tuple[str, ...]

    def __init__(
        self, scope: Construct, settings: StackSettings, policy: FleetPolicy = FLEET_POLICY
    ) -> None:
        name = stack_name(settings)
        super().__init__(scope, name)
        # The environment's replica settings on top of the shared policy (dev runs smaller).
        policy = settings.fleet_policy(policy)
        self.settings, self.policy = settings, policy
        # New instances count after a typical boot on this environment's weight path.
        self.rules = compile_scaling_rules(
            policy, instance_warmup_s=cold_start.instance_warmup_s(settings.weight_path)
        )
        self.add_override("terraform.required_providers.aws.version", AWS_PROVIDER_VERSION)
        AwsProvider(
            self,
            "aws",
            region=settings.region,
            default_tags=[
                AwsProviderDefaultTags(
                    tags={"Project": "finsight-serving", "Environment": settings.environment}
                )
            ],
        )
        if settings.state_bucket is not None:
            S3Backend(
                self,
                bucket=settings.state_bucket,
                key=f"{settings.environment}/{settings.state_key}",
                region=settings.region,
                encrypt=True,
                use_lockfile=True,
            )
        else:
            LocalBackend(self, path=f"terraform.{name}.tfstate")
        account_id = DataAwsCallerIdentity(self, "account").account_id
        DeployChecks(self, "deploy-checks", settings.deploy_blockers())

        self.network = Network(
            self,
            "network",
            NetworkProps(
                name=name,
                region=settings.region,
                availability_zones=settings.availability_zones,
                vpc_cidr=settings.vpc_cidr,
                vpc_id=settings.vpc_id,
                public_subnet_ids=settings.public_subnet_ids,
                private_subnet_ids=settings.private_subnet_ids,
            ),
        )
        certificate_arn = settings.certificate_arn
        if (
            certificate_arn is None
            and settings.api_domain is not None
            and settings.hosted_zone_id is not None
        ):
            certificate_arn = ApiCertificate(
                self,
                "api-certificate",
                ApiCertificateProps(
                    name=name,
                    api_domain=settings.api_domain,
                    hosted_zone_id=settings.hosted_zone_id,
                ),
            ).certificate_arn
        self.load_balancer = LoadBalancer(
            self,
            "load-balancer",
            LoadBalancerProps(
                name=name,
                vpc_id=self.network.vpc_id,
                public_subnet_ids=self.network.public_subnet_ids,
                certificate_arn=certificate_arn,
                account_id=account_id,
                longest_request_s=settings.longest_request_s,
                deletion_protection=settings.deletion_protection,
            ),
        )
        self.fleet = Fleet(
            self,
            "fleet",
            FleetProps(
                name=name,
                region=settings.region,
                account_id=account_id,
                vpc_id=self.network.vpc_id,
                private_subnet_ids=self.network.private_subnet_ids,
                alb_security_group_id=self.load_balancer.security_group_id,
                target_group_arn=self.load_balancer.target_group_arn,
                instance_type=settings.instance_type,
                image_ssm_parameter=settings.image_ssm_parameter,
                image_id=settings.image_id,
                root_volume_gb=settings.root_volume_gb,
                root_volume_setting=settings.env_name("root_volume_gb"),
                # A first deploy may land in market hours: start at the market-hours minimum;
                # the next close action lowers it (deploys leave it to the schedule after).
                min_size=self.rules.market_hours_min_capacity,
                max_size=self.rules.max_capacity,
                health_check_grace_period_s=cold_start.health_check_grace_period_s(
                    settings.weight_path
                )
                + model_fetch_allowance_s(settings.weight_path),
                instance_warmup_s=cold_start.instance_warmup_s(settings.weight_path),
                warm_pool=settings.warm_pool,
                warm_pool_size=settings.warm_pool_size,
                cloudwatch_namespace=settings.cloudwatch_namespace,
                model_location=settings.model_location,
                weight_path=settings.weight_path,
                model_bucket=settings.model_bucket,
                model_prefix=settings.model_prefix,
                tenants_secret_arn=settings.tenants_secret_arn,
                drain_deadline_s=settings.drain_deadline_s,
                gateway_policy=gateway_policy_settings(policy),
                gateway_keep_alive_s=self.load_balancer.backend_keep_alive_s,
                # A new instance failing its readiness probe stops the rollout and undoes it.
                # The name, not the resource: the alarm is created once, before any refresh.
                rollback_alarm_names=(alarm_name(name, UNHEALTHY_HOST_ALARM),),
            ),
        )
        group_name = self.fleet.autoscaling_group_name
        self.observability = Observability(
            self,
            "observability",
            ObservabilityProps(
                name=name,
                region=settings.region,
                account_id=account_id,
                namespace=settings.cloudwatch_namespace,
                autoscaling_group_name=group_name,
                load_balancer_arn_suffix=self.load_balancer.arn_suffix,
                target_group_arn_suffix=self.load_balancer.target_group_arn_suffix,
                rules=self.rules,
                slo=policy.slo,
                alb_response_time_p99_s=settings.alb_response_time_p99_s,
                error_rate_5xx_percent=settings.error_rate_5xx_percent,
                alarm_email=settings.alarm_email,
                ticket_email=settings.ticket_email,
                log_retention_days=settings.log_retention_days,
            ),
        )
        self.scaling = Scaling(
            self,
            "scaling",
            ScalingProps(
                name=name,
                autoscaling_group_name=group_name,
                namespace=settings.cloudwatch_namespace,
                rules=self.rules,
                scale_out_alarm_name=self.observability.alarm_names[SCALE_OUT_ALARM],
                scale_in_alarm_name=self.observability.alarm_names[SCALE_IN_ALARM],
                queue_depth_alarm_name=self.observability.alarm_names[QUEUE_DEPTH_ALARM],
            ),
        )
        self.schedule = Schedule(
            self,
            "schedule",
            ScheduleProps(autoscaling_group_name=group_name, policy=policy),
        )
        self.market_calendar = None
        if settings.market_calendar:
            self.market_calendar = MarketCalendar(
                self,
                "market-calendar",
                MarketCalendarProps(
                    name=name,
                    account_id=account_id,
                    autoscaling_group_name=group_name,
                    autoscaling_group_arn=self.fleet.autoscaling_group_arn,
                    alarm_topic_arn=self.observability.alarm_topic_arn,
                    policy=policy,
                    log_retention_days=settings.log_retention_days,
                    metrics_namespace=settings.cloudwatch_namespace,
                ),
            )
        slo_alarms = self.observability.slo_alarms.composites
        self.alarm_names = (
            tuple(self.observability.alarm_names.values())
            + tuple(slo_alarms)
            + tuple(name for inputs in slo_alarms.values() for name in inputs)
            + (tuple(self.market_calendar.alarm_names.values()) if self.market_calendar else ())
        )
        api_host = self.load_balancer.dns_name
        if settings.api_domain is not None and settings.hosted_zone_id is not None:
            ApiAlias(
                self,
                "api-alias",
                ApiAliasProps(
                    api_domain=settings.api_domain,
                    hosted_zone_id=settings.hosted_zone_id,
                    load_balancer_dns_name=self.load_balancer.dns_name,
                    load_balancer_zone_id=self.load_balancer.zone_id,
                ),
            )
            api_host = settings.api_domain
        # What a client configures as its OpenAI base URL.
        TerraformOutput(self, "api_url", value=f"https://{api_host}/v1")
        TerraformOutput(self, "api_dns_name", value=self.load_balancer.dns_name)
        TerraformOutput(self, "autoscaling_group_name", value=group_name)
        TerraformOutput(self, "alarm_topic_arn", value=self.observability.alarm_topic_arn)
        TerraformOutput(self, "ticket_topic_arn", value=self.observability.ticket_topic_arn)
        TerraformOutput(self, "dashboard_name", value=self.observability.dashboard_name)
