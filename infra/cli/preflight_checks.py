"""The checks `fleet preflight` runs: one read-only function per deploy prerequisite.

Each takes the boto3 clients it reads and the settings values it needs, and returns one
`CheckResult` whose detail says what to do when it fails. No check prints a secret value:
the tenants secret is reported by its tenant count only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from botocore.exceptions import BotoCoreError, ClientError

from app.tenants import TenantsDocumentError, parse_tenants_document

if TYPE_CHECKING:
    from mypy_boto3_acm import ACMClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.literals import InstanceTypeType
    from mypy_boto3_route53 import Route53Client
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_service_quotas import ServiceQuotasClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

Status = Literal["pass", "fail", "warn"]

# The device the launch template sizes (infra/stack/fleet.py); the image must boot from it,
# or the template adds a second volume and the root keeps the image's size.
ROOT_DEVICE_NAME = "/dev/sda1"
IMAGE_ARCHITECTURE = "x86_64"
# "Running On-Demand G and VT instances", counted in vCPUs.
G_VCPU_QUOTA = ("ec2", "L-DB2E81BA")
G_VCPU_FAMILIES = ("g", "vt")
PENDING_CONFIRMATION = "PendingConfirmation"
# Secrets Manager's AWS-managed key: readable by any role allowed GetSecretValue.
SECRETS_MANAGER_DEFAULT_KEY = "alias/aws/secretsmanager"


@dataclass(frozen=True)
class CheckResult:
    check: str
    status: Status
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "detail": self.detail}


def aws_error(error: ClientError | BotoCoreError) -> str:
    """`Code: message` of an AWS error, or botocore's own text (no credentials, no endpoint)."""
    if isinstance(error, ClientError):
        detail = error.response.get("Error", {})
        return f"{detail.get('Code', 'error')}: {detail.get('Message', '')}".rstrip(": ")
    return str(error)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def check_credentials(sts: STSClient) -> tuple[CheckResult, str]:
    """The result, and the account id the other checks compare owners with ("" if none)."""
    try:
        identity = sts.get_caller_identity()
    except (ClientError, BotoCoreError) as error:
        failed = CheckResult(
            "credentials",
            "fail",
            f"no usable AWS credentials ({aws_error(error)}): configure them "
            "(AWS_PROFILE, environment or SSO) for the account to deploy to",
        )
        return failed, ""
    account = identity["Account"]
    return CheckResult("credentials", "pass", f"account {account}"), account


def covers(name: str, domain: str) -> bool:
    """Whether a certificate name covers `domain`; a wildcard covers exactly one label."""
    name, domain = name.lower().rstrip("."), domain.lower().rstrip(".")
    if name.startswith("*."):
        head, _, rest = domain.partition(".")
        return bool(head) and rest == name[2:]
    return name == domain


def _zone_problem(route53: Route53Client, zone_id: str, api_domain: str, var: str) -> str | None:
    """Why the hosted zone cannot hold the API's record, or None when it can."""
    try:
        zone = route53.get_hosted_zone(Id=zone_id)["HostedZone"]
    except ClientError as error:
        if error_code(error) == "NoSuchHostedZone":
            return f"hosted zone {zone_id} not found: set {var} to the zone of {api_domain}"
        return f"cannot read hosted zone {zone_id} ({aws_error(error)})"
    zone_name = zone["Name"].lower().rstrip(".")
    if api_domain != zone_name and not api_domain.endswith("." + zone_name):
        return f"hosted zone {zone_id} is {zone_name}, which cannot hold {api_domain}: set {var}"
    return None


