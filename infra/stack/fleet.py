"""The GPU fleet: launch template, least-privilege instance role, Auto Scaling group.

Each instance runs vLLM (:8001) behind the gateway (:8000); the user data only writes the
env files the image's systemd units read (vllm.env only when the weights come from S3 at
boot). No secret is in the user data: the gateway fetches the tenants from Secrets Manager
by id with the instance role.

Image rollouts: the AMI id is resolved when the stack is deployed (from the SSM parameter
the image build publishes, or given directly), so a new image makes a new numbered version
of the launch template; the group names that version, and the change starts an instance
refresh that keeps full capacity and rolls back by itself if the new instances fail.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cdktn import Precondition, TerraformResourceLifecycle, Token
from cdktn_provider_aws.autoscaling_group import (
    AutoscalingGroup,
    AutoscalingGroupInitialLifecycleHook,
    AutoscalingGroupInstanceRefresh,
    AutoscalingGroupInstanceRefreshPreferences,
    AutoscalingGroupInstanceRefreshPreferencesAlarmSpecification,
    AutoscalingGroupLaunchTemplate,
    AutoscalingGroupTag,
    AutoscalingGroupWarmPool,
    AutoscalingGroupWarmPoolInstanceReusePolicy,
)
from cdktn_provider_aws.data_aws_ami import DataAwsAmi, DataAwsAmiFilter
from cdktn_provider_aws.data_aws_ssm_parameter import DataAwsSsmParameter
from cdktn_provider_aws.iam_instance_profile import IamInstanceProfile
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.launch_template import (
    LaunchTemplate,
    LaunchTemplateBlockDeviceMappings,
    LaunchTemplateBlockDeviceMappingsEbs,
    LaunchTemplateIamInstanceProfile,
    LaunchTemplateMetadataOptions,
    LaunchTemplateMonitoring,
    LaunchTemplateTagSpecifications,
)
from cdktn_provider_aws.security_group import (
    SecurityGroup,
    SecurityGroupEgress,
    SecurityGroupIngress,
)
from cdktn_provider_aws.security_group_rule import SecurityGroupRule
from constructs import Construct

from contract import GATEWAY_ENV_PATH as GATEWAY_ENV_PATH
from contract import GATEWAY_KEEP_ALIVE_ENV, gateway_env_name
from infra.policy.cold_start import WeightPath
from infra.policy.gateway import GatewayPolicySettings
from infra.stack.load_balancer import GATEWAY_PORT

UPSTREAM_URL = "http://127.0.0.1:8001"
VLLM_ENV_PATH = "/etc/finsight/vllm.env"
WARM_POOL_ENV_PATH = "/etc/finsight/warm-pool.env"
# The agent baked into the image (ami/cloudwatch) ships these log groups.
LOG_GROUP_PREFIX = "/finsight-serving"
# What Session Manager and Run Command need on the instance, instead of the managed
# AmazonSSMManagedInstanceCore, which also lets the instance read every SSM parameter.
SESSION_MANAGER_ACTIONS = (
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)
RUN_COMMAND_ACTIONS = (
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
)
ROOT_DEVICE = "/dev/sda1"
# With model_load "download", each boot first copies the weights from S3 (about 16 GB onto
# the instance-store NVMe: 13-52 s at the network's burst and baseline, more for a larger
# model or a slow start). The health-check grace period grows by this much so that the
# group does not replace an instance still copying, and the image's fetch unit gives up
# (TimeoutStartSec) after the same time. Streaming needs no copy: its load is vLLM's own
# phase in the boot timeline.
MODEL_FETCH_ALLOWANCE_S = 600
# Written next to the model location: vLLM's --load-format for each path.
LOAD_FORMAT = {WeightPath.STREAM: "runai_streamer", WeightPath.DOWNLOAD: "auto"}
# The Run:ai streamer's reader threads (S3 clients) and its CPU buffer: 16 readers fill the
# 10 Gbps burst from S3 (one connection carries about 90 MB/s); 4 GiB of buffer leaves a
# g5.xlarge's 16 GiB to vLLM's process (about 4 GiB) and the OS. The streamer's own
# default buffer is unlimited: it would try to hold whole shards (5 GB) in RAM.
STREAMER_CONCURRENCY = 16
STREAMER_MEMORY_LIMIT_BYTES = 4 * 1024**3
# A launch into the warm pool waits at Warmed:Pending:Wait until the image's
# finsight-warm-pool-ready has loaded the model once and read the root volume's files
# (then EC2 Auto Scaling stops it); without a hook it is stopped as soon as it runs, before
# anything is read. The wait is bounded by the worst boot; CONTINUE on timeout keeps a
# slow instance in the pool rather than losing it.
WARM_POOL_HOOK_TIMEOUT_S = 900
# The drain takes up to the deadline; the hook waits a minute more so that the gateway,
# not the timeout, completes the lifecycle action.
LIFECYCLE_HEARTBEAT_MARGIN_S = 60
GROUP_METRICS = (
    "GroupMinSize",
    "GroupMaxSize",
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
    "WarmPoolWarmedCapacity",
    "WarmPoolDesiredCapacity",
)
# Instance refresh for a fleet of 1-4: keep every serving instance until its replacement is
# ready (min 100 %), and allow one extra instance per serving one (max 200 %), so that even
# a lone instance gets its replacement first (1 x 200 % = 2). With at most 4 instances the
# group is replaced in one batch, one warm-up long, instead of one cold start after another;
# the cost is up to twice the instances for those minutes. AWS allows at most 100 points
# between the two.
REFRESH_MIN_HEALTHY_PERCENT = 100
REFRESH_MAX_HEALTHY_PERCENT = 200


@dataclass(frozen=True)
class GatewayEnv:
    """What the user data writes to /etc/finsight/gateway.env (the gateway's contract).

    Every `GATEWAY_*` line is a field of the gateway's settings (app/settings.py); the
    keep-alive is read by gateway.service's command line. The gateway does not import the
    policy: what follows from it (`policy`) reaches running gateways only through here.
    """

    tenants_secret_id: str
    cloudwatch_namespace: str
    autoscaling_group_name: str
    lifecycle_hook_name: str
    region: str
    drain_deadline_s: int
    policy: GatewayPolicySettings
    # uvicorn's --timeout-keep-alive: longer than the load balancer's idle timeout.
    keep_alive_s: int
    upstream_url: str = UPSTREAM_URL

    def values(self) -> dict[str, str]:
        fields = {
            "upstream_url": self.upstream_url,
            "tenants_secret_id": self.tenants_secret_id,
            "cloudwatch_namespace": self.cloudwatch_namespace,
            "autoscaling_group_name": self.autoscaling_group_name,
            "lifecycle_hook_name": self.lifecycle_hook_name,
            "aws_region": self.region,
            "drain_deadline_s": str(self.drain_deadline_s),
        }
        return {
            **{gateway_env_name(name): value for name, value in fields.items()},
            **self.policy.env(),
            GATEWAY_KEEP_ALIVE_ENV: str(self.keep_alive_s),
        }

    def render(self) -> str:
        return "".join(f"{key}={value}\n" for key, value in self.values().items())


def model_fetch_allowance_s(path: WeightPath) -> int:
    """What the health-check grace period adds to the boot timeline for a copy at boot."""
    return MODEL_FETCH_ALLOWANCE_S if path is WeightPath.DOWNLOAD else 0


def render_vllm_env(model_location: str, path: WeightPath, region: str) -> str:
    """vllm.env: where the weights are, and how the image's units load them."""
    if path is WeightPath.BAKED:
        raise ValueError("a model_location is loaded by streaming or download, not baked")
    lines = {
        "VLLM_MODEL_LOCATION": model_location,
        "VLLM_MODEL_LOAD": path.value,
        "VLLM_LOAD_FORMAT": LOAD_FORMAT[path],
        # The streamer's S3 client (AWS SDK for C++) and the CLI's copy: the bucket's Region.
        "AWS_DEFAULT_REGION": region,
    }
    if path is WeightPath.STREAM:
        lines |= {
            "RUNAI_STREAMER_CONCURRENCY": str(STREAMER_CONCURRENCY),
            "RUNAI_STREAMER_MEMORY_LIMIT": str(STREAMER_MEMORY_LIMIT_BYTES),
        }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def render_launch_env(group_name: str, hook_name: str, region: str) -> str:
    """warm-pool.env: what finsight-warm-pool-ready needs to complete the launch hook."""
    return (
        f"FINSIGHT_AUTOSCALING_GROUP_NAME={group_name}\n"
        f"FINSIGHT_LAUNCH_HOOK_NAME={hook_name}\n"
        f"AWS_DEFAULT_REGION={region}\n"
    )


def render_user_data(
    gateway: GatewayEnv,
    model_location: str | None,
    weight_path: WeightPath = WeightPath.STREAM,
    launch_hook_name: str | None = None,
) -> str:
    """cloud-init config writing the env files before the image's units start.

    vllm.env only when the weights come from S3 at boot (`model_location`); without it the
    image serves the weights baked into it. warm-pool.env only with a warm pool (its launch
    hook's name).
    """
    files = [{"path": GATEWAY_ENV_PATH, "permissions": "0644", "content": gateway.render()}]
    if model_location is not None:
        files.append(
            {
                "path": VLLM_ENV_PATH,
                "permissions": "0644",
                "content": render_vllm_env(model_location, weight_path, gateway.region),
            }
        )
    if launch_hook_name is not None:
        files.append(
            {
                "path": WARM_POOL_ENV_PATH,
                "permissions": "0644",
                "content": render_launch_env(
                    gateway.autoscaling_group_name, launch_hook_name, gateway.region
                ),
            }
        )
    # JSON is valid YAML, and json.dumps quotes every value safely.
    return "#cloud-config\n" + json.dumps({"write_files": files}, indent=1) + "\n"


@dataclass(frozen=True)
class FleetProps:
    name: str
    region: str
    account_id: str
    vpc_id: str
    private_subnet_ids: list[str]
    alb_security_group_id: str
    target_group_arn: str
    instance_type: str
    # Exactly one: the SSM parameter the image build publishes to, or an AMI id.
    image_ssm_parameter: str | None
    image_id: str | None
    root_volume_gb: int
    # The setting's variable, named when the image's root snapshot is larger.
    root_volume_setting: str
    # The group's minimum when it is created; afterwards the scheduled actions, the calendar
    # Lambda and `fleet override` own it (a deploy never resets it).
    min_size: int
    max_size: int
    health_check_grace_period_s: int
    instance_warmup_s: int
    warm_pool: bool
    warm_pool_size: int
    cloudwatch_namespace: str
    # Weights fetched from S3 at boot (bucket and non-empty key prefix), or None: baked in.
    model_location: str | None
    # How model_location is loaded (BAKED without one).
    weight_path: WeightPath
    model_bucket: str | None
    model_prefix: str | None
    # None only in a stack that cannot deploy (its plan stops on a precondition first).
    tenants_secret_arn: str | None
    drain_deadline_s: int
    # Written into gateway.env: what the gateway's settings take from the policy, and the
    # keep-alive that outlasts the load balancer's idle timeout.
    gateway_policy: GatewayPolicySettings
    gateway_keep_alive_s: int
    # A failing refresh stops and rolls back when one of these alarms fires.
    rollback_alarm_names: tuple[str, ...]


class Fleet(Construct):
    autoscaling_group_name: str
    autoscaling_group_arn: str
    lifecycle_hook_name: str
    # The warm pool's launch hook (None without a warm pool).
    launch_hook_name: str | None
    instance_role_name: str
    security_group_id: str
    user_data: str
    image_id: str
    launch_template_version: str

    def __init__(self, scope: Construct, id_: str, props: FleetProps) -> None:
        super().__init__(scope, id_)
        # Known before the group exists, so the user data can carry it without a cycle.
        group_name = props.name
        self.lifecycle_hook_name = f"{props.name}-drain"
        self.launch_hook_name = f"{props.name}-warm" if props.warm_pool else None
        group_arn = (
            f"arn:aws:autoscaling:{props.region}:{props.account_id}:autoScalingGroup:*:"
            f"autoScalingGroupName/{props.name}"
        )

        role = IamRole(
            self,
            "role",
            name=f"{props.name}-instance",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )
        self.instance_role_name = role.name
        IamRolePolicy(
            self,
            "permissions",
            name="fleet-instance",
            role=role.id,
            policy=json.dumps(self._instance_policy(props, group_arn)),
        )
        profile = IamInstanceProfile(self, "profile", name=f"{props.name}-instance", role=role.name)

        instances = SecurityGroup(
            self,
            "sg",
            name=f"{props.name}-instances",
            description="GPU instances: the gateway port from the load balancer only",
            vpc_id=props.vpc_id,
            ingress=[
                SecurityGroupIngress(
                    description="Gateway from the load balancer",
                    protocol="tcp",
                    from_port=GATEWAY_PORT,
                    to_port=GATEWAY_PORT,
                    security_groups=[props.alb_security_group_id],
                )
            ],
            egress=[
                SecurityGroupEgress(
                    description="AWS APIs through the NAT gateway and the S3 endpoint",
                    protocol="tcp",
                    from_port=443,
                    to_port=443,
                    cidr_blocks=["0.0.0.0/0"],
                )
            ],
            tags={"Name": f"{props.name}-instances"},
        )
        self.security_group_id = instances.id
        SecurityGroupRule(
            self,
            "alb-to-gateways",
            type="egress",
            security_group_id=props.alb_security_group_id,
            protocol="tcp",
            from_port=GATEWAY_PORT,
            to_port=GATEWAY_PORT,
            source_security_group_id=instances.id,
            description="Load balancer to the gateways",
        )

        self.user_data = render_user_data(
            GatewayEnv(
                tenants_secret_id=props.tenants_secret_arn or "",
                cloudwatch_namespace=props.cloudwatch_namespace,
                autoscaling_group_name=group_name,
                lifecycle_hook_name=self.lifecycle_hook_name,
                region=props.region,
                drain_deadline_s=props.drain_deadline_s,
                policy=props.gateway_policy,
                keep_alive_s=props.gateway_keep_alive_s,
            ),
            props.model_location,
            props.weight_path,
            self.launch_hook_name,
        )
        self.image_id = self._image_id(props)
        image = DataAwsAmi(
            self,
            "image-ami",
            filter=[DataAwsAmiFilter(name="image-id", values=[self.image_id])],
            include_deprecated=True,
        )
        # EC2 refuses a root volume smaller than the image's root snapshot: stop the plan.
        root_fits = (
            f"${{alltrue([for m in {image.fqn}.block_device_mappings : "
            f'tonumber(lookup(m.ebs, "volume_size", "0")) <= {props.root_volume_gb} '
            f"if m.device_name == {image.fqn}.root_device_name])}}"
        )
        template = LaunchTemplate(
            self,
            "template",
            name=f"{props.name}-gpu",
            image_id=self.image_id,
            instance_type=props.instance_type,
            update_default_version=True,
            ebs_optimized="true",
            vpc_security_group_ids=[instances.id],
            iam_instance_profile=LaunchTemplateIamInstanceProfile(arn=profile.arn),
            metadata_options=LaunchTemplateMetadataOptions(
                http_endpoint="enabled",
                http_tokens="required",
                # 1 hop: a container on the host cannot borrow the instance's role.
                http_put_response_hop_limit=1,
                instance_metadata_tags="enabled",
            ),
            monitoring=LaunchTemplateMonitoring(enabled=True),
            block_device_mappings=[
                LaunchTemplateBlockDeviceMappings(
                    device_name=ROOT_DEVICE,
                    ebs=LaunchTemplateBlockDeviceMappingsEbs(
                        volume_type="gp3",
                        volume_size=props.root_volume_gb,
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            user_data=base64.b64encode(self.user_data.encode()).decode(),
            tag_specifications=[
                LaunchTemplateTagSpecifications(
                    resource_type=kind, tags={"Name": f"{props.name}-gpu"}
                )
                for kind in ("instance", "volume")
            ],
            lifecycle=TerraformResourceLifecycle(
                precondition=[
                    Precondition(
                        condition=root_fits,
                        error_message=(
                            f"The image's root snapshot is larger than root_volume_gb "
                            f"({props.root_volume_gb} GB): EC2 refuses the launch. Set "
                            f"{props.root_volume_setting} to at least the image's size "
                            "(ami/root-volume-gb)."
                        ),
                    )
                ]
            ),
        )

        self.launch_template_version = Token.as_string(template.latest_version)
        group = AutoscalingGroup(
            self,
            "group",
            name=group_name,
            min_size=props.min_size,
            max_size=props.max_size,
            vpc_zone_identifier=props.private_subnet_ids,
            target_group_arns=[props.target_group_arn],
            health_check_type="ELB",
            health_check_grace_period=props.health_check_grace_period_s,
            default_instance_warmup=props.instance_warmup_s,
            # A numbered version, not $Latest: a new one changes the group, which starts the
            # refresh, and AWS can roll a refresh back only to a numbered version.
            launch_template=AutoscalingGroupLaunchTemplate(
                id=template.id, version=self.launch_template_version
            ),
            enabled_metrics=list(GROUP_METRICS),
            metrics_granularity="1Minute",
            # Remove the instances launched from the oldest template first on scale-in.
            termination_policies=["OldestLaunchTemplate", "Default"],
            initial_lifecycle_hook=[
                AutoscalingGroupInitialLifecycleHook(
                    name=self.lifecycle_hook_name,
                    lifecycle_transition="autoscaling:EC2_INSTANCE_TERMINATING",
                    heartbeat_timeout=props.drain_deadline_s + LIFECYCLE_HEARTBEAT_MARGIN_S,
                    default_result="CONTINUE",
                ),
                *(
                    [
                        AutoscalingGroupInitialLifecycleHook(
                            name=self.launch_hook_name,
                            lifecycle_transition="autoscaling:EC2_INSTANCE_LAUNCHING",
                            heartbeat_timeout=WARM_POOL_HOOK_TIMEOUT_S,
                            default_result="CONTINUE",
                        )
                    ]
                    if self.launch_hook_name is not None
                    else []
                ),
            ],
            # Started by the deploy whenever the launch template's version changes.
            instance_refresh=AutoscalingGroupInstanceRefresh(
                strategy="Rolling",
                # Launch the new instances before stopping old ones: never below capacity.
                preferences=AutoscalingGroupInstanceRefreshPreferences(
                    min_healthy_percentage=REFRESH_MIN_HEALTHY_PERCENT,
                    max_healthy_percentage=REFRESH_MAX_HEALTHY_PERCENT,
                    instance_warmup=str(props.instance_warmup_s),
                    # Instances already on the new version are left alone.
                    skip_matching=True,
                    # A failed refresh, or one of these alarms firing, restores the previous
                    # version on every instance it replaced.
                    auto_rollback=True,
                    alarm_specification=AutoscalingGroupInstanceRefreshPreferencesAlarmSpecification(
                        alarms=list(props.rollback_alarm_names)
                    ),
                ),
            ),
            warm_pool=(
                AutoscalingGroupWarmPool(
                    pool_state="Stopped",
                    min_size=props.warm_pool_size,
                    instance_reuse_policy=AutoscalingGroupWarmPoolInstanceReusePolicy(
                        reuse_on_scale_in=True
                    ),
                )
                if props.warm_pool
                else None
            ),
            tag=[
                AutoscalingGroupTag(key="Name", value=f"{props.name}-gpu", propagate_at_launch=True)
            ],
            # Scaling policies and scheduled actions own the desired capacity. The minimum is
            # set once, at creation: then the scheduled actions (which carry the policy's
            # minimums), the calendar Lambda and `fleet override` own it, so a deploy at any
            # time of day leaves the minimum they set. The maximum stays the stack's.
            lifecycle={"ignore_changes": ["desired_capacity", "min_size"]},
        )
        # The resource's attributes, so that whatever refers to the group waits for it.
        self.autoscaling_group_name = group.name
        self.autoscaling_group_arn = group.arn

    def _image_id(self, props: FleetProps) -> str:
        """The AMI id, fixed at deploy time: a literal id, or the parameter's current value."""
        if props.image_id is not None:
            return props.image_id
        if props.image_ssm_parameter is None:
            raise ValueError("the fleet needs image_id or image_ssm_parameter")
        parameter = DataAwsSsmParameter(self, "image", name=props.image_ssm_parameter)
        # An AMI id is no secret: shown in the plan, so a reviewer sees which image rolls out.
        return parameter.insecure_value

    @staticmethod
    def _instance_policy(props: FleetProps, group_arn: str) -> dict[str, object]:
        log_groups = (
            f"arn:aws:logs:{props.region}:{props.account_id}:log-group:{LOG_GROUP_PREFIX}/*"
        )
        statements: list[dict[str, object]] = [
            {
                "Sid": "PublishOwnMetrics",
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {
                    # The gateway's scaling metrics and the agent's GPU metrics alike.
                    "StringEquals": {"cloudwatch:namespace": props.cloudwatch_namespace}
                },
            },
            {
                "Sid": "AgentReadsOwnTags",
                "Effect": "Allow",
                "Action": "ec2:DescribeTags",
                "Resource": "*",
            },
            {
                "Sid": "ShipLogs",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                "Resource": [log_groups, f"{log_groups}:*"],
            },
            {
                "Sid": "CompleteOwnDrain",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:CompleteLifecycleAction",
                    "autoscaling:RecordLifecycleActionHeartbeat",
                ],
                "Resource": group_arn,
            },
            # Session Manager and Run Command, without reading any SSM parameter.
            {
                "Sid": "RegisterWithSystemsManager",
                "Effect": "Allow",
                "Action": "ssm:UpdateInstanceInformation",
                "Resource": f"arn:aws:ec2:{props.region}:{props.account_id}:instance/*",
            },
            {
                "Sid": "SessionManagerChannels",
                "Effect": "Allow",
                "Action": list(SESSION_MANAGER_ACTIONS + RUN_COMMAND_ACTIONS),
                "Resource": "*",
            },
        ]
        if props.tenants_secret_arn is not None:
            statements.append(
                {
                    "Sid": "ReadTenants",
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": props.tenants_secret_arn,
                }
            )
        if props.model_bucket is not None and props.model_prefix:
            # The prefix is never empty (settings refuse it): `prefix*` is that folder only.
            statements += [
                {
                    "Sid": "ReadModel",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{props.model_bucket}/{props.model_prefix}*",
                },
                {
                    "Sid": "ListModel",
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": f"arn:aws:s3:::{props.model_bucket}",
                    "Condition": {"StringLike": {"s3:prefix": [f"{props.model_prefix}*"]}},
                },
            ]
        elif props.model_location is not None:
            raise ValueError("model_location needs a bucket and a non-empty key prefix")
        return {"Version": "2012-10-17", "Statement": statements}
