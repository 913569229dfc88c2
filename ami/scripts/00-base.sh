#!/usr/bin/env bash
# Base layer: OS packages, the service account and the directory layout.
set -euo pipefail
# Packer uploads each script alone; lib.sh arrives with the ami/ payload.
# shellcheck source=lib.sh
source "${FINSIGHT_LIB:-/tmp/finsight-upload/ami/scripts/lib.sh}"

# The source AMI runs its own cloud-init and unattended upgrades on first boot; apt would
# fail on their lock if we raced them.
cloud-init status --wait >/dev/null || true
systemctl stop unattended-upgrades.service apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true
# Package updates on a fleet instance would restart services behind the load balancer's
# back; the image is rebuilt instead (instance refresh rolls it out).
systemctl disable unattended-upgrades.service apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends python3-venv python3-pip curl jq logrotate unzip

if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --home-dir /var/cache/vllm --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi
# vLLM needs the GPU device nodes; on Ubuntu they belong to the video and render groups.
for group in video render; do
    if getent group "$group" >/dev/null; then
        usermod -a -G "$group" "$SERVICE_USER"
    fi
done

install -d -m 0755 -o root -g root "$FINSIGHT_ROOT" "$FINSIGHT_ETC" "$FINSIGHT_MODELS"
# User data writes settings here (a tenants secret id, never the tenants themselves);
# readable by the service account only.
install -d -m 0750 -o root -g "$SERVICE_USER" "$INSTANCE_SETTINGS_DIR"
install -d -m 0755 -o "$SERVICE_USER" -g "$SERVICE_USER" /var/cache/vllm /var/log/finsight
install -m 0644 "$UPLOAD_DIR/ami/README.md" "$FINSIGHT_ROOT/README.md"
log "base layer ready"
