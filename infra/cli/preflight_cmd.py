"""`fleet preflight`: the deploy's prerequisites, checked read-only in the current account.

Settings come from the environment exactly as the stack reads them; AWS access from boto3's
default chain (AWS_PROFILE, AWS_ENDPOINT_URL, ...). Exit 0 when every check passes (warnings
allowed), 1 when one fails, 2 for a usage error.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra.cli.common import CommandError, print_json
from infra.cli.preflight_checks import (
    CheckResult,
    check_alarm_email,
    check_certificate,
    check_credentials,
    check_image,
    check_instance_type,
    check_model,
    check_state_bucket,
    check_tenants_secret,
    check_vcpu_quota,
)
from infra.policy import FLEET_POLICY
from infra.policy.aws_rules import compile_scaling_rules
from infra.stack.naming import ENVIRONMENTS, environment_stack_name
from infra.stack.settings import StackSettings, load_settings

if TYPE_CHECKING:
    from mypy_boto3_acm import ACMClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_route53 import Route53Client
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_service_quotas import ServiceQuotasClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient


@dataclass(frozen=True)
class AwsClients:
    sts: STSClient
    acm: ACMClient
    route53: Route53Client
    secrets: SecretsManagerClient
    ssm: SSMClient
    ec2: EC2Client
    s3: S3Client
    quotas: ServiceQuotasClient
    sns: SNSClient


def aws_clients(region: str) -> AwsClients:
    """Every client the checks read, in the stack's region, from boto3's default chain."""
    import boto3

    # boto3's default session: its service models load once per process, not per call.
    def client(service: str) -> Any:
        return boto3.client(service, region_name=region)  # type: ignore[call-overload]

    return AwsClients(
        sts=client("sts"),
        acm=client("acm"),
        route53=client("route53"),
        secrets=client("secretsmanager"),
        ssm=client("ssm"),
        ec2=client("ec2"),
        s3=client("s3"),
        quotas=client("service-quotas"),
        sns=client("sns"),
    )


def settings_for_stack(name: str) -> StackSettings:
    environments = {environment_stack_name(env): env for env in ENVIRONMENTS}
    if name not in environments:
        raise CommandError(f"unknown stack {name!r}: expected one of {', '.join(environments)}")
    return load_settings(environments[name])


def most_instances(settings: StackSettings) -> int:
    """The group's maximum, as the stack compiles it, plus the warm pool's instances."""
    maximum = compile_scaling_rules(settings.fleet_policy(FLEET_POLICY)).max_capacity
    return maximum + (settings.warm_pool_size if settings.warm_pool else 0)


def alarm_topic_name(stack: str) -> str:
    # As infra/stack/observability.py names the topic; a stack test holds the two together.
    return f"{stack}-alarms"


def run_checks(settings: StackSettings, stack: str, clients: AwsClients) -> list[CheckResult]:
    credentials, account_id = check_credentials(clients.sts)
    if credentials.status == "fail":
        return [credentials]  # every other check would fail for the same reason
    prefix = str(settings.model_config.get("env_prefix", ""))
    return [
        credentials,
        check_certificate(
            clients.acm,
            clients.route53,
            certificate_arn=settings.certificate_arn,
            api_domain=settings.api_domain,
            hosted_zone_id=settings.hosted_zone_id,
            env_prefix=prefix,
        ),
        check_tenants_secret(
            clients.secrets, secret_arn=settings.tenants_secret_arn, env_prefix=prefix
        ),
        check_image(
            clients.ssm,
            clients.ec2,
            image_ssm_parameter=settings.image_ssm_parameter,
            image_id=settings.image_id,
            root_volume_gb=settings.root_volume_gb,
            env_prefix=prefix,
        ),
        check_model(clients.s3, model_location=settings.model_location, env_prefix=prefix),
        check_state_bucket(
            clients.s3,
            bucket=settings.state_bucket,
            environment=settings.environment,
            region=settings.region,
            account_id=account_id,
            env_prefix=prefix,
        ),
        check_instance_type(
            clients.ec2,
            instance_type=settings.instance_type,
            zones=settings.availability_zones,
            env_prefix=prefix,
        ),
        check_vcpu_quota(
            clients.quotas,
            clients.ec2,
            instance_type=settings.instance_type,
            instances=most_instances(settings),
        ),
        check_alarm_email(
            clients.sns,
            topic_name=alarm_topic_name(stack),
            alarm_email=settings.alarm_email,
            env_prefix=prefix,
        ),
    ]


def run(args: argparse.Namespace) -> int:
    settings = settings_for_stack(args.stack)
    results = run_checks(settings, args.stack, aws_clients(settings.region))
    failed = [result for result in results if result.status == "fail"]
    if args.json:
        print_json([result.as_json() for result in results])
    else:
        width = max(len(result.check) for result in results)
        for result in results:
            print(f"{result.status:<4}  {result.check:<{width}}  {result.detail}")
        warnings = sum(result.status == "warn" for result in results)
        if failed:
            print(f"{args.stack}: {len(failed)} of {len(results)} checks failed")
        else:
            print(f"{args.stack}: ready to deploy ({warnings} warning{'s' * (warnings != 1)})")
    return 1 if failed else 0


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "preflight",
        help="check a stack's deploy prerequisites in the current AWS account (read-only)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stack",
        required=True,
        metavar="NAME",
        help=f"the stack to deploy: {', '.join(environment_stack_name(e) for e in ENVIRONMENTS)}",
    )
    parser.add_argument(
        "--json", action="store_true", help='a list of {"check", "status", "detail"}'
    )
    parser.set_defaults(handler=run)
