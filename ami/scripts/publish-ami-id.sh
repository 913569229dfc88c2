#!/usr/bin/env bash
# Runs on the build host after Packer: writes this run's AMI id to the SSM parameter the
# stack reads, so that an instance refresh picks the new image up.
#   publish-ami-id.sh MANIFEST SSM_PARAMETER_NAME REGION
set -euo pipefail

manifest="${1:?usage: publish-ami-id.sh MANIFEST SSM_PARAMETER_NAME REGION}"
parameter="${2:?usage: publish-ami-id.sh MANIFEST SSM_PARAMETER_NAME REGION}"
region="${3:?usage: publish-ami-id.sh MANIFEST SSM_PARAMETER_NAME REGION}"

# The manifest accumulates builds; the last run's artifact is "region:ami-id".
artifact="$(jq -r '.last_run_uuid as $run | .builds[] | select(.packer_run_uuid == $run) | .artifact_id' "$manifest")"
ami_id="${artifact#*:}"
if [[ ! "$ami_id" =~ ^ami-[0-9a-f]{8,17}$ ]]; then
    echo "publish-ami-id: no AMI id in $manifest (got '$artifact')" >&2
    exit 1
fi

# data type aws:ec2:image makes SSM check the id, and lets a launch template reference the
# parameter directly (resolve:ssm:NAME).
aws ssm put-parameter --region "$region" --name "$parameter" --type String \
    --data-type aws:ec2:image --value "$ami_id" --overwrite >/dev/null
echo "publish-ami-id: $parameter = $ami_id"
