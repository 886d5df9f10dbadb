#!/usr/bin/env bash
# `make bench`: release-build benchmarks; figures on stdout, JSON lines in
# $CARGO_TARGET_DIR/bench/ours-<backend>.jsonl (compare: ../shared/bench/peers/summarize.py).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
source scripts/lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
ensure_postgres
export MLOPS_TEST_POSTGRES_URL=${MLOPS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
export MLOPS_BENCH_DIR=${MLOPS_BENCH_DIR:-$CARGO_TARGET_DIR/bench}
mkdir -p "$MLOPS_BENCH_DIR"
RUST_LOG=${RUST_LOG:-warn} cargo bench --locked -p mlops-tests --bench tracking
RUST_LOG=${RUST_LOG:-warn} cargo bench --locked -p mlops-tests --bench registry
# The feature store's training join, on feast_online.py's workload (its files, when
# $PEERS_ROOT/feast_pit holds them: then compared with its reference row by row).
RUST_LOG=${RUST_LOG:-warn} cargo bench --locked -p mlops-tests --bench feature_store
# Data drift on evidently_drift.py's workload (its files and per-column results, when
# $PEERS_ROOT/drift holds them: then compared column by column), and a 500-column one.
RUST_LOG=${RUST_LOG:-warn} cargo bench --locked -p mlops-tests --bench monitoring
# The closed loop: the platform's own time from a drift to the canary, and to the promotion.
RUST_LOG=${RUST_LOG:-warn} cargo bench --locked -p mlops-tests --bench retraining
# Inference: in-process (no gRPC) per model, the JSON line onnx_serving.py writes, then gRPC.
RUST_LOG=${RUST_LOG:-warn} cargo bench --locked -p mlops-model --bench onnx_serving >"$MLOPS_BENCH_DIR/ours-onnx.jsonl"
cat "$MLOPS_BENCH_DIR/ours-onnx.jsonl"
# The same with RUST_BACKTRACE=1: the figures must not move (no error values on the hot path).
RUST_BACKTRACE=1 RUST_LOG=${RUST_LOG:-warn} cargo bench --locked -p mlops-model --bench onnx_serving >"$MLOPS_BENCH_DIR/ours-onnx-backtrace.jsonl"
echo "with RUST_BACKTRACE=1:"
cat "$MLOPS_BENCH_DIR/ours-onnx-backtrace.jsonl"
# gRPC, then deployments; the alias-move figure on Kafka needs a broker: tansu, as the tests run it.
ensure_tansu
trap stop_tansu EXIT
start_tansu
MLOPS_TEST_KAFKA_BROKERS=$TANSU_BROKERS MLOPS_TEST_KAFKA_PID=$TANSU_PID RUST_LOG=${RUST_LOG:-warn} cargo bench --locked -p mlops-tests --bench inference
# The bus's own CPU per published event, in-process and on the broker (why the prediction
# log publishes several predictions to an event).
MLOPS_TEST_KAFKA_BROKERS=$TANSU_BROKERS RUST_LOG=${RUST_LOG:-warn} cargo bench --locked -p mlops-events --bench publish
drop_test_databases "$MLOPS_TEST_POSTGRES_URL"
echo "compare with MLflow (run ../shared/bench/peers/run_all.sh mlflow_tracking mlflow_registry first):"
echo "  python3 ../shared/bench/peers/summarize.py /tmp/peers/results.jsonl $MLOPS_BENCH_DIR/ours-sqlite.jsonl $MLOPS_BENCH_DIR/ours-postgres.jsonl --names mlflow,mlops-sqlite,mlops-postgres"
echo "  python3 ../shared/bench/peers/summarize.py /tmp/peers/results.jsonl $MLOPS_BENCH_DIR/ours-onnx.jsonl --names onnxruntime,mlops  (run_all.sh onnx_serving first)"
echo "  python3 ../shared/bench/peers/summarize.py /tmp/peers/results.jsonl $MLOPS_BENCH_DIR/ours-feature-store.jsonl --names feast,mlops  (run_all.sh feast_online first)"
echo "  python3 ../shared/bench/peers/summarize.py /tmp/peers/results.jsonl $MLOPS_BENCH_DIR/ours-monitoring.jsonl --names evidently,mlops  (run_all.sh evidently_drift first)"
echo "  python3 ../shared/bench/peers/summarize.py /tmp/peers/results.jsonl $MLOPS_BENCH_DIR/ours-registry-sqlite.jsonl $MLOPS_BENCH_DIR/ours-registry-postgres.jsonl --names mlflow,mlops-sqlite,mlops-postgres"
