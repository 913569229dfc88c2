#!/usr/bin/env bash
# Runs vLLM's OpenAI server on the CPU the way an instance runs it on its GPU: the same
# entry point and flags, bound to loopback, behind the gateway. The one place that spells
# the command line for `make serve` and the integration tests.
#   local/vllm_server.sh MODEL_DIR SERVED_MODEL_NAME PORT
# `exec` keeps the PID: whoever started this script signals vLLM itself.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
model_dir="${1:?usage: vllm_server.sh MODEL_DIR SERVED_MODEL_NAME PORT}"
served_model_name="${2:?usage: vllm_server.sh MODEL_DIR SERVED_MODEL_NAME PORT}"
port="${3:?usage: vllm_server.sh MODEL_DIR SERVED_MODEL_NAME PORT}"

# 1 GiB of KV cache is plenty for a 256-token context; the default would claim far more RAM.
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
# vLLM reports usage statistics by default; a local replica sends nothing anywhere.
export VLLM_NO_USAGE_STATS=1
export DO_NOT_TRACK=1

# The loader: vLLM's default unless VLLM_LOAD_FORMAT names another, as vllm.service does
# (runai_streamer for an s3:// model, which `make bench` serves from a local S3 endpoint).
load_format="${VLLM_LOAD_FORMAT:-auto}"

# `vllm serve` cannot run from this venv (vllm-cpu ships no `vllm` distribution metadata),
# so the module is started directly.
exec "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$model_dir" \
    --served-model-name "$served_model_name" \
    --host 127.0.0.1 \
    --port "$port" \
    --max-model-len 256 \
    --dtype float32 \
    --load-format "$load_format"
