#!/usr/bin/env bash
# The services (the model fetch, vLLM, the gateway, the warm-pool launch hook), enabled so that every boot (and every warm-pool start) runs them.
set -euo pipefail
# Packer uploads each script alone; lib.sh arrives with the ami/ payload.
# shellcheck source=lib.sh
source "${FINSIGHT_LIB:-/tmp/finsight-upload/ami/scripts/lib.sh}"

units=(finsight-model-fetch.service vllm.service gateway.service finsight-warm-pool-ready.service)
install -D -m 0755 "$UPLOAD_DIR/ami/scripts/fetch-model.sh" "$FINSIGHT_ROOT/bin/fetch-model"
install -D -m 0755 "$UPLOAD_DIR/ami/scripts/warm-pool-ready.sh" "$FINSIGHT_ROOT/bin/warm-pool-ready"
for unit in "${units[@]}"; do
    install -m 0644 "$UPLOAD_DIR/ami/systemd/$unit" "/etc/systemd/system/$unit"
done
systemctl daemon-reload
systemd-analyze verify "${units[@]/#//etc/systemd/system/}"
systemctl enable "${units[@]}"
log "units installed and enabled"
