"""The synthesized JSON of both stacks: properties, and references between resources."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from typing import Any

import pytest

from infra.policy import FLEET_POLICY, FleetPolicy, cold_start, effective_schedule
from infra.policy.aws_rules import compile_scaling_rules
from infra.policy.scaling import HIGH_RESOLUTION_PERIODS_S
from infra.stack.fleet import GATEWAY_ENV_PATH, VLLM_ENV_PATH, WARM_POOL_ENV_PATH
from infra.stack.market_calendar import CALENDAR_ALARMS
from infra.stack.observability import (
    ALARMS,
    ALL_ALARMS,
    LOG_GROUP_CLASS,
    PAGING_ALARMS,
    QUEUE_DEPTH_ALARM,
    SCALE_IN_ALARM,
    SCALE_OUT_ALARM,
    SCALING_ALARMS,
    UNHEALTHY_HOST_ALARM,
    alarm_name,
)
from infra.stack.schedule import CLOSE_ACTION, PREWARM_ACTION
from infra.stack.settings import load_settings
from infra.stack.slo_alarms import SLO_ALARMS, burn_rate_alarms
from infra.stack.stack import AWS_PROVIDER_VERSION

from .conftest import DEPLOY_SETTINGS, FIXED_IMAGE, Synth

Stack = dict[str, Any]
REFERENCE = re.compile(r"^\$\{(aws_[a-z0-9_]+)\.([\w-]+)\.([a-z_]+)\}$")
DATA_REFERENCE = re.compile(r"^\$\{data\.(aws_[a-z0-9_]+)\.([\w-]+)\.([a-z_]+)\}$")


def resources(stack: Stack, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = stack["resource"].get(kind, {})
    return found


def one(stack: Stack, kind: str, id_contains: str = "") -> tuple[str, dict[str, Any]]:
    matches = [(name, body) for name, body in resources(stack, kind).items() if id_contains in name]
    assert len(matches) == 1, f"{kind} matching {id_contains!r}: {[n for n, _ in matches]}"
    return matches[0]


def ref(kind: str, name: str, attribute: str) -> str:
    return f"${{{kind}.{name}.{attribute}}}"


def referenced(stack: Stack, token: str) -> tuple[str, dict[str, Any]]:
    """The resource a `${kind.name.attr}` string points at (it must exist)."""
    match = REFERENCE.match(token)
    assert match, f"not a reference: {token}"
    kind, name, _ = match.groups()
    assert name in resources(stack, kind), f"dangling reference {token}"
    return kind, resources(stack, kind)[name]


def fleet_alarms(stack: Stack) -> dict[str, dict[str, Any]]:
    """This stack's own alarms by name (the calendar function brings its own)."""
    prefix = f"finsight-serving-{stack_environment(stack)}-"
    return {
        body["alarm_name"]: body
        for body in resources(stack, "aws_cloudwatch_metric_alarm").values()
        if body["alarm_name"].removeprefix(prefix) in ALARMS
    }


def stack_environment(stack: Stack) -> str:
    tags = stack["provider"]["aws"][0]["default_tags"][0]["tags"]
    environment: str = tags["Environment"]
    return environment


def stack_policy(stack: Stack) -> FleetPolicy:
    """The policy this stack compiled: the shared one with its environment's sizes."""
    return load_settings(stack_environment(stack)).fleet_policy(FLEET_POLICY)


@pytest.fixture(params=["dev", "prod"])
def stack(request: pytest.FixtureRequest, synth: Synth) -> Stack:
    return synth.json(request.param)


def test_provider_constraint_works_offline_and_with_6x(stack: Stack) -> None:
    assert stack["terraform"]["required_providers"]["aws"]["version"] == AWS_PROVIDER_VERSION


def test_state_is_local_in_dev_and_locked_s3_in_prod(
    dev: Stack, prod: Stack, deployable: dict[str, Stack]
) -> None:
    local = dev["terraform"]["backend"]["local"]["path"]
    assert not local.startswith("/")
    # No example bucket by default: prod's state goes to the bucket the deployer names.
    assert "s3" not in prod["terraform"]["backend"]
    s3 = deployable["prod"]["terraform"]["backend"]["s3"]
    assert s3["bucket"] == DEPLOY_SETTINGS["prod"]["state_bucket"]
    assert s3["use_lockfile"] is True and s3["encrypt"] is True
    assert s3["key"].startswith("prod/")


