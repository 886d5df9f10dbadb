#!/usr/bin/env bash
# The closed loop on a running platform (`make demo` calls it after scripts/demo.sh's part):
#
#   features applied -> a retraining policy -> the first model, trained by the Python
#   trainer (examples/python/retrain_trainer.py) and promoted -> deployed -> the world
#   changes -> a monitor on the labels sees the drift (`mlops monitor push`), whose
#   DriftDetected event starts a retrain -> gate -> canary under traffic -> promotion ->
#   the deployment's answers are the new world's -> `mlops retrain status`.
#
# Needs: MLOPS (the mlops binary), DATA_DIR (the platform's --data-dir: the feature store's
# offline store is DATA_DIR/features), INFERENCE_HTTP (host:port of the Open Inference
# Protocol's HTTP endpoint), the MLOPS_*_ADDR variables of the CLI, and the venv (.venv).
# UP_LOG (optional): the platform's log, whose end is shown when a step fails.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
: "${MLOPS:?MLOPS: the mlops binary}" "${DATA_DIR:?DATA_DIR: the platform data directory}"
: "${INFERENCE_HTTP:?INFERENCE_HTTP: host:port of the inference HTTP endpoint}"
PY="$REPO/.venv/bin/python"
MODEL=houses
WORK=$(mktemp -d)
LOAD=""
stop_load() {
  if [ -n "$LOAD" ]; then
    kill "$LOAD" 2>/dev/null || true
    wait "$LOAD" 2>/dev/null || true
    LOAD=""
  fi
}
cleanup() {
  local rc=$?
  stop_load
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
failed() {
  echo "demo-loop: $*" >&2
  [ -n "${UP_LOG:-}" ] && tail -n 30 "$UP_LOG" >&2
  exit 1
}
START=$(date +%s)
N=0
step() {
  N=$((N + 1))
  printf '\n\033[1m==> [%d, %ds] %s\033[0m\n' "$N" $(($(date +%s) - START)) "$*"
}

# The Python side: the worlds' tables, a request, a load of requests, a retrain followed.
cat >"$WORK/loop.py" <<'EOF'
import json, subprocess, sys, time, urllib.request
from datetime import datetime, timezone
from pathlib import Path

HOUSES = 200
WORLDS = [  # what a house's price (y) is, from its two features
    ("y = a + b + 1", lambda a, b: a + b + 1.0),
    ("y = 2a - 3b + 1", lambda a, b: 2.0 * a - 3.0 * b + 1.0),
]
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def features(i):
    return ((i * 37) % 101) / 10.0, ((i * 53) % 89) / 10.0


def world(root, n):
    """The feature source and the labelled entity tables (even houses train, odd ones
    evaluate) on the offline store; the labels alone for the monitor."""
    import pyarrow as pa, pyarrow.parquet as pq
    root = Path(root)
    (root / "entities").mkdir(parents=True, exist_ok=True)
    t1, t2 = (datetime(2024, 1, 1, h, tzinfo=timezone.utc) for h in (1, 2))
    ids = list(range(HOUSES))
    ts = lambda n: pa.array([t1] * n, pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"house_id": pa.array(ids, pa.int64()), "event_timestamp": ts(len(ids)),
                             "a": [features(i)[0] for i in ids], "b": [features(i)[1] for i in ids]}),
                   root / "houses.parquet")
    name, f = WORLDS[int(n)]
    for file, parity in (("train", 0), ("eval", 1)):
        part = [i for i in ids if i % 2 == parity]
        y = [f(*features(i)) for i in part]
        pq.write_table(pa.table({"house_id": pa.array(part, pa.int64()),
                                 "event_timestamp": pa.array([t2] * len(part), pa.timestamp("us", tz="UTC")),
                                 "y": y}), root / "entities" / f"{file}.parquet")
        pq.write_table(pa.table({"y": y}), root / f"labels-{file}.parquet")
    print(f"wrote {len(ids)} houses (features a, b) and their labels, {name}, under {root}")


def infer(addr, model, i):
    a, b = features(int(i))
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [a, b]}]})
    req = urllib.request.Request(f"http://{addr}/v2/models/{model}/infer", data=body.encode(),
                                 headers={"content-type": "application/json"})
    with HTTP.open(req, timeout=5) as r:
        ans = json.load(r)
    return a, b, ans["outputs"][0]["data"][0], ans.get("model_version", "?")


def show(addr, model, i):
    a, b, y, v = infer(addr, model, i)
    print(f"house {i}: a={a:g} b={b:g} -> {model} v{v} answers y={y:.3f}"
          f"   ({'; '.join(f'{n}: {f(a, b):g}' for n, f in WORLDS)})")


def load(addr, model):
    i = 0
    while True:
        try:
            infer(addr, model, i % HOUSES)
        except Exception:
            time.sleep(0.05)
        i += 1
        time.sleep(0.005)


