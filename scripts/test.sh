#!/usr/bin/env bash
# `make test`: formatting, lints, every Rust test (against SQLite, a real PostgreSQL
# and a tansu Kafka-protocol broker started here and stopped at the end), and the
# Python tests (the example pipeline against `mlops up`). Installs what is missing.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# shellcheck source=lib.sh
source scripts/lib.sh
START=$(date +%s)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

log "cargo fmt --check"
cargo fmt --all -- --check
log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "service crates never depend on each other"
scripts/check-deps.sh
log "every declared dependency is used"
scripts/check-unused-deps.sh
log "dashboards and alerts query only metrics the code exports"
scripts/check-dashboards.sh

log "the dense kernels' tests under Miri (crates/dense: the one crate with unsafe)"
scripts/miri.sh

ensure_postgres
export MLOPS_TEST_POSTGRES_URL=${MLOPS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
drop_test_databases "$MLOPS_TEST_POSTGRES_URL"
ensure_tansu
trap stop_tansu EXIT
start_tansu
export MLOPS_TEST_KAFKA_BROKERS=$TANSU_BROKERS MLOPS_TEST_KAFKA_PID=$TANSU_PID

log "Rust tests (SQLite, PostgreSQL, in-process bus)"
# The retraining Job runner's test writes the Job it made here; validated below.
RENDERED=$(mktemp -d)
export MLOPS_TEST_RENDERED_JOB="$RENDERED/job.json"
cargo test --workspace --locked -- --skip kafka::
log "Rust tests on Kafka (one at a time: one of them freezes the broker)"
cargo test -p mlops-tests --test it --locked -- kafka:: --test-threads=1

log "the Job the retraining service's Kubernetes runner made, against Kubernetes' schema"
MLOPS_VENV="$REPO/.venv-k8s" MLOPS_VENV_REQUIREMENTS="$REPO/scripts/k8s-validate-requirements.txt" scripts/py-venv.sh
"$REPO/.venv-k8s/bin/kubernetes-validate" --strict -k 1.30.0 "$MLOPS_TEST_RENDERED_JOB"
rm -rf "$RENDERED"

log "Python tests (the example pipeline against mlops up)"
# test_monitoring.py renders `mlops monitor report --html` in headless Chromium.
ensure_chromium
cargo build -p mlops-cli --locked
scripts/py-venv.sh
MLOPS_BIN="$CARGO_TARGET_DIR/debug/mlops" .venv/bin/python -m pytest -q tests/python

# The anchors' own clients against the inference service, each in its own venv (tritonclient
# and KServe's SDK pin different protobuf and grpcio versions and cannot share a process).
log "Python tests (tritonclient and KServe's client against mlops up's inference service)"
MLOPS_VENV="$REPO/.venv-triton" MLOPS_VENV_REQUIREMENTS="$REPO/tests/oip/requirements-triton.txt" scripts/py-venv.sh
MLOPS_VENV="$REPO/.venv-kserve" MLOPS_VENV_REQUIREMENTS="$REPO/tests/oip/requirements-kserve.txt" scripts/py-venv.sh
(cd tests/oip && MLOPS_BIN="$CARGO_TARGET_DIR/debug/mlops" "$REPO/.venv-triton/bin/python" -m pytest -q -p no:cacheprovider test_tritonclient_grpc.py test_tritonclient_http.py)
(cd tests/oip && MLOPS_BIN="$CARGO_TARGET_DIR/debug/mlops" "$REPO/.venv-kserve/bin/python" -m pytest -q -p no:cacheprovider test_kserve_client.py)

log "Python tests (Feast's own gRPC stubs against mlops up's feature store)"
MLOPS_VENV="$REPO/.venv-feast" MLOPS_VENV_REQUIREMENTS="$REPO/tests/feast/requirements-feast.txt" scripts/py-venv.sh
(cd tests/feast && MLOPS_BIN="$CARGO_TARGET_DIR/debug/mlops" "$REPO/.venv-feast/bin/python" -m pytest -q -p no:cacheprovider .)

drop_test_databases "$MLOPS_TEST_POSTGRES_URL"
log "make test passed in $(( $(date +%s) - START )) s"
