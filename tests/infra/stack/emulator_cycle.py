"""One deploy cycle of a synthesized stack against moto_server, run inside `unshare -n`.

    python emulator_cycle.py STACK_DIR REPORT_JSON

Brings loopback up, starts moto_server on 127.0.0.1, imports a self-signed certificate
into its ACM and publishes the image id to its SSM (the stack reads it at plan time),
writes `emulator_override.tf.json` beside the untouched `cdk.tf.json`, runs terraform
init/plan/apply, reads back what AWS now holds with boto3 into REPORT_JSON, sets the
group's minimum through the API as the schedule or an override would and applies again
(a deploy must leave it), publishes a
second image id and plans again (the rollout a new image causes), and destroys. The test
asserts on the report.
Nothing here can reach beyond 127.0.0.1: the network namespace has only loopback.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REGION = "us-east-1"
IMAGE_PARAMETER = "/finsight/ami/latest"
# Services the stack calls; every one goes to the emulator.
ENDPOINT_SERVICES = (
    "acm",
    "autoscaling",
    "cloudwatch",
    "ec2",
    "elbv2",
    "events",
    "iam",
    "lambda",
    "logs",
    "route53",
    "s3",
    "scheduler",
    "secretsmanager",
    "kms",
    "sns",
    "sqs",
    "ssm",
    "sts",
)

# moto_server with PutCompositeAlarm: moto 5.2 stores composite alarms (`AlarmRule`, read
# back by DescribeAlarms as CompositeAlarms) but does not route the action; its
# PutMetricAlarm handler reads every field PutCompositeAlarm sends, so it serves both. Kept
# only while moto lacks the action of its own.
MOTO_SERVER = """
import sys
from moto.cloudwatch.responses import CloudWatchResponse
if not hasattr(CloudWatchResponse, "put_composite_alarm"):
    CloudWatchResponse.put_composite_alarm = CloudWatchResponse.put_metric_alarm
from moto.server import main
main(sys.argv[1:])
"""

# Group attributes moto reads back differently after an update (see `override`).
GROUP_READ_BACK_DRIFT = ("default_instance_warmup", "capacity_reservation_specification")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"moto_server did not listen on {port}")


def self_signed_certificate() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.finsight.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("api.finsight.test")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def override(
    stack: dict[str, Any], endpoint: str, certificate_arn: str, zone_id: str | None
) -> dict[str, Any]:
    """Test provider and local state; the only resource changes make teardown possible, put
    the emulator's own certificate on a listener given an ARN, and the records in the zone
    the emulator made for the stack's domain."""
    resources: dict[str, Any] = {}
    for name in stack["resource"].get("aws_lb", {}):
        resources.setdefault("aws_lb", {})[name] = {"enable_deletion_protection": False}
    for name, listener in stack["resource"].get("aws_lb_listener", {}).items():
        # A certificate the stack requests itself (a reference) is the emulator's already.
        if listener.get("protocol") == "HTTPS" and not str(
            listener.get("certificate_arn", "")
        ).startswith("${"):
            resources.setdefault("aws_lb_listener", {})[name] = {"certificate_arn": certificate_arn}
    for name in stack["resource"].get("aws_route53_record", {}):
        resources.setdefault("aws_route53_record", {})[name] = {"zone_id": zone_id}
    for name in stack["resource"].get("aws_s3_bucket", {}):
        resources.setdefault("aws_s3_bucket", {})[name] = {"force_destroy": True}
    # moto reads these back differently from what was applied (a tag specification of its
    # own on the template, the group's warm-up and capacity reservation after an update), so
    # every re-apply would make a template version and start an instance refresh that moto
    # never finishes. Ignored here only; the stack's own ignore_changes are kept as they are.
    for name in stack["resource"].get("aws_launch_template", {}):
        resources.setdefault("aws_launch_template", {})[name] = {
            "lifecycle": {"ignore_changes": ["tag_specifications"]}
        }
    # moto ignores a log group's class and reads none back: every plan would replace the
    # groups (the class forces a new one), and the instance role's policy naming them.
    for name in stack["resource"].get("aws_cloudwatch_log_group", {}):
        resources.setdefault("aws_cloudwatch_log_group", {})[name] = {
            "lifecycle": {"ignore_changes": ["log_group_class"]}
        }
    for name, group in stack["resource"].get("aws_autoscaling_group", {}).items():
        own = group.get("lifecycle", {}).get("ignore_changes", [])
        resources.setdefault("aws_autoscaling_group", {})[name] = {
            "lifecycle": {"ignore_changes": [*own, *GROUP_READ_BACK_DRIFT]}
        }
    return {
        "terraform": {"backend": {"local": {"path": "terraform.tfstate"}}},
        "provider": {
            "aws": [
                {
                    "region": REGION,
                    "access_key": "test",
                    "secret_key": "test",
                    "skip_credentials_validation": True,
                    "skip_metadata_api_check": True,
                    "skip_region_validation": True,
                    "s3_use_path_style": True,
                    "endpoints": [dict.fromkeys(ENDPOINT_SERVICES, endpoint)],
                }
            ]
        },
        "resource": resources,
    }


