#!/usr/bin/env bash
# One replica on this machine, as an instance runs it: vLLM's OpenAI server on the CPU with
# the tiny local model on 127.0.0.1:8001, the gateway in front of it on 127.0.0.1:8000, a
# dev tenant whose key is made afresh at every start. Ctrl-C drains the gateway, then stops
# vLLM. Normally started by `make serve`, which installs .venv first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=local/client_examples.sh
source "$ROOT/local/client_examples.sh"
cd "$ROOT"

GATEWAY_PORT="${SERVE_GATEWAY_PORT:-8000}"
VLLM_PORT="${SERVE_VLLM_PORT:-8001}"
MODEL_NAME="${SERVE_MODEL_NAME:-finsight-tiny}"
STATE_DIR="$ROOT/.serve"
MODEL_DIR="$STATE_DIR/model"
TENANTS_FILE="$STATE_DIR/tenants.json"
VLLM_LOG="$STATE_DIR/vllm.log"
GATEWAY_LOG="$STATE_DIR/gateway.log"
# The first start of a new model compiles it (minutes on a busy 2-core machine); later
# starts reuse vLLM's compile cache.
VLLM_START_TIMEOUT_S="${SERVE_VLLM_START_TIMEOUT_S:-600}"
GATEWAY_READY_TIMEOUT_S="${SERVE_GATEWAY_READY_TIMEOUT_S:-60}"
# Locally a drain need not wait the production two minutes before Ctrl-C takes effect.
DRAIN_DEADLINE_S="${SERVE_DRAIN_DEADLINE_S:-10}"
# gateway.service's flags, with the keep-alive the stack writes for its default load
# balancer (idle timeout 300 s + 5 s; nothing locally closes idle connections sooner).
KEEP_ALIVE_S=305

# A bad value fails here, naming the variable, before anything is started (the cleanup does
# arithmetic on these and must not fail half-way with vLLM still running).
require_number() {
    # $1 variable name, $2 value, $3 regex, $4 what is allowed
    if [[ ! "$2" =~ $3 ]]; then
        echo "serve: $1 must be $4, got '$2'" >&2
        exit 2
    fi
}
require_number SERVE_GATEWAY_PORT "$GATEWAY_PORT" '^[1-9][0-9]{0,4}$' "a port number"
require_number SERVE_VLLM_PORT "$VLLM_PORT" '^[1-9][0-9]{0,4}$' "a port number"
if ((GATEWAY_PORT > 65535 || VLLM_PORT > 65535)); then
    echo "serve: SERVE_GATEWAY_PORT and SERVE_VLLM_PORT must be at most 65535" >&2
    exit 2
fi
require_number SERVE_VLLM_START_TIMEOUT_S "$VLLM_START_TIMEOUT_S" '^[1-9][0-9]*$' \
    "whole seconds above 0"
require_number SERVE_GATEWAY_READY_TIMEOUT_S "$GATEWAY_READY_TIMEOUT_S" '^[1-9][0-9]*$' \
    "whole seconds above 0"
require_number SERVE_DRAIN_DEADLINE_S "$DRAIN_DEADLINE_S" '^[0-9]+(\.[0-9]+)?$' \
    "seconds, e.g. 10 or 2.5"

PY="$ROOT/.venv/bin/python"
if [[ ! -x "$PY" ]]; then
    echo "serve: .venv is missing; run 'make serve' (it installs it first)" >&2
    exit 1
fi

# Never fails: with `make serve | tee log`, Ctrl-C also ends tee, and the cleanup that
# follows must still run to the end with nobody reading its output.
say() { printf 'serve: %s\n' "$*" 2>/dev/null || true; }

