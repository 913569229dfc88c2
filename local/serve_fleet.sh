#!/usr/bin/env bash
# The production shape on this machine: HAProxy on 127.0.0.1:8000 standing in for the ALB,
# two replicas (the real gateway in front of the emulated A10G engine), and the autoscaler
# executing the policy as compiled for AWS (max 4), its metrics going through moto_server's
# CloudWatch. A dev tenant whose key is made afresh at every start. Ctrl-C drains every
# replica through the lifecycle path, then stops the rest. Normally started by `make serve`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=local/client_examples.sh
source "$ROOT/local/client_examples.sh"
cd "$ROOT"

PORT="${SERVE_GATEWAY_PORT:-8000}"
MODEL_NAME="${SERVE_MODEL_NAME:-finsight-tiny}"
SPEED="${SERVE_SPEED:-1}"
STATE_DIR="$ROOT/.serve/fleet"
TENANTS_FILE="$ROOT/.serve/fleet-tenants.json"
LOG="$ROOT/.serve/fleet.log"
READY_TIMEOUT_S="${SERVE_READY_TIMEOUT_S:-120}"

if [[ ! "$PORT" =~ ^[1-9][0-9]{0,4}$ ]] || ((PORT > 65535)); then
    echo "serve: SERVE_GATEWAY_PORT must be a port number, got '$PORT'" >&2
    exit 2
fi
if [[ ! "$SPEED" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
    echo "serve: SERVE_SPEED must be a number such as 1 or 10, got '$SPEED'" >&2
    exit 2
fi
if [[ ! "$READY_TIMEOUT_S" =~ ^[1-9][0-9]*$ ]]; then
    echo "serve: SERVE_READY_TIMEOUT_S must be whole seconds above 0, got '$READY_TIMEOUT_S'" >&2
    exit 2
fi
PY="$ROOT/.venv/bin/python"
if [[ ! -x "$PY" ]]; then
    echo "serve: .venv is missing; run 'make serve' (it installs it first)" >&2
    exit 1
fi
mkdir -p "$ROOT/.serve"

say() { printf 'serve: %s\n' "$*" 2>/dev/null || true; }

DEV_KEY="$("$PY" -c 'import secrets; print("fsk-dev-" + secrets.token_urlsafe(24))')"
DEV_KEY="$DEV_KEY" "$PY" - "$TENANTS_FILE" <<'PY'
import hashlib, json, os, sys

digest = hashlib.sha256(os.environ["DEV_KEY"].encode()).hexdigest()
document = {"tenants": [{"id": "dev", "api_key_sha256": digest}]}
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(document, f, indent=2)
    f.write("\n")
PY

rm -f "$STATE_DIR/status.json"
say "starting the local fleet (log: $LOG)"
"$PY" -m infra.cli local up --state-dir "$STATE_DIR" --tenants-file "$TENANTS_FILE" \
    --port "$PORT" --speed "$SPEED" --model "$MODEL_NAME" >"$LOG" 2>&1 &
fleet_pid=$!

# shellcheck disable=SC2317
cleanup() {
    trap - EXIT
    trap '' INT TERM HUP PIPE
    if kill -0 "$fleet_pid" 2>/dev/null; then
        say "draining every replica"
        kill -INT "$fleet_pid" 2>/dev/null || true
        wait "$fleet_pid" 2>/dev/null || true
    fi
    say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

started=$SECONDS
serving() {
    "$PY" -c 'import json, sys
sys.exit(0 if json.load(open(sys.argv[1]))["in_service"] >= 2 else 1)' \
        "$STATE_DIR/status.json" 2>/dev/null
}
until serving; do
    if ! kill -0 "$fleet_pid" 2>/dev/null; then
        echo "serve: the fleet exited while starting; the end of $LOG:" >&2
        tail -n 30 "$LOG" >&2
        exit 1
    fi
    if ((SECONDS - started > READY_TIMEOUT_S)); then
        echo "serve: the fleet was not serving after ${READY_TIMEOUT_S} s; see $LOG" >&2
        exit 1
    fi
    sleep 0.5
done

BASE="http://127.0.0.1:$PORT"
cat <<EOT

  The local fleet is up: HAProxy on $BASE, two replicas behind it (the gateway in front
  of the emulated A10G engine, model '$MODEL_NAME'), the autoscaler with max 4.

  Dev tenant 'dev', key (valid until the fleet stops):
    $DEV_KEY

EOT
client_examples "$BASE" "$DEV_KEY" "$MODEL_NAME"
cat <<EOT

  The fleet: .venv/bin/fleet local status   (log: $LOG, replicas' logs: $STATE_DIR)
  Ctrl-C drains every replica, then stops.

EOT

wait "$fleet_pid"
status=$?
echo "serve: the fleet exited (status $status); the end of $LOG:" >&2
tail -n 20 "$LOG" >&2
exit 1
