"""`fleet preflight` against a moto account: a prepared account passes, and each missing or
wrong prerequisite fails its own check, naming what to do.

moto has no EC2 quotas in Service Quotas (only VPC's) and raises NotImplementedError for
`get_aws_default_service_quota`, so the quota client alone is botocore's Stubber, answering
in the shape AWS documents; every other call goes to moto.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from infra.cli import preflight_cmd
from infra.cli.main import main
from infra.cli.preflight_checks import (
    check_certificate,
    check_credentials,
    check_model,
    check_state_bucket,
    check_tenants_secret,
    covers,
)
from infra.stack.settings import image_root_volume_gb

REGION = "us-east-1"
STACK = "finsight-serving-prod"
PREFIX = "FINSIGHT_PROD_"
X86_AMI, ARM_AMI = "ami-12c6146b", "ami-0e9271c829888680e"  # from moto's default images
IMAGE_PARAMETER = "/finsight/ami/latest"
MODEL_BUCKET, MODEL_PREFIX = "finsight-models-test", "llama-3.1-8b-instruct/"
IMAGE_ROOT_GB = image_root_volume_gb()  # the launch template's default volume
STATE_BUCKET = "finsight-state-test"
ALARM_EMAIL = "oncall@finsight.example"
TENANT_KEYS = {"acme": "sk-acme-secret-key", "globex": "sk-globex-secret-key"}
DIGESTS = [hashlib.sha256(key.encode()).hexdigest() for key in TENANT_KEYS.values()]
CHECKS = [
    "credentials",
    "certificate",
    "tenants-secret",
    "image",
    "model",
    "state-bucket",
    "instance-type",
    "vcpu-quota",
    "alarm-email",
]


@dataclass
class Account:
    """A prepared account: every prerequisite of the prod stack, as the README lists them."""

    monkeypatch: pytest.MonkeyPatch
    certificate_arn: str
    secret_arn: str
    image_id: str
    # What the stubbed Service Quotas answers: a value in vCPUs, or an error code.
    quota: float | str = 64.0

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)

    def setenv(self, field: str, value: str) -> None:
        self.monkeypatch.setenv(PREFIX + field.upper(), value)


def self_signed_certificate(*names: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def image_from(ami: str) -> str:
    """An image made the way Packer makes one: from a running instance."""
    ec2 = boto3.client("ec2", region_name=REGION)
    instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="g5.xlarge")
    image: str = ec2.create_image(
        InstanceId=instance["Instances"][0]["InstanceId"], Name=f"finsight-{ami}"
    )["ImageId"]
    return image


def quota_client(quota: float | str) -> Any:
    client = boto3.client("service-quotas", region_name=REGION)
    stubber = Stubber(client)
    for _ in range(4):
        if isinstance(quota, str):
            stubber.add_client_error("get_service_quota", quota, "quota not readable")
            stubber.add_client_error("get_aws_default_service_quota", quota, "not readable")
        else:
            stubber.add_response(
                "get_service_quota",
                {
                    "Quota": {
                        "ServiceCode": "ec2",
                        "QuotaCode": "L-DB2E81BA",
                        "QuotaName": "Running On-Demand G and VT instances",
                        "Value": quota,
                    }
                },
                {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"},
            )
    stubber.activate()
    return client


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        acm = boto3.client("acm", region_name=REGION)
        certificate, key = self_signed_certificate("finsight.example", "*.finsight.example")
        certificate_arn = acm.import_certificate(Certificate=certificate, PrivateKey=key)[
            "CertificateArn"
        ]
        tenants = {
            "tenants": [
                {"id": tenant, "api_key_sha256": digest}
                for tenant, digest in zip(TENANT_KEYS, DIGESTS, strict=True)
            ]
        }
        secret_arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="finsight/tenants", SecretString=json.dumps(tenants)
        )["ARN"]
        image_id = image_from(X86_AMI)
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=IMAGE_PARAMETER, Value=image_id, Type="String", DataType="aws:ec2:image"
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=MODEL_BUCKET)
        for name in ("config.json", "tokenizer.json", "model-00001-of-00001.safetensors"):
            s3.put_object(Bucket=MODEL_BUCKET, Key=MODEL_PREFIX + name, Body=b"{}")
        s3.create_bucket(Bucket=STATE_BUCKET)
        s3.put_bucket_versioning(Bucket=STATE_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(
            Bucket=STATE_BUCKET,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
            },
        )
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name=f"{STACK}-alarms")["TopicArn"]
        # moto confirms e-mail subscriptions at once; AWS waits for the link to be opened.
        sns.subscribe(TopicArn=topic, Protocol="email", Endpoint=ALARM_EMAIL)

        prepared = Account(monkeypatch, certificate_arn, secret_arn, image_id)
        for field, value in {
            "certificate_arn": certificate_arn,
            "tenants_secret_arn": secret_arn,
            "model_location": f"s3://{MODEL_BUCKET}/{MODEL_PREFIX}",
            "state_bucket": STATE_BUCKET,
            "alarm_email": ALARM_EMAIL,
        }.items():
            prepared.setenv(field, value)
        real_clients = preflight_cmd.aws_clients
        monkeypatch.setattr(
            preflight_cmd,
            "aws_clients",
            lambda region: dataclasses.replace(
                real_clients(region), quotas=quota_client(prepared.quota)
            ),
        )
        yield prepared


def preflight(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    status = main(["preflight", "--stack", STACK, *extra])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def results(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, str]]]:
    status, out, _ = preflight(capsys, "--json")
    return status, {item["check"]: item for item in json.loads(out)}


def test_a_prepared_account_passes_every_check(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = preflight(capsys)

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["pass", check] for check in CHECKS]
    assert lines[-1] == f"{STACK}: ready to deploy (0 warnings)"
    assert "ISSUED for finsight.example, *.finsight.example" in out
    assert "2 tenants" in out
    assert f"{account.image_id} from {IMAGE_PARAMETER}: available, x86_64" in out
    # prod: 4 replicas at most plus 1 in the warm pool, 4 vCPUs each.
    assert "quota 64 vCPUs covers 5 x g5.xlarge (4 vCPUs) = 20 vCPUs" in out


def test_json_is_one_object_per_check(account: Account, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = preflight(capsys, "--json")

    assert status == 0
    items = json.loads(out)
    assert [item["check"] for item in items] == CHECKS
    assert all(set(item) == {"check", "status", "detail"} for item in items)
    assert {item["status"] for item in items} == {"pass"}
    assert all(isinstance(item["detail"], str) and item["detail"] for item in items)


def test_no_key_or_digest_is_ever_printed(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, err = preflight(capsys)
    # A document that breaks a rule: the message names the rule, not the values.
    bad = {"tenants": [{"id": "acme", "api_key_sha256": DIGESTS[0]}] * 2}
    account.client("secretsmanager").put_secret_value(
        SecretId=account.secret_arn, SecretString=json.dumps(bad)
    )
    _, bad_out, bad_err = preflight(capsys, "--json")

    for text in (out, err, bad_out, bad_err):
        for secret in (*TENANT_KEYS.values(), *DIGESTS):
            assert secret not in text
    assert "tenant ids must be unique" in bad_out


def pending_subscription(account: Account) -> None:
    from moto.sns.models import sns_backends

    # AWS lists an unconfirmed subscription with this ARN; moto has no API for the state.
    for subscription in sns_backends[DEFAULT_ACCOUNT_ID][REGION].subscriptions.values():
        subscription.arn = "PendingConfirmation"


def oversized_root(account: Account) -> None:
    from moto.ec2.models import ec2_backends

    # moto makes every image's root snapshot 15 GiB; this one is an image built bigger than
    # ami/root-volume-gb says (the launch template's default), 200 GiB.
    ec2_backends[DEFAULT_ACCOUNT_ID][REGION].amis[account.image_id].ebs_snapshot.volume.size = 200


def remove_object(key: str) -> Callable[[Account], None]:
    return lambda account: account.client("s3").delete_object(
        Bucket=MODEL_BUCKET, Key=MODEL_PREFIX + key
    )


Breakage = Callable[[Account], None]
FAILURES: dict[str, tuple[str, Breakage, str]] = {
    "certificate unknown": (
        "certificate",
        lambda a: a.setenv(
            "certificate_arn",
            f"arn:aws:acm:{REGION}:{DEFAULT_ACCOUNT_ID}:certificate/"
            "00000000-0000-0000-0000-000000000000",
        ),
        "not found in this account and region: set FINSIGHT_PROD_CERTIFICATE_ARN",
    ),
    "certificate not validated": (
        "certificate",
        lambda a: a.setenv(
            "certificate_arn",
            a.client("acm").request_certificate(
                DomainName="api.finsight.example", ValidationMethod="DNS"
            )["CertificateArn"],
        ),
        "is PENDING_VALIDATION, not ISSUED",
    ),
    "tenants secret missing": (
        "tenants-secret",
        lambda a: a.client("secretsmanager").delete_secret(
            SecretId=a.secret_arn, ForceDeleteWithoutRecovery=True
        ),
        "not found: create it",
    ),
    "tenants secret not a document": (
        "tenants-secret",
        lambda a: a.client("secretsmanager").put_secret_value(
            SecretId=a.secret_arn, SecretString='{"tenants": [{"id": "acme"}]}'
        ),
        "is not a tenants document (tenants document is invalid: "
        "tenants.0.api_key_sha256: Field required)",
    ),
    "image parameter missing": (
        "image",
        lambda a: a.client("ssm").delete_parameter(Name=IMAGE_PARAMETER),
        f"SSM parameter {IMAGE_PARAMETER} not found: build the image",
    ),
    "image for arm": (
        "image",
        lambda a: a.client("ssm").put_parameter(
            Name=IMAGE_PARAMETER, Value=image_from(ARM_AMI), Overwrite=True
        ),
        "is arm64, the fleet needs x86_64",
    ),
    "image disabled": (
        "image",
        lambda a: a.client("ec2").disable_image(ImageId=a.image_id),
        "is disabled: publish an available image",
    ),
    "image id unknown": (
        "image",
        lambda a: a.client("ssm").put_parameter(
            Name=IMAGE_PARAMETER, Value="ami-0123456789abcdef0", Overwrite=True
        ),
        "no such image in this region",
    ),
    "image root larger than the volume": (
        "image",
        oversized_root,
        f"its root snapshot is 200 GiB, larger than the launch template's {IMAGE_ROOT_GB} GiB "
        "volume (EC2 refuses the launch): set FINSIGHT_PROD_ROOT_VOLUME_GB to at least 200",
    ),
    "model config missing": ("model", remove_object("config.json"), "has no config.json"),
    "model weights missing": (
        "model",
        remove_object("model-00001-of-00001.safetensors"),
        "has no *.safetensors",
    ),
    "model bucket missing": (
        "model",
        lambda a: a.setenv("model_location", "s3://finsight-no-such-bucket/llama/"),
        "bucket finsight-no-such-bucket not found",
    ),
    "state bucket missing": (
        "state-bucket",
        lambda a: a.setenv("state_bucket", "finsight-no-such-bucket"),
        "bucket finsight-no-such-bucket not found: create it",
    ),
    "state bucket not versioned": (
        "state-bucket",
        lambda a: a.client("s3").put_bucket_versioning(
            Bucket=STATE_BUCKET, VersioningConfiguration={"Status": "Suspended"}
        ),
        "versioning is Suspended: aws s3api put-bucket-versioning",
    ),
    "state bucket not encrypted": (
        "state-bucket",
        lambda a: a.client("s3").delete_bucket_encryption(Bucket=STATE_BUCKET),
        "has no default encryption",
    ),
    "zone without the instance type": (
        "instance-type",
        lambda a: a.setenv("availability_zones", '["us-east-1a", "us-east-1e"]'),
        "g5.xlarge is not offered in us-east-1e (offered in us-east-1a, us-east-1b, ",
    ),
    "quota too small": (
        "vcpu-quota",
        lambda a: setattr(a, "quota", 16.0),
        "is 16 vCPUs, 5 x g5.xlarge (4 vCPUs) = 20 vCPUs: request an increase",
    ),
}


WARNINGS: dict[str, tuple[str, Breakage, str]] = {
    "alarm e-mail unconfirmed": (
        "alarm-email",
        pending_subscription,
        f"{ALARM_EMAIL} has not confirmed its subscription to {STACK}-alarms",
    ),
    "alarm e-mail unset": (
        "alarm-email",
        lambda a: a.monkeypatch.delenv(PREFIX + "ALARM_EMAIL"),
        "not set: alarms reach nobody; set FINSIGHT_PROD_ALARM_EMAIL",
    ),
    "stack not deployed yet": (
        "alarm-email",
        lambda a: a.client("sns").delete_topic(
            TopicArn=f"arn:aws:sns:{REGION}:{DEFAULT_ACCOUNT_ID}:{STACK}-alarms"
        ),
        "is not subscribed to finsight-serving-prod-alarms yet (the deploy subscribes it)",
    ),
    "quota unreadable": (
        "vcpu-quota",
        lambda a: setattr(a, "quota", "AccessDeniedException"),
        "cannot read quota L-DB2E81BA (AccessDeniedException: quota not readable; ",
    ),
    "tenants encrypted with a customer key": (
        "tenants-secret",
        lambda a: a.client("secretsmanager").update_secret(
            SecretId=a.secret_arn,
            KmsKeyId=a.client("kms").create_key()["KeyMetadata"]["KeyId"],
        ),
        "2 tenants; encrypted with the customer-managed key",
    ),
}


CASES = {
    **{case: ("fail", *expected) for case, expected in FAILURES.items()},
    **{case: ("warn", *expected) for case, expected in WARNINGS.items()},
}


@pytest.mark.parametrize(("status", "check", "breakage", "detail"), CASES.values(), ids=CASES)
def test_each_broken_prerequisite_shows_in_its_own_check(
    account: Account,
    capsys: pytest.CaptureFixture[str],
    status: str,
    check: str,
    breakage: Breakage,
    detail: str,
) -> None:
    breakage(account)

    exit_status, by_check = results(capsys)

    # A failure exits 1; a warning alone lets the deploy go ahead.
    assert exit_status == (1 if status == "fail" else 0)
    assert by_check[check]["status"] == status
    assert detail in by_check[check]["detail"]
    others = {name: item["status"] for name, item in by_check.items() if name != check}
    assert set(others.values()) == {"pass"}, others
    # The text output: the check's own line says what to do, and a summary ends it.
    _, out, _ = preflight(capsys)
    assert any(line.startswith(status) and detail in line for line in out.splitlines())
    assert out.splitlines()[-1] == (
        f"{STACK}: 1 of {len(CHECKS)} checks failed"
        if status == "fail"
        else f"{STACK}: ready to deploy (1 warning)"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["preflight", "--stack", "finsight-serving-staging"], "unknown stack"),
        (["preflight"], "the following arguments are required: --stack"),
        (["preflight", "--stack", STACK, "--yaml"], "unrecognized arguments: --yaml"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert exit_status(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def exit_status(argv: list[str]) -> int:
    """The status `fleet` exits with: argparse's own errors exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def test_a_bad_setting_is_a_usage_error_naming_its_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FINSIGHT_PROD_INSTANCE_TYPE", "g5")
    assert main(["preflight", "--stack", STACK]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fleet preflight: error: prod.instance_type")
    assert len(err.strip().splitlines()) == 1


def test_without_credentials_only_that_is_reported(
    account: Account, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_clients = preflight_cmd.aws_clients

    def refused(region: str) -> preflight_cmd.AwsClients:
        sts = boto3.client("sts", region_name=region)
        stubber = Stubber(sts)
        stubber.add_client_error("get_caller_identity", "InvalidClientTokenId", "bad token")
        stubber.activate()
        return dataclasses.replace(real_clients(region), sts=sts)

    monkeypatch.setattr(preflight_cmd, "aws_clients", refused)
    status, out, _ = preflight(capsys)

    assert status == 1
    assert out.splitlines()[0] == (
        "fail  credentials  no usable AWS credentials (InvalidClientTokenId: bad token): "
        "configure them (AWS_PROFILE, environment or SSO) for the account to deploy to"
    )
    assert len(out.splitlines()) == 2


def test_clients_honour_aws_endpoint_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    clients = preflight_cmd.aws_clients(REGION)
    endpoints = {
        field.name: getattr(clients, field.name).meta.endpoint_url
        for field in dataclasses.fields(clients)
    }
    assert set(endpoints.values()) == {"http://127.0.0.1:5999"}, endpoints


# The checks on their own, for the settings a None (not set) or a hosted zone reaches.


@pytest.mark.parametrize(
    ("name", "domain", "expected"),
    [
        ("api.finsight.example", "api.finsight.example", True),
        ("API.finsight.example", "api.finsight.example", True),
        ("*.finsight.example", "api.finsight.example", True),
        ("*.finsight.example", "finsight.example", False),
        ("*.finsight.example", "a.api.finsight.example", False),
        ("finsight.example", "api.finsight.example", False),
    ],
)
def test_certificate_names_cover_a_domain_like_tls_does(
    name: str, domain: str, expected: bool
) -> None:
    assert covers(name, domain) is expected


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def test_certificate_for_the_api_domain(aws: None) -> None:
    acm = boto3.client("acm", region_name=REGION)
    route53 = boto3.client("route53", region_name=REGION)
    zone = route53.create_hosted_zone(Name="finsight.example", CallerReference="zone")
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
    other = route53.create_hosted_zone(Name="other.example", CallerReference="other")
    other_id = other["HostedZone"]["Id"].rsplit("/", 1)[-1]
    certificate, key = self_signed_certificate("*.finsight.example")
    arn = acm.import_certificate(Certificate=certificate, PrivateKey=key)["CertificateArn"]

    def check(arn: str | None, domain: str | None, zone: str | None) -> tuple[str, str]:
        result = check_certificate(
            acm,
            route53,
            certificate_arn=arn,
            api_domain=domain,
            hosted_zone_id=zone,
            env_prefix=PREFIX,
        )
        return result.status, result.detail

    assert check(arn, "api.finsight.example", zone_id) == ("pass", "ISSUED for *.finsight.example")
    status, detail = check(arn, "api.other.example", other_id)
    assert status == "fail"
    assert detail.endswith(
        "covers *.finsight.example, not api.other.example: set "
        "FINSIGHT_PROD_CERTIFICATE_ARN to a certificate for api.other.example"
    )
    # No certificate given: the stack creates one, validated in the zone.
    assert check(None, "api.finsight.example", zone_id) == (
        "pass",
        f"created by the stack for api.finsight.example, validated in {zone_id}",
    )
    assert check(None, "api.finsight.example", other_id) == (
        "fail",
        f"hosted zone {other_id} is other.example, which cannot hold api.finsight.example: "
        "set FINSIGHT_PROD_HOSTED_ZONE_ID",
    )
    assert check(None, "api.finsight.example", "Z0000000000NONE")[1] == (
        "hosted zone Z0000000000NONE not found: set FINSIGHT_PROD_HOSTED_ZONE_ID to the zone "
        "of api.finsight.example"
    )
    assert check(None, None, None) == (
        "fail",
        "not set: set FINSIGHT_PROD_CERTIFICATE_ARN to an issued ACM certificate, or "
        "FINSIGHT_PROD_API_DOMAIN and FINSIGHT_PROD_HOSTED_ZONE_ID for one the stack creates",
    )


def test_settings_left_unset_fail_naming_their_variable(aws: None) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    secrets = boto3.client("secretsmanager", region_name=REGION)
    assert check_tenants_secret(secrets, secret_arn=None, env_prefix=PREFIX).detail == (
        "not set: set FINSIGHT_PROD_TENANTS_SECRET_ARN to the tenants secret's ARN"
    )
    # The model location is optional: the image carries its weights.
    baked = check_model(s3, model_location=None, env_prefix=PREFIX)
    assert (baked.status, baked.detail) == (
        "pass",
        "weights baked into the image (FINSIGHT_PROD_MODEL_LOCATION not set)",
    )
    prod, dev = (
        check_state_bucket(
            s3,
            bucket=None,
            environment=environment,
            region=REGION,
            account_id=DEFAULT_ACCOUNT_ID,
            env_prefix=f"FINSIGHT_{environment.upper()}_",
        )
        for environment in ("prod", "dev")
    )
    # Dev keeps its state in a local file by design; prod must not.
    assert (prod.status, dev.status) == ("fail", "warn")
    assert "set FINSIGHT_DEV_STATE_BUCKET to share it" in dev.detail


def test_credentials_name_the_account(aws: None) -> None:
    result, account = check_credentials(boto3.client("sts", region_name=REGION))
    assert (result.status, result.detail) == ("pass", f"account {DEFAULT_ACCOUNT_ID}")
    assert account == DEFAULT_ACCOUNT_ID


def test_a_state_bucket_of_another_account_fails(aws: None) -> None:
    # moto ignores ExpectedBucketOwner; S3 answers 403 to it, as stubbed here.
    s3 = boto3.client("s3", region_name=REGION)
    stubber = Stubber(s3)
    stubber.add_client_error(
        "head_bucket",
        "403",
        "Forbidden",
        http_status_code=403,
        expected_params={"Bucket": STATE_BUCKET, "ExpectedBucketOwner": DEFAULT_ACCOUNT_ID},
    )
    with stubber:
        result = check_state_bucket(
            s3,
            bucket=STATE_BUCKET,
            environment="prod",
            region=REGION,
            account_id=DEFAULT_ACCOUNT_ID,
            env_prefix=PREFIX,
        )
    assert (result.status, result.detail) == (
        "fail",
        f"bucket {STATE_BUCKET} is not account {DEFAULT_ACCOUNT_ID}'s, or not readable by "
        "these credentials: set FINSIGHT_PROD_STATE_BUCKET to a bucket of this account",
    )
