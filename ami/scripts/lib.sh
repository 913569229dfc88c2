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