port_free() {
    "$PY" -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

http_ok() { curl --silent --fail --max-time 2 --output /dev/null "$1"; }

for port in "$GATEWAY_PORT" "$VLLM_PORT"; do
    if ! port_free "$port"; then
        echo "serve: 127.0.0.1:$port is in use (another replica?); stop it or set" \
            "SERVE_GATEWAY_PORT / SERVE_VLLM_PORT" >&2
        exit 1
    fi
done

mkdir -p "$STATE_DIR"
local/vllm_venv.sh
if [[ ! -f "$MODEL_DIR/finsight_model.json" ]]; then
    say "making the tiny model in $MODEL_DIR (first run only)"
    .venv-vllm/bin/python local/make_tiny_model.py --out "$MODEL_DIR" --name "$MODEL_NAME"
fi

# A fresh key at every start; the file keeps only its SHA-256, as production's does.
DEV_KEY="$("$PY" -c 'import secrets; print("fsk-dev-" + secrets.token_urlsafe(24))')"
DEV_KEY="$DEV_KEY" "$PY" - "$TENANTS_FILE" <<'PY'
import hashlib, json, os, sys

digest = hashlib.sha256(os.environ["DEV_KEY"].encode()).hexdigest()
document = {"tenants": [{"id": "dev", "api_key_sha256": digest}]}
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(document, f, indent=2)
    f.write("\n")
PY

vllm_pid=""
gateway_pid=""

# Both run only from the EXIT trap, which shellcheck cannot follow.
# shellcheck disable=SC2317
stop_group() {
    # $1 pid (a session leader: its group holds vLLM's engine and worker processes too),
    # $2 seconds to wait after SIGTERM before SIGKILL.
    local pid="$1" grace="$2" waited=0
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && ((waited < grace * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317
cleanup() {
    trap - EXIT
    # A second Ctrl-C, or a closed pipe, must not cut the cleanup short and leave vLLM running.
    trap '' INT TERM HUP PIPE
    if [[ -n "$gateway_pid" ]]; then
        say "draining the gateway (up to ${DRAIN_DEADLINE_S} s)"
        stop_group "$gateway_pid" "$((${DRAIN_DEADLINE_S%.*} + 10))"
    fi
    if [[ -n "$vllm_pid" ]]; then
        say "stopping vLLM"
        stop_group "$vllm_pid" 30
    fi
    say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Waits until URL answers 200; exits with the end of the log if the process dies first
# or the timeout passes.
#   wait_healthy NAME PID URL LOG TIMEOUT_S INTERVAL_S
wait_healthy() {
    local name="$1" pid="$2" url="$3" log="$4" timeout_s="$5" interval_s="$6"
    local since=$SECONDS
    until http_ok "$url"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "serve: $name exited while starting; the end of $log:" >&2
            tail -n 30 "$log" >&2
            exit 1
        fi
        if ((SECONDS - since > timeout_s)); then
            echo "serve: $name not ready after ${timeout_s} s; see $log" >&2
            exit 1
        fi
        sleep "$interval_s"
    done
}

# Each server in a session of its own: Ctrl-C reaches only this script, which then stops
# them in order (gateway drained first, vLLM after), as an instance's scale-in does.
say "starting vLLM on 127.0.0.1:$VLLM_PORT (log: $VLLM_LOG)"
setsid local/vllm_server.sh "$MODEL_DIR" "$MODEL_NAME" "$VLLM_PORT" >"$VLLM_LOG" 2>&1 &
vllm_pid=$!

started=$SECONDS
wait_healthy vLLM "$vllm_pid" "http://127.0.0.1:$VLLM_PORT/health" "$VLLM_LOG" "$VLLM_START_TIMEOUT_S" 1
say "vLLM healthy after $((SECONDS - started)) s"

say "starting the gateway on 127.0.0.1:$GATEWAY_PORT (log: $GATEWAY_LOG)"
GATEWAY_UPSTREAM_URL="http://127.0.0.1:$VLLM_PORT" \
    GATEWAY_TENANTS_FILE="$TENANTS_FILE" \
    GATEWAY_CLOUDWATCH_ENABLED=false \
    GATEWAY_LIFECYCLE_WATCH_ENABLED=false \
    GATEWAY_DRAIN_DEADLINE_S="$DRAIN_DEADLINE_S" \
    setsid .venv/bin/uvicorn --factory app.main:create_app \
    --host 127.0.0.1 --port "$GATEWAY_PORT" --no-access-log \
    --timeout-keep-alive "$KEEP_ALIVE_S" >"$GATEWAY_LOG" 2>&1 &
gateway_pid=$!

wait_healthy "the gateway" "$gateway_pid" "http://127.0.0.1:$GATEWAY_PORT/health/ready" \
    "$GATEWAY_LOG" "$GATEWAY_READY_TIMEOUT_S" 0.5

BASE="http://127.0.0.1:$GATEWAY_PORT"
cat <<EOF

  One replica is up: the gateway on $BASE, vLLM (CPU, model '$MODEL_NAME') behind it.

  Dev tenant 'dev', key (valid until this replica stops):
    $DEV_KEY

EOF
client_examples "$BASE" "$DEV_KEY" "$MODEL_NAME"
cat <<EOF

  Also: $BASE/health/ready, $BASE/metrics. Logs: $VLLM_LOG, $GATEWAY_LOG.
  Ctrl-C stops both.

EOF

# Either server exiting on its own ends the replica: the trap stops the other.
set +e
wait -n "$vllm_pid" "$gateway_pid"
status=$?
set -e
if ! kill -0 "$vllm_pid" 2>/dev/null; then
    echo "serve: vLLM exited (status $status); the end of $VLLM_LOG:" >&2
    tail -n 20 "$VLLM_LOG" >&2
    vllm_pid=""
else
    echo "serve: the gateway exited (status $status); the end of $GATEWAY_LOG:" >&2
    tail -n 20 "$GATEWAY_LOG" >&2
    gateway_pid=""
fi
exit 1
