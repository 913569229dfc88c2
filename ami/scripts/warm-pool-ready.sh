#!/usr/bin/env bash
# At every boot of a group with a warm pool (finsight-warm-pool-ready.service): completes the
# group's launch hook, entering the pool only once the instance is prepared. Installed as
# /opt/finsight/bin/warm-pool-ready.
set -euo pipefail
# The stack's /etc/finsight/warm-pool.env names the hook; without it, nothing.
# - Launching into the warm pool (target state Warmed:*): EC2 Auto Scaling would stop the
#   instance as soon as it runs, before anything is read. Wait until vLLM is healthy (the
#   weights loaded once, the compile cache read, the CUDA graphs captured), read every file
#   of the image's software and caches (their EBS blocks then leave lazy loading for good),
#   then CONTINUE: the group stops a prepared instance. ABANDON if vLLM never comes up: a
#   broken instance must not wait in the pool.
# - Any other target (InService: a direct launch, or leaving the pool): CONTINUE at once,
#   so that the load balancer registers the instance while vLLM is still starting.

hook="${FINSIGHT_LAUNCH_HOOK_NAME:-}"
group="${FINSIGHT_AUTOSCALING_GROUP_NAME:-}"
imds="${FINSIGHT_IMDS_URL:-http://169.254.169.254}"
vllm="${FINSIGHT_VLLM_URL:-http://127.0.0.1:8001}"
# Below the hook's heartbeat timeout (infra/stack/fleet.py WARM_POOL_HOOK_TIMEOUT_S, 900 s).
deadline_s="${FINSIGHT_WARM_DEADLINE_S:-840}"
poll_s="${FINSIGHT_POLL_S:-5}"
read -r -a hydrate_dirs <<<"${FINSIGHT_HYDRATE_DIRS:-/opt/finsight /var/cache/vllm}"

say() { echo "warm-pool-ready: $*" >&2; }

if [[ -z "$hook" || -z "$group" ]]; then
    say "no warm pool: nothing to complete"
    exit 0
fi

token="$(curl --silent --fail --max-time 2 -X PUT \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' "$imds/latest/api/token")"
metadata() {
    curl --silent --fail --max-time 2 -H "X-aws-ec2-metadata-token: $token" \
        "$imds/latest/meta-data/$1"
}
instance_id="$(metadata instance-id)"

complete() {
    "${AWS_CLI:-aws}" autoscaling complete-lifecycle-action \
        --lifecycle-hook-name "$hook" --auto-scaling-group-name "$group" \
        --instance-id "$instance_id" --lifecycle-action-result "$1"
    say "$instance_id: launch hook completed with $1"
}

# The target state appears once the group has decided where the instance goes.
started=$SECONDS
state=""
until state="$(metadata autoscaling/target-lifecycle-state)" && [[ -n "$state" ]]; do
    if ((SECONDS - started > 120)); then
        say "no target lifecycle state after 120 s: letting the launch go on"
        complete CONTINUE
        exit 0
    fi
    sleep "$poll_s"
done

if [[ "$state" != Warmed:* ]]; then
    complete CONTINUE
    exit 0
fi

say "$instance_id enters the warm pool ($state): loading the model once first"
until curl --silent --fail --max-time 5 "$vllm/health" >/dev/null; do
    if ((SECONDS - started > deadline_s)); then
        say "vLLM not healthy after ${deadline_s} s: abandoning the launch"
        complete ABANDON
        exit 1
    fi
    sleep "$poll_s"
done
hydrate_started=$SECONDS
# Many reads in flight: lazy loading from the snapshot is per block and slow one at a time.
find "${hydrate_dirs[@]}" -xdev -type f -print0 2>/dev/null |
    xargs -0 -r -P 16 -n 64 cat >/dev/null 2>&1 || true
say "read ${hydrate_dirs[*]} in $((SECONDS - hydrate_started)) s"
complete CONTINUE
