#!/usr/bin/env bash
# The CloudWatch agent: ships the gateway's and vLLM's JSON logs and the GPU's metrics.
set -euo pipefail
# Packer uploads each script alone; lib.sh arrives with the ami/ payload.
# shellcheck source=lib.sh
source "${FINSIGHT_LIB:-/tmp/finsight-upload/ami/scripts/lib.sh}"

agent_ctl=/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl
if [[ ! -x "$agent_ctl" ]]; then
    workdir="$(mktemp -d)"
    trap 'rm -rf "$workdir"' EXIT
    curl --fail --silent --show-error --location --output "$workdir/agent.deb" \
        "https://amazoncloudwatch-agent.s3.amazonaws.com/ubuntu/amd64/latest/amazon-cloudwatch-agent.deb"
    dpkg -i "$workdir/agent.deb"
fi

config=/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json
install -m 0644 "$UPLOAD_DIR/ami/cloudwatch/amazon-cloudwatch-agent.json" "$config"
# Translate and validate the config now (a bad one fails the build, not the fleet), and
# enable the agent without starting it: it runs on instances, whose role may write logs.
"$agent_ctl" -a fetch-config -m ec2 -c "file:$config"
"$agent_ctl" -a stop || true
systemctl enable amazon-cloudwatch-agent.service

install -m 0644 "$UPLOAD_DIR/ami/files/logrotate-finsight" /etc/logrotate.d/finsight
logrotate --debug /etc/logrotate.d/finsight 2>/dev/null
log "cloudwatch agent configured"
