"""The public entry: an ALB terminating TLS 1.2+, forwarding only the API to the fleet.

Only `/v1/*` is forwarded; everything else (the gateway's /health/* and /metrics
included) gets a 404 from the listener itself, so probes and metrics stay private.
There is no port-80 listener: a redirect would come after the client had already sent its
bearer key in cleartext, so plain HTTP is not answered at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktn_provider_aws.data_aws_elb_service_account import DataAwsElbServiceAccount
from cdktn_provider_aws.data_aws_iam_policy_document import (
    DataAwsIamPolicyDocument,
    DataAwsIamPolicyDocumentStatement,
    DataAwsIamPolicyDocumentStatementCondition,
    DataAwsIamPolicyDocumentStatementPrincipals,
)
from cdktn_provider_aws.lb import Lb, LbAccessLogs
from cdktn_provider_aws.lb_listener import (
    LbListener,
    LbListenerDefaultAction,
    LbListenerDefaultActionFixedResponse,
)
from cdktn_provider_aws.lb_listener_rule import (
    LbListenerRule,
    LbListenerRuleAction,
    LbListenerRuleCondition,
    LbListenerRuleConditionPathPattern,
)
from cdktn_provider_aws.lb_target_group import LbTargetGroup, LbTargetGroupHealthCheck
from cdktn_provider_aws.s3_bucket import S3Bucket
from cdktn_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktn_provider_aws.s3_bucket_ownership_controls import (
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from cdktn_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktn_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktn_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktn_provider_aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)
from cdktn_provider_aws.security_group import SecurityGroup
from cdktn_provider_aws.security_group_rule import SecurityGroupRule
from constructs import Construct

# TLS 1.3 with TLS 1.2 fallback, forward-secret ciphers only.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
GATEWAY_PORT = 8000
READY_PATH = "/health/ready"
API_PATH_PATTERN = "/v1/*"
ACCESS_LOG_PREFIX = "alb"
ACCESS_LOG_DAYS = 90
# The ALB keeps an idle connection to a target for its idle timeout and reuses it; a target
# that closes it first (uvicorn's default keep-alive is 5 s) makes the ALB answer 502. The
# gateways keep theirs open this much longer than the ALB does.
BACKEND_KEEP_ALIVE_MARGIN_S = 5


def idle_timeout_s(longest_request_s: int) -> int:
    """The ALB's idle timeout: a streamed answer may pause while it queues behind others."""
    return longest_request_s


def backend_keep_alive_s(longest_request_s: int) -> int:
    """How long a gateway keeps an idle connection: longer than the ALB's idle timeout."""
    return idle_timeout_s(longest_request_s) + BACKEND_KEEP_ALIVE_MARGIN_S


@dataclass(frozen=True)
class LoadBalancerProps:
    name: str
    vpc_id: str
    public_subnet_ids: list[str]
    # None only in a stack that cannot deploy (its plan stops on a precondition first).
    certificate_arn: str | None
    account_id: str
    longest_request_s: int
    deletion_protection: bool