def follow(mlops, model, id_file, timeout=120):
    """Waits for the drift's retrain of `model`, then prints its transitions as they come;
    writes its id to `id_file`."""
    cli = lambda *a: json.loads(subprocess.run([mlops, "--json", "retrain", *a], check=True,
                                               capture_output=True, text=True).stdout)
    deadline = time.monotonic() + timeout
    r = None
    while r is None:
        r = next((r for r in cli("status", model) if r["trigger"] == "drift"), None)
        if r is None:
            if time.monotonic() > deadline:
                sys.exit("no retrain was triggered by the drift")
            time.sleep(0.2)
    print(f"retrain {r['id']} triggered by drift: {r['trigger_detail']}", flush=True)
    Path(id_file).write_text(r["id"])
    shown = 0
    while True:
        for t in r["transitions"][shown:]:
            print(f"  {datetime.fromtimestamp(t['time'] / 1000):%H:%M:%S.%f}"[:-3] + f"  {t['state']:<11} {t['reason']}",
                  flush=True)
        shown = len(r["transitions"])
        if r["state"] in ("PROMOTED", "GATE_FAILED", "ROLLED_BACK", "FAILED"):
            return 0 if r["state"] == "PROMOTED" else 3
        if time.monotonic() > deadline:
            sys.exit(f"retrain {r['id']} still {r['state']} after {timeout} s")
        time.sleep(0.3)
        r = cli("show", r["id"])


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    sys.exit({"world": world, "show": show, "load": load, "follow": follow}[cmd](*args))
EOF
py() { "$PY" "$WORK/loop.py" "$@"; }

step "the feature store: the houses' features, and the labels of today's world"
py world "$DATA_DIR/features" 0
"$MLOPS" features apply -f "$REPO/examples/retraining/features.yaml"

step "a retraining policy for $MODEL: the Python trainer, the data, the gate, retrain on drift, a fast canary"
"$MLOPS" retrain policy set "$MODEL" \
  --trainer "$PY" --trainer "$REPO/examples/python/retrain_trainer.py" \
  --feature house:a --feature house:b --label y \
  --train-entities entities/train.parquet --eval-entities entities/eval.parquet \
  --gate 'rmse<=0.5,worse=0.0' --on-drift \
  --canary-weight 50 --analysis-interval-ms 300 --min-requests 3 --max-error-rate 0.05 \
  --consecutive-error-limit 3 --successes-to-promote 3 --canary-timeout 60

step "the first model: a manual retrain; no champion and no deployment, so the gated candidate is promoted at once"
"$MLOPS" retrain run "$MODEL" --reason "the first model" --wait || failed "the first retrain was not promoted"
cat "$DATA_DIR"/retraining/*/trainer-1.log

step "deployed, following the champion alias"
"$MLOPS" serve deploy "$MODEL" --alias champion
ok=""
for _ in $(seq 50); do py show "$INFERENCE_HTTP" "$MODEL" 3 2>/dev/null && { ok=1; break; }; sleep 0.2; done
[ -n "$ok" ] || failed "the deployment of $MODEL does not answer"

step "a monitor on the labels (target drift), with today's as its reference"
"$MLOPS" monitor create "$MODEL-labels" --model "$MODEL" --column y:numerical --cooldown 3600
"$MLOPS" monitor reference "$MODEL-labels" "$DATA_DIR/features/labels-train.parquet"

step "the world changes: the same houses, new prices"
py world "$DATA_DIR/features" 1
"$PY" "$WORK/loop.py" load "$INFERENCE_HTTP" "$MODEL" &
LOAD=$!
echo "(requests to $MODEL in the background, pid $LOAD: the canary's analysis needs traffic)"

step "monitoring sees the drift: the new labels against the reference (exit 3: the dataset drifted)"
code=0
"$MLOPS" monitor push "$MODEL-labels" "$DATA_DIR/features/labels-eval.parquet" || code=$?
[ "$code" -eq 3 ] || failed "mlops monitor push exited $code, expected 3 (drift)"

step "DriftDetected starts a retrain: train, register, evaluate against the champion, gate, canary, promote"
py follow "$MLOPS" "$MODEL" "$WORK/retrain-id" || failed "the drift's retrain was not promoted"
stop_load
cat "$DATA_DIR/retraining/$(cat "$WORK/retrain-id")/trainer-1.log"

step "the deployment answers with the new champion"
out=""
for _ in $(seq 50); do
  out=$(py show "$INFERENCE_HTTP" "$MODEL" 3 2>&1) && [[ $out != *" v1 "* ]] && break
  sleep 0.2
done
echo "$out"
"$MLOPS" --json models alias get "$MODEL" champion |
  python3 -c 'import json,sys; v=json.load(sys.stdin); print("the champion alias of %s names version %s (run %s)" % (v["name"], v["version"], v["run_id"]))'

step "mlops retrain status $MODEL"
"$MLOPS" retrain status "$MODEL"
echo
echo "closed loop shown in $(($(date +%s) - START)) s"
