#!/usr/bin/env bash
# Shared by the provisioning scripts (sourced, never run): the image's layout in one place.
# shellcheck disable=SC2034  # the variables are read by the scripts that source this file

FINSIGHT_ROOT=/opt/finsight
FINSIGHT_ETC=/opt/finsight/etc
FINSIGHT_MODELS=/opt/finsight/models
VLLM_VENV=/opt/finsight/vllm
GATEWAY_VENV=/opt/finsight/gateway
# Written by the stack's user data at boot; the image only creates the directory.
INSTANCE_SETTINGS_DIR=/etc/finsight
# Where the file provisioner put ami/ and the gateway wheel.
UPLOAD_DIR=/tmp/finsight-upload
SERVICE_USER=finsight

log() {
    printf '[%s] %s\n' "$(basename "$0")" "$*" >&2
}

require_env() {
    local name
    for name in "$@"; do
        if [[ -z "${!name:-}" ]]; then
            log "missing required variable $name"
            exit 2
        fi
    done
}

# The model lines of the stack's vllm.env (infra/stack/fleet.py render_vllm_env) for a
# location and a load ("stream" or "download"): the build's warm-up runs vLLM with the same
# --model and --load-format as the fleet, so that vLLM's compile-cache key matches.
#   fleet_vllm_env LOCATION LOAD
fleet_vllm_env() {
    local location="$1" load="$2" format
    case "$load" in
    stream) format=runai_streamer ;;
    download) format=auto ;;
    *)
        log "model load must be stream or download, got $load"
        return 2
        ;;
    esac
    printf 'VLLM_MODEL_LOCATION=%s\nVLLM_MODEL_LOAD=%s\nVLLM_LOAD_FORMAT=%s\n' \
        "$location" "$load" "$format"
}
