#!/usr/bin/env bash
# The two services, enabled so that every boot (and every warm-pool start) runs them.
set -euo pipefail
# Packer uploads each script alone; lib.sh arrives with the ami/ payload.
# shellcheck source=lib.sh
source "${FINSIGHT_LIB:-/tmp/finsight-upload/ami/scripts/lib.sh}"

for unit in vllm.service gateway.service; do
    install -m 0644 "$UPLOAD_DIR/ami/systemd/$unit" "/etc/systemd/system/$unit"
done
systemctl daemon-reload
systemd-analyze verify /etc/systemd/system/vllm.service /etc/systemd/system/gateway.service
systemctl enable vllm.service gateway.service
log "units installed and enabled"