def test_subnets_span_two_zones_and_never_give_public_addresses(stack: Stack) -> None:
    subnets = resources(stack, "aws_subnet").values()
    assert {s["availability_zone"] for s in subnets} == {"us-east-1a", "us-east-1b"}
    assert all(s["map_public_ip_on_launch"] is False for s in subnets)
    _, group = one(stack, "aws_autoscaling_group")
    private = [referenced(stack, token)[1] for token in group["vpc_zone_identifier"]]
    assert {s["availability_zone"] for s in private} == {"us-east-1a", "us-east-1b"}
    assert all("private" in s["tags"]["Name"] for s in private)
    # egress: NAT for the small API traffic, the free gateway endpoint for the model bytes
    _, endpoint = one(stack, "aws_vpc_endpoint")
    assert endpoint["vpc_endpoint_type"] == "Gateway" and endpoint["service_name"].endswith(".s3")
    assert len(resources(stack, "aws_nat_gateway")) == 1


def test_the_group_serves_the_target_group_the_listener_forwards_to(stack: Stack) -> None:
    _, group = one(stack, "aws_autoscaling_group")
    [target_group_token] = group["target_group_arns"]
    _, rule = one(stack, "aws_lb_listener_rule")
    [action] = rule["action"]
    assert action["type"] == "forward"
    assert action["target_group_arn"] == target_group_token
    kind, listener = referenced(stack, rule["listener_arn"])
    assert kind == "aws_lb_listener" and listener["protocol"] == "HTTPS"


def test_only_the_api_is_routed_health_and_metrics_stay_private(stack: Stack) -> None:
    rules = list(resources(stack, "aws_lb_listener_rule").values())
    patterns = [
        value
        for rule in rules
        for condition in rule["condition"]
        for value in condition["path_pattern"]["values"]
    ]
    assert patterns == ["/v1/*"]
    text = json.dumps(rules)
    assert "/metrics" not in text and "/health" not in text
    https = [b for b in resources(stack, "aws_lb_listener").values() if b["protocol"] == "HTTPS"]
    [default] = https[0]["default_action"]
    assert default["type"] == "fixed-response" and default["fixed_response"]["status_code"] == "404"


