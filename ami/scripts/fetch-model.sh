#!/usr/bin/env bash
# At boot, before vllm.service (finsight-model-fetch.service runs it): points vLLM at the
# weights the stack's VLLM_MODEL_LOCATION names, streamed or copied. Installed as
# /opt/finsight/bin/fetch-model.
set -euo pipefail
# With VLLM_MODEL_LOCATION (s3://bucket/prefix/) in the stack's /etc/finsight/vllm.env:
#   VLLM_MODEL_LOAD=stream    vLLM streams the safetensors from S3 into GPU memory itself
#                             (--load-format runai_streamer): nothing to copy here.
#   VLLM_MODEL_LOAD=download  copy the prefix to the instance-store NVMe (formatted at each
#                             boot: a stop wipes it), then vLLM loads from local disk.
# Without it, nothing: vLLM serves the weights baked into the image.

location="${VLLM_MODEL_LOCATION:-}"
# A stack older than the setting wrote only the location: it meant a copy.
load="${VLLM_MODEL_LOAD:-download}"
target="${FINSIGHT_FETCHED_MODEL_DIR:-/var/lib/finsight/model}"
# vllm.service reads this file last: it overrides the baked VLLM_MODEL_DIR.
override="${FINSIGHT_MODEL_OVERRIDE:-/run/finsight/vllm-model.env}"
# The instance store as Nitro names it; absent on types without one (then the root volume).
instance_store_glob="${FINSIGHT_INSTANCE_STORE_GLOB:-/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_*}"

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
install -d -m 0755 "$(dirname "$override")"

case "$load" in
stream)
    # vLLM reads config and tokenizer files into its cache and the tensors into the GPU.
    printf 'VLLM_MODEL_DIR=%s\n' "$location" >"$override"
    echo "fetch-model: vLLM streams $location (runai_streamer)" >&2
    exit 0
    ;;
download) ;;
*)
    echo "fetch-model: VLLM_MODEL_LOAD must be stream or download, got $load" >&2
    exit 2
    ;;
esac

install -d -m 0755 "$target"
mapfile -t devices < <(compgen -G "$instance_store_glob" || true)
if [[ ${#devices[@]} -gt 0 ]] && ! mountpoint -q "$target"; then
    # Empty after every stop and start: a new file system, without discarding blocks first.
    mkfs.xfs -f -K -q "${devices[0]}"
    mount -o noatime "${devices[0]}" "$target"
fi
# Many parallel ranged GETs: one S3 connection carries about 90 MB/s, the instance 10 Gbps.
cli_config="$(mktemp)"
trap 'rm -f "$cli_config"' EXIT
printf '[default]\ns3 =\n  max_concurrent_requests = %s\n  multipart_chunksize = 64MB\n' \
    "${FINSIGHT_S3_CONCURRENCY:-32}" >"$cli_config"
# sync: on a root-volume target a warm-pool restart copies only what changed.
AWS_CONFIG_FILE="$cli_config" "${AWS_CLI:-aws}" s3 sync --only-show-errors --no-progress \
    --delete "$location" "$target"

shopt -s nullglob
weights=("$target"/*.safetensors)
if [[ ${#weights[@]} -eq 0 || ! -f "$target/config.json" ]]; then
    echo "fetch-model: no safetensors weights or config.json under $location" >&2
    exit 1
fi
chmod -R a+rX,go-w "$target"
printf 'VLLM_MODEL_DIR=%s\n' "$target" >"$override"
echo "fetch-model: $location -> $target ($(du -sh "$target" | cut -f1))" >&2
