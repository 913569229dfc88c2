#!/usr/bin/env bash
# vLLM in its own venv, at the version the template pins.
set -euo pipefail
# Packer uploads each script alone; lib.sh arrives with the ami/ payload.
# shellcheck source=lib.sh
source "${FINSIGHT_LIB:-/tmp/finsight-upload/ami/scripts/lib.sh}"
require_env VLLM_VERSION

python3 -m venv "$VLLM_VENV"
"$VLLM_VENV/bin/python" -m pip install --quiet --upgrade pip
# [runai]: the Run:ai Model Streamer and its S3 client, for --load-format runai_streamer.
"$VLLM_VENV/bin/python" -m pip install --quiet "vllm[runai]==$VLLM_VERSION"

installed="$("$VLLM_VENV/bin/python" -c 'import vllm; print(vllm.__version__)')"
if [[ "$installed" != "$VLLM_VERSION" ]]; then
    log "asked for vllm $VLLM_VERSION, got $installed"
    exit 1
fi
"$VLLM_VENV/bin/python" -c 'import runai_model_streamer'
# The driver and CUDA runtime must agree before we bake anything around them.
"$VLLM_VENV/bin/python" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"'
log "vllm $installed installed in $VLLM_VENV"