class LoadBalancer(Construct):
    security_group_id: str
    target_group_arn: str
    target_group_arn_suffix: str
    arn_suffix: str
    dns_name: str
    zone_id: str
    https_listener_arn: str
    access_log_bucket: str
    idle_timeout_s: int
    # What the gateways behind it must keep idle connections open for (gateway.env).
    backend_keep_alive_s: int

    def __init__(self, scope: Construct, id_: str, props: LoadBalancerProps) -> None:
        super().__init__(scope, id_)
        self.idle_timeout_s = idle_timeout_s(props.longest_request_s)
        self.backend_keep_alive_s = backend_keep_alive_s(props.longest_request_s)
        logs = self._access_log_bucket(props)
        self.access_log_bucket = logs.bucket

        group = SecurityGroup(
            self,
            "sg",
            name=f"{props.name}-alb",
            description="Public HTTPS entry of the inference API",
            vpc_id=props.vpc_id,
            tags={"Name": f"{props.name}-alb"},
        )
        self.security_group_id = group.id
        SecurityGroupRule(
            self,
            "ingress-443",
            type="ingress",
            security_group_id=group.id,
            protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_blocks=["0.0.0.0/0"],
            description="HTTPS API",
        )

        balancer = Lb(
            self,
            "alb",
            name=f"{props.name}",
            load_balancer_type="application",
            internal=False,
            security_groups=[group.id],
            subnets=props.public_subnet_ids,
            drop_invalid_header_fields=True,
            # A streamed answer may pause longer than the default 60 s between tokens
            # while it queues behind others; the longest request bounds that pause.
            idle_timeout=self.idle_timeout_s,
            enable_deletion_protection=props.deletion_protection,
            access_logs=LbAccessLogs(bucket=logs.bucket, prefix=ACCESS_LOG_PREFIX, enabled=True),
            tags={"Name": props.name},
            depends_on=[self._log_policy],
        )
        self.arn_suffix = balancer.arn_suffix
        self.dns_name = balancer.dns_name
        self.zone_id = balancer.zone_id

        target_group = LbTargetGroup(
            self,
            "gateways",
            name=f"{props.name}-gw",
            port=GATEWAY_PORT,
            protocol="HTTP",
            vpc_id=props.vpc_id,
            target_type="instance",
            # A request costs seconds of GPU time: send it where the fewest are in flight.
            load_balancing_algorithm_type="least_outstanding_requests",
            # Draining instances finish their longest request before deregistration ends.
            deregistration_delay=str(props.longest_request_s),
            health_check=LbTargetGroupHealthCheck(
                enabled=True,
                path=READY_PATH,
                protocol="HTTP",
                port="traffic-port",
                matcher="200",
                # The ADR's probe: 10 s timeout, out after 2 consecutive failures.
                timeout=10,
                unhealthy_threshold=2,
                healthy_threshold=2,
                interval=15,
            ),
            tags={"Name": f"{props.name}-gw"},
        )
        self.target_group_arn = target_group.arn
        self.target_group_arn_suffix = target_group.arn_suffix

        https = LbListener(
            self,
            "https",
            load_balancer_arn=balancer.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=props.certificate_arn,
            default_action=[
                LbListenerDefaultAction(
                    type="fixed-response",
                    fixed_response=LbListenerDefaultActionFixedResponse(
                        content_type="application/json",
                        status_code="404",
                        message_body='{"error":{"message":"not found","type":"not_found"}}',
                    ),
                )
            ],
        )
        self.https_listener_arn = https.arn
        LbListenerRule(
            self,
            "api",
            listener_arn=https.arn,
            priority=10,
            action=[LbListenerRuleAction(type="forward", target_group_arn=target_group.arn)],
            condition=[
                LbListenerRuleCondition(
                    path_pattern=LbListenerRuleConditionPathPattern(values=[API_PATH_PATTERN])
                )
            ],
        )

    def _access_log_bucket(self, props: LoadBalancerProps) -> S3Bucket:
        bucket = S3Bucket(
            self,
            "access-logs",
            bucket_prefix=f"{props.name}-alb-logs-"[:37],
            force_destroy=False,
            tags={"Name": f"{props.name}-alb-logs"},
        )
        S3BucketOwnershipControls(
            self,
            "access-logs-ownership",
            bucket=bucket.id,
            rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )
        S3BucketPublicAccessBlock(
            self,
            "access-logs-private",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        S3BucketVersioningA(
            self,
            "access-logs-versioning",
            bucket=bucket.id,
            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
        )
        # ALB log delivery supports only S3-managed keys (SSE-S3), not KMS.
        S3BucketServerSideEncryptionConfigurationA(
            self,
            "access-logs-encryption",
            bucket=bucket.id,
            rule=[
                S3BucketServerSideEncryptionConfigurationRuleA(
                    apply_server_side_encryption_by_default=S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                        sse_algorithm="AES256"
                    )
                )
            ],
        )
        S3BucketLifecycleConfiguration(
            self,
            "access-logs-expiry",
            bucket=bucket.id,
            rule=[
                S3BucketLifecycleConfigurationRule(
                    id="expire",
                    status="Enabled",
                    filter=[
                        S3BucketLifecycleConfigurationRuleFilter(prefix=f"{ACCESS_LOG_PREFIX}/")
                    ],
                    expiration=[S3BucketLifecycleConfigurationRuleExpiration(days=ACCESS_LOG_DAYS)],
                    noncurrent_version_expiration=[
                        S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                            noncurrent_days=7
                        )
                    ],
                )
            ],
        )
        elb_account = DataAwsElbServiceAccount(self, "elb-account")
        document = DataAwsIamPolicyDocument(
            self,
            "access-logs-policy-doc",
            statement=[
                DataAwsIamPolicyDocumentStatement(
                    sid="AlbLogDelivery",
                    actions=["s3:PutObject"],
                    principals=[
                        DataAwsIamPolicyDocumentStatementPrincipals(
                            type="AWS", identifiers=[elb_account.arn]
                        )
                    ],
                    resources=[f"{bucket.arn}/{ACCESS_LOG_PREFIX}/AWSLogs/{props.account_id}/*"],
                ),
                DataAwsIamPolicyDocumentStatement(
                    sid="TlsOnly",
                    effect="Deny",
                    actions=["s3:*"],
                    principals=[
                        DataAwsIamPolicyDocumentStatementPrincipals(type="*", identifiers=["*"])
                    ],
                    resources=[bucket.arn, f"{bucket.arn}/*"],
                    condition=[
                        DataAwsIamPolicyDocumentStatementCondition(
                            test="Bool", variable="aws:SecureTransport", values=["false"]
                        )
                    ],
                ),
            ],
        )
        self._log_policy = S3BucketPolicy(
            self, "access-logs-policy", bucket=bucket.id, policy=document.json
        )
        return bucket
