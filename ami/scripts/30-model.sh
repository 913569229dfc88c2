#!/usr/bin/env bash
# The model weights, onto the root volume at build time: an instance never downloads them.
# From S3 when MODEL_S3_URI is set (the production path: the bucket is ours, the copy is
# reviewed), otherwise from the Hugging Face Hub at a pinned revision.
set -euo pipefail
# Packer uploads each script alone; lib.sh arrives with the ami/ payload.
# shellcheck source=lib.sh
source "${FINSIGHT_LIB:-/tmp/finsight-upload/ami/scripts/lib.sh}"
require_env MODEL_DIR_NAME SERVED_MODEL_NAME

model_dir="$FINSIGHT_MODELS/$MODEL_DIR_NAME"
install -d -m 0755 "$model_dir"

if [[ -n "${MODEL_S3_URI:-}" ]]; then
    aws s3 sync --only-show-errors --no-progress "$MODEL_S3_URI" "$model_dir"
else
    require_env MODEL_ID MODEL_REVISION
    # A token for gated models comes in HF_TOKEN for this step only; it is read from the
    # environment, never written to disk, and the cleanup step checks that.
    "$VLLM_VENV/bin/python" - "$MODEL_ID" "$MODEL_REVISION" "$model_dir" <<'PY'
import sys

from huggingface_hub import snapshot_download

model_id, revision, target = sys.argv[1:4]
snapshot_download(
    repo_id=model_id,
    revision=revision,
    local_dir=target,
    allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"],
)
PY
fi

shopt -s nullglob
weights=("$model_dir"/*.safetensors)
if [[ ${#weights[@]} -eq 0 || ! -f "$model_dir/config.json" ]]; then
    log "no safetensors weights or config.json in $model_dir"
    exit 1
fi
rm -rf "$model_dir/.cache"
chown -R root:root "$model_dir"
chmod -R a+rX,go-w "$model_dir"

# vllm.service reads these; the stack's /etc/finsight/vllm.env may override them.
cat >"$FINSIGHT_ETC/vllm.defaults.env" <<ENV
VLLM_MODEL_DIR=$model_dir
VLLM_SERVED_MODEL_NAME=$SERVED_MODEL_NAME
ENV
chmod 0644 "$FINSIGHT_ETC/vllm.defaults.env"
log "model at $model_dir ($(du -sh "$model_dir" | cut -f1)), served as $SERVED_MODEL_NAME"
