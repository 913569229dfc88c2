#!/usr/bin/env bash
# Creates .venv-runai: .venv-vllm's packages (through a .pth file, nothing copied) plus the
# Run:ai Model Streamer with its S3 client, the extra that `vllm[runai]` installs on the
# image. Only `make bench` uses it, to serve the tiny model straight from a local S3
# endpoint; the tests' shared .venv-vllm stays as it is. Idempotent (a stamp file).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RUNAI_VENV:-$ROOT/.venv-runai}"
BASE="${VLLM_VENV:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3.11}"
# The release vllm[runai] resolves to beside vLLM 0.32 (it asks for >= 0.15.7).
WANTED="runai-model-streamer[s3]==0.17.1"
STAMP="$VENV/.installed"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANTED" ]]; then
    exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
base_site="$("$BASE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# Last in the path: the streamer's own dependencies win over .venv-vllm's only where added.
echo "$base_site" >"$site/zz-vllm-venv.pth"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet "$WANTED"
"$VENV/bin/python" -c "import runai_model_streamer, vllm.entrypoints.openai.api_server"
echo "$WANTED" >"$STAMP"
