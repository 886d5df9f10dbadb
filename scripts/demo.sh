#!/usr/bin/env bash
# `make demo`: start the platform, run the example pipeline against it, and show the
# result with the CLI; then the closed loop (scripts/demo-loop.sh): a model trained by the
# retraining service, deployed, the world changes, drift, a retrain, canary, promotion.
# Everything lives in a temp dir and stops at the end. Every service gets a free port, so
# the demo never meets a `make run` on the default ones.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
source scripts/lib.sh
# MLOPS_BIN: a built mlops binary to use instead of building one (as the Python tests take it).
if [ -n "${MLOPS_BIN:-}" ]; then
  MLOPS=$(realpath "$MLOPS_BIN")
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
  cargo build -q -p mlops-cli --locked
  MLOPS="$CARGO_TARGET_DIR/debug/mlops"
fi
scripts/py-venv.sh
DATA=$(mktemp -d)
declare -A ADDR
for svc in tracking tracking-admin registry registry-admin mlflow mlflow-admin inference inference-http \
  inference-admin feature-store feature-store-admin monitoring monitoring-admin retraining retraining-admin; do
  ADDR[$svc]="127.0.0.1:$(free_port)"
done
UP_FLAGS=()
for svc in "${!ADDR[@]}"; do UP_FLAGS+=("--$svc-addr" "${ADDR[$svc]}"); done
# The platform's own log goes to a file: the demo's output is the steps and the CLI's.
UP_LOG="$DATA/mlops-up.log"
"$MLOPS" up --data-dir "$DATA/data" "${UP_FLAGS[@]}" >"$UP_LOG" 2>&1 &
UP=$!
trap 'kill -INT $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$DATA"' EXIT
for svc in tracking retraining inference-http; do
  wait_port "${ADDR[$svc]##*:}" 30 || { tail -n 40 "$UP_LOG" >&2; exit 1; }
done
log "mlops up (pid $UP): data in $DATA/data, its log in $UP_LOG"
sed -n '/^  /p' "$UP_LOG"

.venv/bin/python examples/python/train.py --target "${ADDR[tracking]}" --experiment demo
export MLOPS_TRACKING_ADDR="${ADDR[tracking]}" MLOPS_REGISTRY_ADDR="${ADDR[registry]}" \
  MLOPS_INFERENCE_ADDR="${ADDR[inference]}" MLOPS_FEATURE_STORE_ADDR="${ADDR[feature-store]}" \
  MLOPS_MONITORING_ADDR="${ADDR[monitoring]}" MLOPS_RETRAINING_ADDR="${ADDR[retraining]}"
"$MLOPS" experiments list
"$MLOPS" runs search "metrics.val_auc > 0.9" -e "$("$MLOPS" experiments show demo --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["experiment_id"])')"

MLOPS="$MLOPS" DATA_DIR="$DATA/data" INFERENCE_HTTP="${ADDR[inference-http]}" UP_LOG="$UP_LOG" \
  scripts/demo-loop.sh