def test_https_only_with_tls12_and_no_cleartext_listener(
    stack: Stack, deployable: dict[str, Stack]
) -> None:
    listeners = {b["port"]: b for b in resources(stack, "aws_lb_listener").values()}
    # Port 80 is neither listened on nor open: a redirect would come after the bearer key
    # had crossed in cleartext.
    assert set(listeners) == {443}
    ingress = [
        b for b in resources(stack, "aws_security_group_rule").values() if b["type"] == "ingress"
    ]
    assert [(rule["from_port"], rule["to_port"]) for rule in ingress] == [(443, 443)]
    assert listeners[443]["ssl_policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    environment = stack_environment(stack)
    [deployed] = resources(deployable[environment], "aws_lb_listener").values()
    assert deployed["certificate_arn"] == DEPLOY_SETTINGS[environment]["certificate_arn"]


def test_load_balancer_drops_bad_headers_logs_encrypted_and_outlives_long_streams(
    stack: Stack,
) -> None:
    settings = load_settings(stack_environment(stack))
    _, balancer = one(stack, "aws_lb")
    assert balancer["drop_invalid_header_fields"] is True
    assert balancer["idle_timeout"] == settings.longest_request_s
    kind, _ = referenced(stack, balancer["access_logs"]["bucket"].replace(".bucket}", ".id}"))
    assert kind == "aws_s3_bucket"
    _, encryption = one(stack, "aws_s3_bucket_server_side_encryption_configuration")
    rule = encryption["rule"][0]["apply_server_side_encryption_by_default"]
    assert rule["sse_algorithm"] == "AES256"
    _, block = one(stack, "aws_s3_bucket_public_access_block")
    assert all(block[key] is True for key in ("block_public_acls", "restrict_public_buckets"))


def test_target_group_probes_readiness_like_the_seed(stack: Stack) -> None:
    settings = load_settings(stack_environment(stack))
    _, target_group = one(stack, "aws_lb_target_group")
    assert target_group["port"] == 8000
    assert target_group["load_balancing_algorithm_type"] == "least_outstanding_requests"
    assert target_group["deregistration_delay"] == str(settings.longest_request_s)
    check = target_group["health_check"]
    assert (check["path"], check["timeout"], check["unhealthy_threshold"]) == (
        "/health/ready",
        10,
        2,
    )
    assert check["interval"] > check["timeout"]


def test_a_deploy_leaves_the_minimum_to_the_schedule(stack: Stack) -> None:
    # Terraform would reset min_size on every apply, undoing the 08:50 action or a live
    # `fleet override`; the recurring actions carry both of the policy's minimums instead.
    _, group = one(stack, "aws_autoscaling_group")
    ignored = set(group["lifecycle"]["ignore_changes"])
    assert {"min_size", "desired_capacity"} <= ignored
    assert "max_size" not in ignored
    minimums = {
        action["scheduled_action_name"]: action["min_size"]
        for action in resources(stack, "aws_autoscaling_schedule").values()
    }
    policy = stack_policy(stack)
    assert minimums == {
        PREWARM_ACTION: policy.market_hours.min_replicas,
        CLOSE_ACTION: policy.default.min_replicas,
    }


def test_group_size_grace_and_warmup_come_from_the_policy_and_cold_start(stack: Stack) -> None:
    _, group = one(stack, "aws_autoscaling_group")
    policy = stack_policy(stack)
    # Created at the market-hours minimum (a first deploy may land in market hours).
    assert (group["min_size"], group["max_size"]) == (
        policy.market_hours.min_replicas,
        policy.max_replicas,
    )
    assert "desired_capacity" not in group
    assert group["health_check_type"] == "ELB"
    # No model_location here: the baked weights' timeline.
    baked = cold_start.WeightPath.BAKED
    assert group["health_check_grace_period"] == cold_start.health_check_grace_period_s(baked)
    assert group["default_instance_warmup"] == cold_start.instance_warmup_s(baked)
    assert group["instance_refresh"]["preferences"]["min_healthy_percentage"] == 100
    assert "GroupInServiceInstances" in group["enabled_metrics"]
    settings = load_settings(stack_environment(stack))
    hooks = {hook["lifecycle_transition"]: hook for hook in group["initial_lifecycle_hook"]}
    drain = hooks.pop("autoscaling:EC2_INSTANCE_TERMINATING")
    assert drain["heartbeat_timeout"] > settings.drain_deadline_s
    assert ("warm_pool" in group) is settings.warm_pool
    if settings.warm_pool:
        assert group["warm_pool"]["pool_state"] == "Stopped"
        # Without a launch hook the group stops a warm-pool instance as soon as it runs,
        # before it has read anything: the pool would hold cold instances.
        launch = hooks.pop("autoscaling:EC2_INSTANCE_LAUNCHING")
        assert launch["default_result"] == "CONTINUE"
        # AWS's bounds for a heartbeat timeout; and room for the worst boot to ready.
        assert 30 <= launch["heartbeat_timeout"] <= 7200
        assert launch["heartbeat_timeout"] > cold_start.time_to_ready_s(worst=True)
    assert hooks == {}


def test_the_image_is_resolved_at_deploy_from_the_parameter_the_image_build_publishes(
    stack: Stack,
) -> None:
    settings = load_settings(stack_environment(stack))
    _, template = one(stack, "aws_launch_template")
    match = DATA_REFERENCE.match(template["image_id"])
    assert match, template["image_id"]
    kind, name, attribute = match.groups()
    assert (kind, attribute) == ("aws_ssm_parameter", "insecure_value")
    assert stack["data"]["aws_ssm_parameter"][name]["name"] == settings.image_ssm_parameter
    assert "resolve:ssm" not in json.dumps(stack)


def test_the_group_runs_the_templates_newest_numbered_version(stack: Stack) -> None:
    # A new image makes a new version; the group's version changes with it, which is what
    # makes the deploy start an instance refresh ($Latest would change nothing).
    name, template = one(stack, "aws_launch_template")
    _, group = one(stack, "aws_autoscaling_group")
    assert group["launch_template"] == {
        "id": ref("aws_launch_template", name, "id"),
        "version": ref("aws_launch_template", name, "latest_version"),
    }
    assert template["update_default_version"] is True


def test_a_refresh_keeps_capacity_and_rolls_back_on_the_unhealthy_host_alarm(
    stack: Stack,
) -> None:
    _, group = one(stack, "aws_autoscaling_group")
    refresh = group["instance_refresh"]
    assert refresh["strategy"] == "Rolling"
    preferences = refresh["preferences"]
    assert preferences["min_healthy_percentage"] == 100
    # A lone instance may become two, so it is replaced before it goes; AWS allows at most
    # 100 points between the two percentages.
    maximum = preferences["max_healthy_percentage"]
    assert 1 * maximum // 100 >= 2 and maximum - preferences["min_healthy_percentage"] <= 100
    assert preferences["instance_warmup"] == str(
        cold_start.instance_warmup_s(cold_start.WeightPath.BAKED)
    )
    assert preferences["skip_matching"] is True
    assert preferences["auto_rollback"] is True
    name = f"finsight-serving-{stack_environment(stack)}"
    [alarm] = preferences["alarm_specification"]["alarms"]
    assert alarm == alarm_name(name, UNHEALTHY_HOST_ALARM)
    assert alarm in fleet_alarms(stack)


def test_a_fixed_ami_id_goes_into_the_template_as_it_is(fixed_image: Stack) -> None:
    _, template = one(fixed_image, "aws_launch_template")
    assert template["image_id"] == FIXED_IMAGE
    assert "aws_ssm_parameter" not in fixed_image.get("data", {})
    name, _ = one(fixed_image, "aws_launch_template")
    _, group = one(fixed_image, "aws_autoscaling_group")
    assert group["launch_template"]["version"] == ref("aws_launch_template", name, "latest_version")
    # Without the calendar function the stack deploys exactly the fleet's own alarms.
    deployed = {
        b["alarm_name"] for b in resources(fixed_image, "aws_cloudwatch_metric_alarm").values()
    }
    burn = burn_rate_alarms(FLEET_POLICY.slo)
    inputs = {name for a in burn for name in (a.long_name, a.short_name)}
    assert deployed == {alarm_name("finsight-serving-dev", alarm) for alarm in (*ALARMS, *inputs)}


def test_launch_template_requires_imdsv2_and_encrypts_the_root_volume(stack: Stack) -> None:
    _, template = one(stack, "aws_launch_template")
    assert template["metadata_options"]["http_tokens"] == "required"
    assert template["metadata_options"]["http_put_response_hop_limit"] == 1
    [disk] = template["block_device_mappings"]
    assert disk["ebs"]["encrypted"] == "true" and disk["ebs"]["volume_type"] == "gp3"
    _, group = one(stack, "aws_autoscaling_group")
    assert group["launch_template"]["id"] == ref(
        "aws_launch_template", one(stack, "aws_launch_template")[0], "id"
    )


def test_user_data_writes_the_gateway_contract_and_no_secret(
    stack: Stack, deployable: dict[str, Stack]
) -> None:
    environment = stack_environment(stack)
    settings = load_settings(environment, **DEPLOY_SETTINGS[environment])
    stack = deployable[environment]
    _, template = one(stack, "aws_launch_template")
    user_data = base64.b64decode(template["user_data"]).decode()
    assert user_data.startswith("#cloud-config\n")
    files = {
        f["path"]: f["content"] for f in json.loads(user_data.split("\n", 1)[1])["write_files"]
    }
    gateway = dict(line.split("=", 1) for line in files[GATEWAY_ENV_PATH].splitlines())
    _, group = one(stack, "aws_autoscaling_group")
    assert gateway == {
        "GATEWAY_UPSTREAM_URL": "http://127.0.0.1:8001",
        "GATEWAY_TENANTS_SECRET_ID": settings.tenants_secret_arn,
        "GATEWAY_CLOUDWATCH_NAMESPACE": settings.cloudwatch_namespace,
        "GATEWAY_AUTOSCALING_GROUP_NAME": group["name"],
        "GATEWAY_LIFECYCLE_HOOK_NAME": next(
            hook["name"]
            for hook in group["initial_lifecycle_hook"]
            if hook["lifecycle_transition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
        ),
        "GATEWAY_AWS_REGION": settings.region,
        "GATEWAY_DRAIN_DEADLINE_S": str(settings.drain_deadline_s),
        # From the policy: the gateway no longer reads it from its own copy.
        "GATEWAY_MAX_RUNNING_SEQUENCES": str(FLEET_POLICY.queue.max_running),
        "GATEWAY_MAX_QUEUED_SEQUENCES": str(FLEET_POLICY.queue.max_queued),
        "GATEWAY_TENANT_MAX_QUEUED_SEQUENCES": str(FLEET_POLICY.queue.tenant_max_queued),
        "GATEWAY_MAX_QUEUE_WAIT_S": f"{FLEET_POLICY.queue.max_queue_wait_s:g}",
        "GATEWAY_CLOUDWATCH_INTERVAL_S": str(FLEET_POLICY.default.metric_period_s),
        # The SLO's targets, which each access line's slo_miss judges a request by.
        "GATEWAY_SLO_TTFT_S": f"{FLEET_POLICY.slo.ttft_s:g}",
        "GATEWAY_SLO_E2E_S": f"{FLEET_POLICY.slo.e2e_s:g}",
        "GATEWAY_SLO_TENANT_TARGETS": "",
        # Outlasts the load balancer's idle timeout.
        "UVICORN_TIMEOUT_KEEP_ALIVE": str(settings.longest_request_s + 5),
    }
    assert not re.search(r"(?i)(password|api[_-]?key|secret_access|token)=", user_data)


def test_user_data_names_the_weight_path_and_the_warm_pool_hook(
    stack: Stack, deployable: dict[str, Stack]
) -> None:
    environment = stack_environment(stack)
    settings = load_settings(environment, **DEPLOY_SETTINGS[environment])
    _, template = one(deployable[environment], "aws_launch_template")
    user_data = base64.b64decode(template["user_data"]).decode()
    files = {
        f["path"]: f["content"] for f in json.loads(user_data.split("\n", 1)[1])["write_files"]
    }
    _, group = one(deployable[environment], "aws_autoscaling_group")
    vllm = dict(line.split("=", 1) for line in files[VLLM_ENV_PATH].splitlines())
    assert vllm["VLLM_MODEL_LOCATION"] == settings.model_location
    # The default path streams the weights from there into the GPU.
    assert (vllm["VLLM_MODEL_LOAD"], vllm["VLLM_LOAD_FORMAT"]) == ("stream", "runai_streamer")
    assert vllm["AWS_DEFAULT_REGION"] == settings.region
    if settings.warm_pool:
        warm = dict(line.split("=", 1) for line in files[WARM_POOL_ENV_PATH].splitlines())
        launch = next(
            hook
            for hook in group["initial_lifecycle_hook"]
            if hook["lifecycle_transition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
        )
        assert warm == {
            "FINSIGHT_AUTOSCALING_GROUP_NAME": group["name"],
            "FINSIGHT_LAUNCH_HOOK_NAME": launch["name"],
            "AWS_DEFAULT_REGION": settings.region,
        }
    else:
        assert WARM_POOL_ENV_PATH not in files


def test_instance_role_is_least_privilege(stack: Stack, deployable: dict[str, Stack]) -> None:
    environment = stack_environment(stack)
    settings = load_settings(environment, **DEPLOY_SETTINGS[environment])
    stack = deployable[environment]
    fleet_policies = [
        body for name, body in resources(stack, "aws_iam_role_policy").items() if "fleet" in name
    ]
    [policy] = fleet_policies
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    for statement in statements.values():
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert all("*" not in action for action in actions)
    metrics = statements["PublishOwnMetrics"]
    # One namespace: the gateways' scaling metrics and the image's agent's GPU metrics.
    assert metrics["Condition"]["StringEquals"] == {
        "cloudwatch:namespace": settings.cloudwatch_namespace
    }
    assert statements["ReadTenants"]["Resource"] == settings.tenants_secret_arn
    _, group = one(stack, "aws_autoscaling_group")
    assert statements["CompleteOwnDrain"]["Resource"].endswith(
        f"autoScalingGroupName/{group['name']}"
    )
    assert statements["ReadModel"]["Resource"] == (
        f"arn:aws:s3:::{settings.model_bucket}/{settings.model_prefix}*"
    )


def test_every_alarm_the_stack_deploys_is_in_the_one_list(stack: Stack, synth: Synth) -> None:
    environment = stack_environment(stack)
    name = f"finsight-serving-{environment}"
    metric = [b["alarm_name"] for b in resources(stack, "aws_cloudwatch_metric_alarm").values()]
    composite = [
        b["alarm_name"] for b in resources(stack, "aws_cloudwatch_composite_alarm").values()
    ]
    deployed = metric + composite
    assert len(deployed) == len(set(deployed))
    # The deployed policy names no tenant: each burn-rate window once, fleet-wide.
    burn = burn_rate_alarms(stack_policy(stack).slo)
    assert {a.name for a in burn} == set(SLO_ALARMS)
    inputs = {name for a in burn for name in (a.long_name, a.short_name)}
    assert set(composite) == {alarm_name(name, alarm) for alarm in SLO_ALARMS}
    assert set(metric) == {
        alarm_name(name, alarm) for alarm in (*ALARMS, *CALENDAR_ALARMS, *inputs)
    }
    assert set(deployed) == set(synth.stacks[environment].alarm_names)
    assert len(set(ALL_ALARMS)) == len(ALL_ALARMS)
    assert len(ALL_ALARMS) == len(ALARMS) + len(SLO_ALARMS) + len(CALENDAR_ALARMS)


def test_every_alarm_action_is_a_real_policy_or_topic(stack: Stack) -> None:
    alarms = [
        *resources(stack, "aws_cloudwatch_metric_alarm").values(),
        *resources(stack, "aws_cloudwatch_composite_alarm").values(),
    ]
    # The burn-rate inputs act only through their composite (tests/.../test_slo_alarms.py).
    inputs = {
        name
        for composite in resources(stack, "aws_cloudwatch_composite_alarm").values()
        for name in re.findall(r'ALARM\("([^"]+)"\)', composite["alarm_rule"])
    }
    for alarm in alarms:
        actions = alarm.get("alarm_actions", []) + alarm.get("ok_actions", [])
        assert bool(actions) != (alarm["alarm_name"] in inputs), alarm["alarm_name"]
        for action in actions:
            kind, _ = referenced(stack, action)
            assert kind in ("aws_autoscaling_policy", "aws_sns_topic"), alarm["alarm_name"]
    name = f"finsight-serving-{stack_environment(stack)}"
    by_name = fleet_alarms(stack)
    for alarm in SCALING_ALARMS:
        [action] = by_name[alarm_name(name, alarm)]["alarm_actions"]
        assert referenced(stack, action)[0] == "aws_autoscaling_policy"
    for alarm in PAGING_ALARMS:
        [action] = by_name[alarm_name(name, alarm)]["alarm_actions"]
        assert referenced(stack, action)[0] == "aws_sns_topic"


def test_scaling_alarms_and_steps_are_the_compiled_rules(stack: Stack) -> None:
    name = f"finsight-serving-{stack_environment(stack)}"
    alarms = fleet_alarms(stack)
    policies = {b["name"]: b for b in resources(stack, "aws_autoscaling_policy").values()}
    rules = compile_scaling_rules(stack_policy(stack))
    for alarm, rule, suffix, metric in (
        (SCALE_OUT_ALARM, rules.scale_out, "scale-out", "Demand"),
        (SCALE_IN_ALARM, rules.scale_in, "scale-in", "Demand"),
        (QUEUE_DEPTH_ALARM, rules.queue_depth, "queue-depth", "QueueDepth"),
    ):
        body = alarms[alarm_name(name, alarm)]
        assert body["metric_name"] == metric and body["statistic"] == "Average"
        assert body["period"] == FLEET_POLICY.default.metric_period_s == 10
        assert body["evaluation_periods"] * body["period"] == rule.alarm.window_s
        assert body["threshold"] == rule.alarm.threshold
        assert body["comparison_operator"] == rule.alarm.comparison.value
        assert body["treat_missing_data"] == "notBreaching"
        assert body["dimensions"] == {"AutoScalingGroupName": ref_name(stack)}
        policy = policies[f"{name}-{suffix}"]
        assert policy["adjustment_type"] == "PercentChangeInCapacity"
        assert policy["min_adjustment_magnitude"] == 1
        assert policy["estimated_instance_warmup"] == cold_start.instance_warmup_s(
            cold_start.WeightPath.BAKED
        )
        steps = [
            (
                step.get("metric_interval_lower_bound"),
                step.get("metric_interval_upper_bound"),
                step["scaling_adjustment"],
            )
            for step in policy["step_adjustment"]
        ]
        assert steps == [
            (
                None if s.lower_bound is None else str(s.lower_bound),
                None if s.upper_bound is None else str(s.upper_bound),
                s.scaling_adjustment,
            )
            for s in rule.policy.steps
        ]
    assert FLEET_POLICY.default.upscale_delay_s == 30
    out = alarms[alarm_name(name, SCALE_OUT_ALARM)]
    assert out["evaluation_periods"] == out["datapoints_to_alarm"] == 3
    # each scaling alarm drives its own policy
    actions = [alarms[alarm_name(name, alarm)]["alarm_actions"][0] for alarm in SCALING_ALARMS]
    assert len(set(actions)) == len(SCALING_ALARMS)
    # high resolution: CloudWatch alarm periods under a minute are 10, 20 or 30 s only
    for alarm in SCALING_ALARMS:
        assert alarms[alarm_name(name, alarm)]["period"] in HIGH_RESOLUTION_PERIODS_S


def ref_name(stack: Stack) -> str:
    return ref("aws_autoscaling_group", one(stack, "aws_autoscaling_group")[0], "name")


def test_a_silent_publisher_pages_instead_of_scaling(stack: Stack) -> None:
    name = f"finsight-serving-{stack_environment(stack)}"
    heartbeat = fleet_alarms(stack)[alarm_name(name, "scaling-metric-missing")]
    assert heartbeat["statistic"] == "SampleCount"
    assert heartbeat["treat_missing_data"] == "breaching"


def test_scheduled_actions_come_from_the_policy_schedule(stack: Stack) -> None:
    actions = {
        b["scheduled_action_name"]: b for b in resources(stack, "aws_autoscaling_schedule").values()
    }
    recurring = {n: a for n, a in actions.items() if n.startswith("market-hours-")}
    assert set(recurring) == {"market-hours-prewarm", "market-hours-close"}
    for action in recurring.values():
        assert action["time_zone"] == FLEET_POLICY.schedule.time_zone == "America/New_York"
        assert action["autoscaling_group_name"] == ref_name(stack)
        assert action["max_size"] == -1 and action["desired_capacity"] == -1
    # An ordinary week (no holiday, no early close, no market event): the effective
    # schedule's changes are exactly the cron's firings, with the same minimum.
    policy = stack_policy(stack)
    assert recurring["market-hours-prewarm"]["min_size"] == policy.market_hours.min_replicas
    assert recurring["market-hours-close"]["min_size"] == policy.default.min_replicas
    if policy.market_hours.min_replicas != policy.default.min_replicas:
        week = effective_schedule(policy, dt.date(2026, 12, 14), 7)
        by_minimum = {a["min_size"]: a["recurrence"] for a in recurring.values()}
        assert set(by_minimum) == {change.min_replicas for change in week}
        for change in week:
            minute, hour, _, _, days = by_minimum[change.min_replicas].split()
            local = change.local_time
            assert (int(minute), int(hour)) == (local.minute, local.hour)
            assert str((local.weekday() + 1) % 7) in days.split(",")
        assert len(week) == 2 * len(policy.schedule.weekdays)
    assert recurring["market-hours-prewarm"]["recurrence"] == "50 8 * * 1,2,3,4,5"
    assert recurring["market-hours-close"]["recurrence"] == "0 16 * * 1,2,3,4,5"


def test_dashboard_tells_the_scaling_story(stack: Stack) -> None:
    _, dashboard = one(stack, "aws_cloudwatch_dashboard")
    body = json.loads(dashboard["dashboard_body"])
    text = json.dumps(body)
    for needle in (
        "Demand",
        "QueueDepth",
        "Shed",
        "GroupDesiredCapacity",
        "GroupInServiceInstances",
        "GroupMinSize",
        "GroupMaxSize",
        "RequestCount",
        '"p50"',
        '"p99"',
        "HTTPCode_Target_5XX_Count",
        "HTTPCode_Target_4XX_Count",
        "HealthyHostCount",
        "UnHealthyHostCount",
        "nvidia_smi_utilization_gpu",
        "nvidia_smi_utilization_memory",
        "by bin(1m), tenant",
        "ttft_ms",
        "duration_ms",
        "queue_ms",
        "slo_miss",
        "requests_shed",
    ):
        assert needle in text, needle
    # The scaling story first: demand, queue, capacity, sheds; then the SLO.
    titles = [widget["properties"]["title"] for widget in body["widgets"]]
    assert [t.split()[0].rstrip(":") for t in titles[:5]] == [
        "Demand",
        "Queue",
        "Instances",
        "Requests",
        "TTFT",
    ]
    # Every CloudWatch metric of ours is read from the stack's one namespace.
    settings = load_settings(stack_environment(stack))
    namespaces = {
        line[0]
        for widget in body["widgets"]
        for line in widget["properties"].get("metrics", [])
        if isinstance(line[0], str) and not line[0].startswith("AWS/")
    }
    assert namespaces == {settings.cloudwatch_namespace}
    rules = compile_scaling_rules(stack_policy(stack))
    [signal] = [w for w in body["widgets"] if '"Demand"' in json.dumps(w)]
    lines = [a["value"] for a in signal["properties"]["annotations"]["horizontal"]]
    assert rules.scale_out.alarm.threshold in lines
    assert rules.scale_in.alarm.threshold in lines
    [queue] = [w for w in body["widgets"] if '"QueueDepth"' in json.dumps(w)]
    lines = [a["value"] for a in queue["properties"]["annotations"]["horizontal"]]
    assert lines == [rules.queue_depth.alarm.threshold]
    assert {line[-1]["stat"] for line in queue["properties"]["metrics"]} == {"Average", "Maximum"}
    [shed] = [w for w in body["widgets"] if '"Shed"' in json.dumps(w)]
    assert [line[-1]["stat"] for line in shed["properties"]["metrics"]] == ["Sum"]


def test_log_groups_keep_logs_for_the_environment_retention(stack: Stack) -> None:
    settings = load_settings(stack_environment(stack))
    groups = {b["name"]: b for b in resources(stack, "aws_cloudwatch_log_group").values()}
    for name in ("/finsight-serving/gateway", "/finsight-serving/vllm"):
        assert groups[name]["retention_in_days"] == settings.log_retention_days
    # The gateway's per-request metrics are embedded metric format in its log, and the
    # calendar function's Powertools metrics in its own: CloudWatch Logs extracts them in
    # the Standard class only, and a log group's class cannot change after creation.
    assert LOG_GROUP_CLASS == "STANDARD"
    assert {name: group.get("log_group_class") for name, group in groups.items()} == dict.fromkeys(
        groups, "STANDARD"
    )
