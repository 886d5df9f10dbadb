#!/usr/bin/env bash
# `make demo`: start the platform, run the example pipeline against it, and show the
# result with the CLI. Everything lives in a temp dir and stops at the end.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
source scripts/lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
cargo build -q -p mlops-cli --locked
scripts/py-venv.sh
MLOPS="$CARGO_TARGET_DIR/debug/mlops"
DATA=$(mktemp -d)
PORT=$(free_port)
ADMIN=$(free_port)
"$MLOPS" up --data-dir "$DATA" --tracking-addr "127.0.0.1:$PORT" --tracking-admin-addr "127.0.0.1:$ADMIN" &
UP=$!
trap 'kill -INT $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$DATA"' EXIT
wait_port "$PORT" 30
.venv/bin/python examples/python/train.py --target "127.0.0.1:$PORT" --experiment demo
export MLOPS_TRACKING_ADDR="127.0.0.1:$PORT"
"$MLOPS" experiments list
"$MLOPS" runs search "metrics.val_auc > 0.9" -e "$("$MLOPS" experiments show demo --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["experiment_id"])')"
