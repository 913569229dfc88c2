#!/usr/bin/env bash
# The gateway, from the wheel built out of this repository, with the repository's pins.
set -euo pipefail
# Packer uploads each script alone; lib.sh arrives with the ami/ payload.
# shellcheck source=lib.sh
source "${FINSIGHT_LIB:-/tmp/finsight-upload/ami/scripts/lib.sh}"

shopt -s nullglob
wheels=("$UPLOAD_DIR"/wheel/finsight_serving-*.whl)
if [[ ${#wheels[@]} -ne 1 ]]; then
    log "expected exactly one finsight_serving wheel in $UPLOAD_DIR/wheel, found ${#wheels[@]}"
    exit 1
fi

python3 -m venv "$GATEWAY_VENV"
"$GATEWAY_VENV/bin/python" -m pip install --quiet --upgrade pip
# constraints.txt pins every transitive dependency the tests ran with.
"$GATEWAY_VENV/bin/python" -m pip install --quiet \
    -c "$UPLOAD_DIR/wheel/constraints.txt" "${wheels[0]}"
# The same import uvicorn does at start, without starting anything.
"$GATEWAY_VENV/bin/python" -c 'from app.main import create_app; assert callable(create_app)'
test -x "$GATEWAY_VENV/bin/uvicorn"
log "gateway installed in $GATEWAY_VENV"
