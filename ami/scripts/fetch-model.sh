#!/usr/bin/env bash
# At boot, before vllm.service (finsight-model-fetch.service runs it): when the stack's
# /etc/finsight/vllm.env names VLLM_MODEL_LOCATION (s3://bucket/prefix/), copy those weights
# to the instance's disk and point vLLM at them. Without it, do nothing: vLLM serves the
# weights baked into the image. Installed as /opt/finsight/bin/fetch-model.
set -euo pipefail

location="${VLLM_MODEL_LOCATION:-}"
target="${FINSIGHT_FETCHED_MODEL_DIR:-/var/lib/finsight/model}"
# vllm.service reads this file last: it overrides the baked VLLM_MODEL_DIR.
override="${FINSIGHT_MODEL_OVERRIDE:-/run/finsight/vllm-model.env}"

rm -f "$override"
if [[ -z "$location" ]]; then
    echo "fetch-model: no VLLM_MODEL_LOCATION, serving the image's baked weights" >&2
    exit 0
fi
# The same rule as the stack's setting: a bucket and a non-empty prefix ending in "/".
if [[ ! "$location" =~ ^s3://[a-z0-9][a-z0-9.-]+[a-z0-9]/[^*?[:space:]]*[^*?/[:space:]][^*?[:space:]]*/$ ]]; then
    echo "fetch-model: VLLM_MODEL_LOCATION must be s3://bucket/prefix/, got $location" >&2
    exit 2
fi

install -d -m 0755 "$target"
# sync: a warm-pool instance starting again copies only what changed since its last boot.
"${AWS_CLI:-aws}" s3 sync --only-show-errors --no-progress --delete "$location" "$target"

shopt -s nullglob
weights=("$target"/*.safetensors)
if [[ ${#weights[@]} -eq 0 || ! -f "$target/config.json" ]]; then
    echo "fetch-model: no safetensors weights or config.json under $location" >&2
    exit 1
fi
chmod -R a+rX,go-w "$target"
install -d -m 0755 "$(dirname "$override")"
printf 'VLLM_MODEL_DIR=%s\n' "$target" >"$override"
echo "fetch-model: $location -> $target ($(du -sh "$target" | cut -f1))" >&2
