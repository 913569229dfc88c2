#!/usr/bin/env bash
# Starts vLLM once through its own units (same flags, same cache directory as on the fleet),
# waits for it, sends a few requests, stops it. torch.compile and Triton kernels land in
# /var/cache/vllm and are on the image; instances then load them instead of compiling.
# vLLM keys that cache on its config, --model included: when the fleet loads its weights
# from the stack's model_location, FLEET_MODEL_LOCATION and FLEET_MODEL_LOAD must name the
# same location and load, and the warm-up serves from there through the same fetch unit.
set -euo pipefail
# Packer uploads each script alone; lib.sh arrives with the ami/ payload.
# shellcheck source=lib.sh
source "${FINSIGHT_LIB:-/tmp/finsight-upload/ami/scripts/lib.sh}"

base_url=http://127.0.0.1:8001
deadline_s="${WARMUP_TIMEOUT_S:-1200}"
# shellcheck source=/dev/null
source "$FINSIGHT_ETC/vllm.defaults.env"

stop_vllm() {
    systemctl stop vllm.service finsight-model-fetch.service || true
    # The image ships /etc/finsight empty: the stack's user data writes it.
    rm -f "$INSTANCE_SETTINGS_DIR/vllm.env"
}
trap stop_vllm EXIT

if [[ -n "${FLEET_MODEL_LOCATION:-}" ]]; then
    fleet_vllm_env "$FLEET_MODEL_LOCATION" "${FLEET_MODEL_LOAD:-stream}" \
        >"$INSTANCE_SETTINGS_DIR/vllm.env"
    log "warming up on the fleet's weights: $FLEET_MODEL_LOCATION (${FLEET_MODEL_LOAD:-stream})"
fi

started=$SECONDS
systemctl start vllm.service
until curl --silent --fail --max-time 5 "$base_url/health" >/dev/null; do
    state="$(systemctl show --property=ActiveState --value vllm.service)"
    restarts="$(systemctl show --property=NRestarts --value vllm.service)"
    if [[ "$state" == failed || "$state" == inactive || "$restarts" != 0 ]]; then
        log "vllm.service died during warm-up"
        tail -n 50 /var/log/finsight/vllm.log >&2 || true
        exit 1
    fi
    if ((SECONDS - started > deadline_s)); then
        log "vllm not healthy after ${deadline_s}s"
        exit 1
    fi
    sleep 5
done
log "vllm healthy after $((SECONDS - started))s on a cold cache"

# A short and a long prompt, so both a decode-sized and a prefill-sized batch have run.
long_prompt="$(printf 'The quarterly report shows revenue growth. %.0s' {1..200})"
for prompt in "Hello" "$long_prompt"; do
    body="$(jq -n --arg model "$VLLM_SERVED_MODEL_NAME" --arg prompt "$prompt" \
        '{model: $model, prompt: $prompt, max_tokens: 16, temperature: 0}')"
    curl --silent --show-error --fail --max-time 120 \
        -H 'Content-Type: application/json' -d "$body" "$base_url/v1/completions" >/dev/null
done

stop_vllm
trap - EXIT
if [[ -z "$(find /var/cache/vllm -type f -print -quit)" ]]; then
    log "warm-up left no compile cache in /var/cache/vllm"
    exit 1
fi
log "warm-up done: $(du -sh /var/cache/vllm | cut -f1) of caches baked"