def check_certificate(
    acm: ACMClient,
    route53: Route53Client,
    *,
    certificate_arn: str | None,
    api_domain: str | None,
    hosted_zone_id: str | None,
    env_prefix: str,
) -> CheckResult:
    name = "certificate"
    zone_var = f"{env_prefix}HOSTED_ZONE_ID"
    zone_problem = (
        _zone_problem(route53, hosted_zone_id, api_domain, zone_var)
        if api_domain is not None and hosted_zone_id is not None
        else None
    )
    if certificate_arn is None:
        if api_domain is None or hosted_zone_id is None:
            return CheckResult(
                name,
                "fail",
                f"not set: set {env_prefix}CERTIFICATE_ARN to an issued ACM certificate, or "
                f"{env_prefix}API_DOMAIN and {zone_var} for one the stack creates",
            )
        if zone_problem:
            return CheckResult(name, "fail", zone_problem)
        return CheckResult(
            name, "pass", f"created by the stack for {api_domain}, validated in {hosted_zone_id}"
        )
    var = f"{env_prefix}CERTIFICATE_ARN"
    try:
        certificate = acm.describe_certificate(CertificateArn=certificate_arn)["Certificate"]
    except ClientError as error:
        if error_code(error) in ("ResourceNotFoundException", "ValidationException"):
            return CheckResult(
                name,
                "fail",
                f"{certificate_arn} not found in this account and region: "
                f"set {var} to an issued ACM certificate of the stack's region",
            )
        return CheckResult(name, "fail", f"cannot read {certificate_arn} ({aws_error(error)})")
    status = certificate.get("Status", "UNKNOWN")
    if status != "ISSUED":
        return CheckResult(
            name, "fail", f"{certificate_arn} is {status}, not ISSUED: validate it or set {var}"
        )
    names = [certificate.get("DomainName", "")]
    names += [n for n in certificate.get("SubjectAlternativeNames", []) if n not in names]
    shown = ", ".join(n for n in names if n)
    if api_domain is not None:
        if not any(covers(n, api_domain) for n in names):
            return CheckResult(
                name,
                "fail",
                f"{certificate_arn} covers {shown}, not {api_domain}: set {var} to a "
                f"certificate for {api_domain}",
            )
        if zone_problem:
            return CheckResult(name, "fail", zone_problem)
    return CheckResult(name, "pass", f"ISSUED for {shown}")


def check_tenants_secret(
    secrets: SecretsManagerClient, *, secret_arn: str | None, env_prefix: str
) -> CheckResult:
    name = "tenants-secret"
    var = f"{env_prefix}TENANTS_SECRET_ARN"
    if secret_arn is None:
        return CheckResult(name, "fail", f"not set: set {var} to the tenants secret's ARN")
    try:
        value = secrets.get_secret_value(SecretId=secret_arn)
        description = secrets.describe_secret(SecretId=secret_arn)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return CheckResult(
                name,
                "fail",
                f"{secret_arn} not found: create it (README, Tenants) or set {var}",
            )
        return CheckResult(name, "fail", f"cannot read {secret_arn} ({aws_error(error)})")
    raw = value.get("SecretString") or value.get("SecretBinary", b"")
    try:
        # The gateway's own parser: what passes here, the gateway accepts. Its errors name
        # fields and rules, never values.
        tenants = parse_tenants_document(
            raw, default_max_concurrent_requests=1, default_max_tokens=1
        )
    except TenantsDocumentError as error:
        return CheckResult(
            name, "fail", f"{secret_arn} is not a tenants document ({error}): fix its value"
        )
    count = f"{len(tenants)} tenant{'s' if len(tenants) != 1 else ''}"
    key = description.get("KmsKeyId")
    if key and key != SECRETS_MANAGER_DEFAULT_KEY:
        return CheckResult(
            name,
            "warn",
            f"{count}; encrypted with the customer-managed key {key}: the instance role has no "
            "kms:Decrypt of its own, so the key policy must allow it",
        )
    if not tenants:
        return CheckResult(name, "warn", "0 tenants: every request will be refused (401)")
    return CheckResult(name, "pass", count)