def terraform(workdir: Path, command: str, *args: str, timeout: float = 600) -> float:
    began = time.monotonic()
    subprocess.run(
        ["terraform", command, "-no-color", "-input=false", *args],
        cwd=workdir,
        check=True,
        timeout=timeout,
    )
    return time.monotonic() - began


def planned_changes(workdir: Path, plan: str) -> list[dict[str, Any]]:
    """Each resource the saved plan changes: its type, actions, and before/after values."""
    shown = json.loads(
        subprocess.run(
            ["terraform", "show", "-json", plan],
            cwd=workdir,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    return [
        {
            "type": change["type"],
            "actions": change["change"]["actions"],
            "before": change["change"]["before"],
            "after": change["change"]["after"],
            "after_unknown": change["change"]["after_unknown"],
        }
        for change in shown.get("resource_changes", [])
        if change["change"]["actions"] != ["no-op"]
    ]


def observe(
    session: boto3.Session, endpoint: str, stack: dict[str, Any], zone_id: str | None
) -> dict[str, Any]:
    def client(name: str) -> Any:
        return session.client(name, endpoint_url=endpoint)  # type: ignore[call-overload]

    autoscaling, cloudwatch, elbv2 = client("autoscaling"), client("cloudwatch"), client("elbv2")
    groups = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    names = [group["AutoScalingGroupName"] for group in groups]
    policies = autoscaling.describe_policies()["ScalingPolicies"]
    actions = autoscaling.describe_scheduled_actions()["ScheduledUpdateGroupActions"]
    hooks = [
        hook
        for name in names
        for hook in autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=name)[
            "LifecycleHooks"
        ]
    ]
    described = cloudwatch.describe_alarms(AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    alarms, composite_alarms = described["MetricAlarms"], described["CompositeAlarms"]
    log_groups = client("logs").describe_log_groups()["logGroups"]
    target_groups = elbv2.describe_target_groups()["TargetGroups"]
    listeners = [
        listener
        for balancer in elbv2.describe_load_balancers()["LoadBalancers"]
        for listener in elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])[
            "Listeners"
        ]
    ]
    rules = [
        rule
        for listener in listeners
        for rule in elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
    ]
    ec2 = client("ec2")
    templates = [
        version
        for group in groups
        for version in ec2.describe_launch_template_versions(
            LaunchTemplateId=group["LaunchTemplate"]["LaunchTemplateId"]
        )["LaunchTemplateVersions"]
    ]
    dashboards = client("cloudwatch").list_dashboards()["DashboardEntries"]
    functions = client("lambda").list_functions()["Functions"]
    acm = client("acm")
    requested = [
        acm.describe_certificate(CertificateArn=summary["CertificateArn"])["Certificate"]
        for summary in acm.list_certificates()["CertificateSummaryList"]
    ]
    records = (
        client("route53").list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        if zone_id
        else []
    )
    return json.loads(
        json.dumps(
            {
                "groups": groups,
                "launch_template_versions": templates,
                "policies": policies,
                "scheduled_actions": actions,
                "lifecycle_hooks": hooks,
                "alarms": alarms,
                "composite_alarms": composite_alarms,
                "log_groups": log_groups,
                "dashboard_bodies": [
                    cloudwatch.get_dashboard(DashboardName=d["DashboardName"])["DashboardBody"]
                    for d in cloudwatch.list_dashboards()["DashboardEntries"]
                ],
                "target_groups": target_groups,
                "listeners": listeners,
                "rules": rules,
                "dashboards": dashboards,
                "functions": functions,
                "topics": client("sns").list_topics()["Topics"],
                "load_balancers": client("elbv2").describe_load_balancers()["LoadBalancers"],
                "certificates": [c for c in requested if c.get("Type") == "AMAZON_ISSUED"],
                "records": records,
                "topic_attributes": [
                    client("sns").get_topic_attributes(TopicArn=topic["TopicArn"])["Attributes"]
                    for topic in client("sns").list_topics()["Topics"]
                ],
                "keys": [
                    {
                        "KeyId": key["KeyId"],
                        "Arn": key["KeyArn"],
                        "Policy": client("kms").get_key_policy(
                            KeyId=key["KeyId"], PolicyName="default"
                        )["Policy"],
                        "Rotation": client("kms").get_key_rotation_status(KeyId=key["KeyId"])[
                            "KeyRotationEnabled"
                        ],
                    }
                    for key in client("kms").list_keys()["Keys"]
                ],
            },
            default=str,
        )
    )


