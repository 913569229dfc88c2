"""The API's name: a DNS-validated certificate when none is given, and the alias record.

Only with `api_domain` and `hosted_zone_id` set; without them clients use the load
balancer's own DNS name and the certificate must be given (`certificate_arn`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktn import TerraformResourceLifecycle
from cdktn_provider_aws.acm_certificate import AcmCertificate
from cdktn_provider_aws.acm_certificate_validation import AcmCertificateValidation
from cdktn_provider_aws.route53_record import Route53Record, Route53RecordAlias
from constructs import Construct

# How long Route 53's answer for the validation record may be cached.
VALIDATION_RECORD_TTL_S = 300


@dataclass(frozen=True)
class ApiCertificateProps:
    name: str
    api_domain: str
    hosted_zone_id: str


class ApiCertificate(Construct):
    """An ACM certificate for the API's name, validated by a record in its hosted zone."""

    # The validation's ARN: whatever uses it waits until the certificate is issued.
    certificate_arn: str

    def __init__(self, scope: Construct, id_: str, props: ApiCertificateProps) -> None:
        super().__init__(scope, id_)
        certificate = AcmCertificate(
            self,
            "certificate",
            domain_name=props.api_domain,
            validation_method="DNS",
            tags={"Name": props.name},
            # A replacement is issued before the listener lets go of the old one.
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        # One name, one validation record.
        option = certificate.domain_validation_options.get(0)
        record = Route53Record(
            self,
            "validation",
            zone_id=props.hosted_zone_id,
            name=option.resource_record_name,
            type=option.resource_record_type,
            records=[option.resource_record_value],
            ttl=VALIDATION_RECORD_TTL_S,
            allow_overwrite=True,
        )
        validation = AcmCertificateValidation(
            self,
            "issued",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn],
        )
        self.certificate_arn = validation.certificate_arn


@dataclass(frozen=True)
class ApiAliasProps:
    api_domain: str
    hosted_zone_id: str
    load_balancer_dns_name: str
    load_balancer_zone_id: str


class ApiAlias(Construct):
    """`api_domain` -> the load balancer (IPv4: the load balancer is not dual-stack)."""

    fqdn: str

    def __init__(self, scope: Construct, id_: str, props: ApiAliasProps) -> None:
        super().__init__(scope, id_)
        record = Route53Record(
            self,
            "alias",
            zone_id=props.hosted_zone_id,
            name=props.api_domain,
            type="A",
            alias=Route53RecordAlias(
                name=props.load_balancer_dns_name,
                zone_id=props.load_balancer_zone_id,
                evaluate_target_health=True,
            ),
        )
        self.fqdn = record.fqdn