def check_image(
    ssm: SSMClient,
    ec2: EC2Client,
    *,
    image_ssm_parameter: str | None,
    image_id: str | None,
    root_volume_gb: int,
    env_prefix: str,
) -> CheckResult:
    name = "image"
    source = f"image_id {image_id}"
    if image_id is None:
        if image_ssm_parameter is None:
            return CheckResult(name, "fail", f"not set: set {env_prefix}IMAGE_SSM_PARAMETER")
        try:
            image_id = ssm.get_parameter(Name=image_ssm_parameter)["Parameter"].get("Value", "")
        except ClientError as error:
            if error_code(error) == "ParameterNotFound":
                return CheckResult(
                    name,
                    "fail",
                    f"SSM parameter {image_ssm_parameter} not found: build the image "
                    f"(make ami-build publishes its id there) or set {env_prefix}IMAGE_ID",
                )
            return CheckResult(
                name, "fail", f"cannot read {image_ssm_parameter} ({aws_error(error)})"
            )
        source = f"{image_id} from {image_ssm_parameter}"
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as error:
        if error_code(error).startswith("InvalidAMIID"):
            images = []
        else:
            return CheckResult(name, "fail", f"cannot describe {image_id} ({aws_error(error)})")
    if not images:
        return CheckResult(
            name, "fail", f"{source}: no such image in this region: build and publish the image"
        )
    image = images[0]
    if image.get("State") != "available":
        return CheckResult(
            name, "fail", f"{source} is {image.get('State')}: publish an available image"
        )
    if image.get("Architecture") != IMAGE_ARCHITECTURE:
        return CheckResult(
            name,
            "fail",
            f"{source} is {image.get('Architecture')}, the fleet needs {IMAGE_ARCHITECTURE}: "
            "publish an x86_64 image",
        )
    root_device = image.get("RootDeviceName")
    if root_device != ROOT_DEVICE_NAME:
        return CheckResult(
            name,
            "fail",
            f"{source} boots from {root_device}, the launch template sizes {ROOT_DEVICE_NAME}: "
            f"build the image with its root on {ROOT_DEVICE_NAME}",
        )
    root = next(
        (m for m in image.get("BlockDeviceMappings", []) if m.get("DeviceName") == root_device),
        None,
    )
    if root is None or "Ebs" not in root:
        return CheckResult(name, "fail", f"{source} has no EBS root volume on {root_device}")
    snapshot_gb = _snapshot_gb(ec2, root["Ebs"])
    if snapshot_gb > root_volume_gb:
        return CheckResult(
            name,
            "fail",
            f"{source}: its root snapshot is {snapshot_gb} GiB, larger than the launch "
            f"template's {root_volume_gb} GiB volume (EC2 refuses the launch): set "
            f"{env_prefix}ROOT_VOLUME_GB to at least {snapshot_gb}",
        )
    return CheckResult(
        name,
        "pass",
        f"{source}: available, {IMAGE_ARCHITECTURE}, root snapshot {snapshot_gb} GiB "
        f"<= {root_volume_gb} GiB volume",
    )


def _snapshot_gb(ec2: EC2Client, ebs: Any) -> int:
    """The root snapshot's size; the mapping's volume size (never smaller) if unreadable."""
    snapshot_id = ebs.get("SnapshotId")
    if snapshot_id:
        try:
            snapshots = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
        except ClientError:
            snapshots = []
        if snapshots and "VolumeSize" in snapshots[0]:
            return int(snapshots[0]["VolumeSize"])
    return int(ebs.get("VolumeSize", 0))


def check_model(s3: S3Client, *, model_location: str | None, env_prefix: str) -> CheckResult:
    name = "model"
    var = f"{env_prefix}MODEL_LOCATION"
    if model_location is None:
        # Optional: without it the instances serve the weights baked into the image.
        return CheckResult(name, "pass", f"weights baked into the image ({var} not set)")
    bucket, _, prefix = model_location.removeprefix("s3://").partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    # vLLM loads one directory: the config and the weights sit directly under the prefix.
    files: dict[str, int] = {}
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        ):
            for item in page.get("Contents", []):
                files[item["Key"].removeprefix(prefix)] = item.get("Size", 0)
        if "config.json" in files:
            # Instances read objects, not listings: prove GetObject works too.
            s3.head_object(Bucket=bucket, Key=prefix + "config.json")
    except ClientError as error:
        if error_code(error) == "NoSuchBucket":
            return CheckResult(
                name, "fail", f"bucket {bucket} not found: upload the model or set {var}"
            )
        return CheckResult(name, "fail", f"cannot read {model_location} ({aws_error(error)})")
    weights = [key for key in files if key.endswith(".safetensors")]
    missing = [
        what
        for what, present in (("config.json", "config.json" in files), ("*.safetensors", weights))
        if not present
    ]
    if missing:
        return CheckResult(
            name,
            "fail",
            f"{model_location} has no {' and no '.join(missing)}: upload the model there "
            f"(a Hugging Face directory with safetensors weights) or set {var}",
        )
    gigabytes = sum(files[key] for key in weights) / 1e9
    return CheckResult(
        name,
        "pass",
        f"{model_location}: config.json and {len(weights)} safetensors "
        f"file{'s' * (len(weights) != 1)} ({gigabytes:.1f} GB)",
    )


