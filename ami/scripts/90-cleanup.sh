#!/usr/bin/env bash
# Leaves nothing on the image that belongs to the build: uploads, tokens, logs, keys.
set -euo pipefail
# Packer uploads each script alone; lib.sh arrives with the ami/ payload.
# shellcheck source=lib.sh
source "${FINSIGHT_LIB:-/tmp/finsight-upload/ami/scripts/lib.sh}"

rm -rf "$UPLOAD_DIR" /root/.cache/pip /root/.cache/huggingface
rm -rf /var/cache/vllm/xdg/huggingface /var/cache/vllm/.cache/huggingface
# A secret on the image would be on every instance and every snapshot copy.
if grep -rIl "hf_[A-Za-z0-9]\{30,\}" "$FINSIGHT_ETC" /var/cache/vllm /root /home 2>/dev/null; then
    log "a Hugging Face token was written to disk; refusing to bake it"
    exit 1
fi
if [[ -n "$(ls -A "$INSTANCE_SETTINGS_DIR")" ]]; then
    log "$INSTANCE_SETTINGS_DIR must be empty on the image: user data writes it"
    exit 1
fi

# Warm-up logs would otherwise ship as the first lines of every instance's log stream.
find /var/log/finsight -type f -delete
rm -f /opt/aws/amazon-cloudwatch-agent/logs/*.log

apt-get clean
rm -rf /var/lib/apt/lists/*
# New instances must run cloud-init (and the stack's user data) from scratch.
cloud-init clean --logs
rm -f /home/ubuntu/.ssh/authorized_keys /root/.ssh/authorized_keys
log "image cleaned"