def redeploys(workdir: Path, autoscaling: Any, observed: dict[str, Any]) -> list[dict[str, Any]]:
    """The group's minimum set through the API as the schedule and an override leave it,
    then the stack applied again each time: what the group's minimum is after the deploy."""
    [group] = observed["groups"]
    name = group["AutoScalingGroupName"]
    actions = {a["ScheduledActionName"]: a for a in observed["scheduled_actions"]}
    # The stack creates the group at the market-hours minimum, so a re-apply over the 08:50
    # action's minimum could not tell a stack that resets min_size from one that leaves it:
    # the two minimums that differ from the created one can.
    minimums = [
        # A live `fleet override` at the group's maximum, during market hours.
        ("override", group["MaxSize"]),
        # After the 16:00 close: a deploy in the evening does not raise it either.
        ("close", actions["market-hours-close"]["MinSize"]),
    ]
    results = []
    for reason, minimum in minimums:
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, MinSize=minimum)
        # Bounded well below the test's limit: a group update that waits on moto fails here.
        apply_s = terraform(workdir, "apply", "-auto-approve", timeout=300)
        [after] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
            "AutoScalingGroups"
        ]
        results.append(
            {
                "reason": reason,
                "set_min": minimum,
                "min_after_deploy": after["MinSize"],
                "max_after_deploy": after["MaxSize"],
                "apply_s": apply_s,
            }
        )
    return results


def main(stack_dir: Path, report_path: Path) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    workdir = report_path.parent / "emulator-stack"
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.copytree(stack_dir, workdir)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # A requested certificate is issued at once once its validation record exists.
    env = {
        **os.environ,
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
        "MOTO_ACM_VALIDATION_WAIT": "0",
    }
    server = subprocess.Popen(
        [sys.executable, "-c", MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    report: dict[str, Any] = {}
    try:
        wait_for(port)
        session = boto3.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
        )
        certificate, key = self_signed_certificate()
        certificate_arn = session.client("acm", endpoint_url=endpoint).import_certificate(
            Certificate=certificate, PrivateKey=key
        )["CertificateArn"]
        images = session.client("ec2", endpoint_url=endpoint).describe_images()["Images"]
        image_id, next_image_id = images[0]["ImageId"], images[1]["ImageId"]
        report["image_id"], report["next_image_id"] = image_id, next_image_id
        ssm = session.client("ssm", endpoint_url=endpoint)
        # What the image build's publish step does after baking an AMI.
        ssm.put_parameter(
            Name=IMAGE_PARAMETER, Value=image_id, Type="String", DataType="aws:ec2:image"
        )
        stack = json.loads((workdir / "cdk.tf.json").read_text())
        zone_id = None
        aliases = [
            r for r in stack["resource"].get("aws_route53_record", {}).values() if "alias" in r
        ]
        if aliases:
            # The hosted zone a deployer owns before the deploy.
            domain = aliases[0]["name"]
            zone_id = (
                session.client("route53", endpoint_url=endpoint)
                .create_hosted_zone(Name=domain.split(".", 1)[1], CallerReference=domain)[
                    "HostedZone"
                ]["Id"]
                .split("/")[-1]
            )
        (workdir / "emulator_override.tf.json").write_text(
            json.dumps(override(stack, endpoint, certificate_arn, zone_id), indent=1)
        )
        report["init_s"] = terraform(workdir, "init")
        report["plan_s"] = terraform(workdir, "plan", "-out=plan.bin")
        report["apply_s"] = terraform(workdir, "apply", "-auto-approve", "plan.bin")
        state = json.loads(
            subprocess.run(
                ["terraform", "show", "-json"],
                cwd=workdir,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        report["state_resources"] = len(
            [
                r
                for r in state["values"]["root_module"].get("resources", [])
                if r["mode"] == "managed"
            ]
        )
        report["observed"] = observe(session, endpoint, stack, zone_id)
        report["redeploys"] = redeploys(
            workdir, session.client("autoscaling", endpoint_url=endpoint), report["observed"]
        )
        # The next image build publishes another AMI: the next deploy must roll it out.
        ssm.put_parameter(
            Name=IMAGE_PARAMETER,
            Value=next_image_id,
            Type="String",
            DataType="aws:ec2:image",
            Overwrite=True,
        )
        report["rollout_plan_s"] = terraform(workdir, "plan", "-out=rollout.bin")
        report["rollout_changes"] = planned_changes(workdir, "rollout.bin")
        report["destroy_s"] = terraform(workdir, "destroy", "-auto-approve")
        report["after_destroy_groups"] = len(
            session.client("autoscaling", endpoint_url=endpoint).describe_auto_scaling_groups()[
                "AutoScalingGroups"
            ]
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        report_path.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