def check_state_bucket(
    s3: S3Client,
    *,
    bucket: str | None,
    environment: str,
    region: str,
    account_id: str,
    env_prefix: str,
) -> CheckResult:
    """The state bucket must be this account's: state written to another's is theirs to read."""
    name = "state-bucket"
    var = f"{env_prefix}STATE_BUCKET"
    if bucket is None:
        if environment == "prod":
            return CheckResult(
                name, "fail", f"not set: set {var} to a versioned, encrypted S3 bucket"
            )
        return CheckResult(
            name, "warn", f"not set: the state stays in a local file; set {var} to share it"
        )
    try:
        # S3 answers 403 when the bucket belongs to another account, readable or not.
        located = s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account_id).get("BucketRegion")
        versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status", "never enabled")
    except ClientError as error:
        if error_code(error) in ("404", "NoSuchBucket"):
            return CheckResult(
                name, "fail", f"bucket {bucket} not found: create it (versioned, encrypted)"
            )
        if error_code(error) in ("403", "AccessDenied"):
            return CheckResult(
                name,
                "fail",
                f"bucket {bucket} is not account {account_id}'s, or not readable by these "
                f"credentials: set {var} to a bucket of this account",
            )
        return CheckResult(name, "fail", f"cannot read bucket {bucket} ({aws_error(error)})")
    if located and located != region:
        return CheckResult(
            name,
            "fail",
            f"bucket {bucket} is in {located}, the backend looks in {region}: "
            f"set {var} to a bucket in {region}",
        )
    if versioning != "Enabled":
        return CheckResult(
            name,
            "fail",
            f"bucket {bucket} versioning is {versioning}: aws s3api put-bucket-versioning "
            f"--bucket {bucket} --versioning-configuration Status=Enabled",
        )
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
    except ClientError as error:
        if error_code(error) == "ServerSideEncryptionConfigurationNotFoundError":
            rules = []
        else:
            return CheckResult(
                name, "fail", f"cannot read encryption of {bucket} ({aws_error(error)})"
            )
    algorithms = sorted(
        {
            rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
            for rule in rules
            if "ApplyServerSideEncryptionByDefault" in rule
        }
    )
    if not algorithms:
        return CheckResult(
            name,
            "fail",
            f"bucket {bucket} has no default encryption: aws s3api put-bucket-encryption "
            f"--bucket {bucket} (SSE-S3 or SSE-KMS)",
        )
    return CheckResult(name, "pass", f"{bucket}: versioned, encrypted ({', '.join(algorithms)})")


def check_instance_type(
    ec2: EC2Client, *, instance_type: str, zones: Sequence[str], env_prefix: str
) -> CheckResult:
    name = "instance-type"
    offered: set[str] = set()
    try:
        for page in ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [instance_type]}],
        ):
            offered |= {item["Location"] for item in page["InstanceTypeOfferings"]}
    except ClientError as error:
        return CheckResult(name, "fail", f"cannot list offerings ({aws_error(error)})")
    missing = [zone for zone in zones if zone not in offered]
    if missing:
        where = f"offered in {', '.join(sorted(offered))}" if offered else "offered nowhere"
        return CheckResult(
            name,
            "fail",
            f"{instance_type} is not offered in {', '.join(missing)} ({where}): set "
            f"{env_prefix}AVAILABILITY_ZONES or {env_prefix}INSTANCE_TYPE",
        )
    return CheckResult(name, "pass", f"{instance_type} offered in {', '.join(zones)}")


def check_vcpu_quota(
    quotas: ServiceQuotasClient, ec2: EC2Client, *, instance_type: str, instances: int
) -> CheckResult:
    """The G/VT vCPU quota against the most instances the group may run at once."""
    name = "vcpu-quota"
    family = instance_type.split(".")[0]
    if not family.startswith(G_VCPU_FAMILIES):
        return CheckResult(
            name, "warn", f"{instance_type} is not a G or VT type: its vCPU quota is not checked"
        )
    try:
        info = ec2.describe_instance_types(InstanceTypes=[cast("InstanceTypeType", instance_type)])[
            "InstanceTypes"
        ]
    except ClientError as error:
        return CheckResult(
            name, "fail", f"unknown instance type {instance_type} ({aws_error(error)})"
        )
    vcpus = int(info[0]["VCpuInfo"]["DefaultVCpus"]) if info else 0
    needed = instances * vcpus
    service, code = G_VCPU_QUOTA
    quota: float | None = None
    problems: list[str] = []
    # The applied value, else the default (AWS returns only defaults for some quotas).
    for read in (quotas.get_service_quota, quotas.get_aws_default_service_quota):
        try:
            quota = float(read(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
            break
        except (ClientError, BotoCoreError) as error:
            problems.append(aws_error(error))
    if quota is None:
        return CheckResult(
            name,
            "warn",
            f"cannot read quota {code} ({'; '.join(problems)}): make sure Running On-Demand "
            f"G and VT instances allows {needed} vCPUs",
        )
    sizing = f"{instances} x {instance_type} ({vcpus} vCPUs) = {needed} vCPUs"
    if quota < needed:
        return CheckResult(
            name,
            "fail",
            f"quota {code} (Running On-Demand G and VT instances) is {quota:g} vCPUs, "
            f"{sizing}: request an increase in Service Quotas",
        )
    return CheckResult(name, "pass", f"quota {quota:g} vCPUs covers {sizing}")


def check_alarm_email(
    sns: SNSClient, *, topic_name: str, alarm_email: str | None, env_prefix: str
) -> CheckResult:
    """A warning at worst: the fleet serves without paging, but nobody hears the alarms."""
    name = "alarm-email"
    if alarm_email is None:
        return CheckResult(
            name, "warn", f"not set: alarms reach nobody; set {env_prefix}ALARM_EMAIL"
        )
    try:
        topic_arn = next(
            (
                topic["TopicArn"]
                for page in sns.get_paginator("list_topics").paginate()
                for topic in page["Topics"]
                if topic["TopicArn"].rsplit(":", 1)[-1] == topic_name
            ),
            None,
        )
        subscriptions = (
            [
                item
                for page in sns.get_paginator("list_subscriptions_by_topic").paginate(
                    TopicArn=topic_arn
                )
                for item in page["Subscriptions"]
                if item.get("Protocol") == "email"
                and item.get("Endpoint", "").lower() == alarm_email.lower()
            ]
            if topic_arn
            else []
        )
    except ClientError as error:
        return CheckResult(name, "warn", f"cannot read topic {topic_name} ({aws_error(error)})")
    if not subscriptions:
        return CheckResult(
            name,
            "warn",
            f"{alarm_email} is not subscribed to {topic_name} yet (the deploy subscribes it): "
            "confirm the e-mail AWS then sends",
        )
    if all(item.get("SubscriptionArn") == PENDING_CONFIRMATION for item in subscriptions):
        return CheckResult(
            name,
            "warn",
            f"{alarm_email} has not confirmed its subscription to {topic_name}: open the "
            "link in the AWS Notification e-mail",
        )
    return CheckResult(name, "pass", f"{alarm_email} confirmed on {topic_name}")
