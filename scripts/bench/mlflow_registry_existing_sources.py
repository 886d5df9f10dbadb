#!/usr/bin/env python3
"""`../shared/bench/peers/mlflow_registry.py`'s workload, call for call, with one change:
each version's source exists. The peers' script registers `<run artifact dir>/model-NNNN`
without ever writing it; MLflow's server records any URI, while our registry copies the
files and refuses a source that does not exist (a version is never half created). So here
the 100 tiny artifacts are logged first, untimed, and the timed calls are the same:

  (a) 100 x create_model_version(name, source=<run artifact dir>/model-NNNN, run_id,
      await_creation_for=0)
  (b) set_registered_model_alias(name, "champion", v) for v = 1..100
  (c) 200 x get_model_version_by_alias(name, "champion")

Run it against any MLflow-REST server (ours or MLflow's) with the peers' venv:

    python scripts/bench/mlflow_registry_existing_sources.py --url http://127.0.0.1:5000

Prints one JSON line shaped like the peers' (`bench: mlflow_registry`), so
`summarize.py` sets the two servers side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")


def lat(samples):
    import numpy as np

    a = np.asarray(samples) * 1000.0
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--versions", type=int, default=100)
    ap.add_argument("--alias-reads", type=int, default=200)
    args = ap.parse_args()

    import mlflow
    from mlflow import MlflowClient

    sfx = f"-{os.getpid()}-{int(time.time())}"
    client = MlflowClient(tracking_uri=args.url, registry_uri=args.url)
    client.search_experiments(max_results=1)
    exp_id = client.create_experiment("bench-registry-existing" + sfx)
    run = client.create_run(exp_id, start_time=1_700_000_000_000, run_name="model-source-run")
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.versions):
            sub = os.path.join(d, f"model-{i:04d}")
            os.makedirs(sub)
            with open(os.path.join(sub, "model.bin"), "wb") as f:
                f.write(b"x" * 64)
        client.log_artifacts(run.info.run_id, d)
    art = client.get_run(run.info.run_id).info.artifact_uri.rstrip("/")
    client.set_terminated(run.info.run_id, end_time=1_700_000_000_001)
    model = "bench-model" + sfx
    client.create_registered_model(model, description="bench")

    result = {"bench": "mlflow_registry", "versions": {"mlflow": mlflow.__version__},
              "workload": {"model_versions": args.versions, "alias": "champion", "alias_reads": args.alias_reads,
                           "sources": "exist (logged before timing)", "server": args.url}}
    la = []
    t0 = time.perf_counter()
    for i in range(args.versions):
        ts = time.perf_counter()
        mv = client.create_model_version(model, source=f"{art}/model-{i:04d}", run_id=run.info.run_id,
                                         await_creation_for=0)
        la.append(time.perf_counter() - ts)
        assert int(mv.version) == i + 1, mv.version
    ta = time.perf_counter() - t0
    result["a_create_model_version"] = {"ops": args.versions, "seconds": ta, "ops_per_s": args.versions / ta,
                                        "latency": lat(la)}
    lb = []
    t0 = time.perf_counter()
    for v in range(1, args.versions + 1):
        ts = time.perf_counter()
        client.set_registered_model_alias(model, "champion", str(v))
        lb.append(time.perf_counter() - ts)
    tb = time.perf_counter() - t0
    result["b_set_alias"] = {"ops": args.versions, "seconds": tb, "ops_per_s": args.versions / tb, "latency": lat(lb)}
    lc = []
    got = None
    for _ in range(args.alias_reads):
        ts = time.perf_counter()
        got = int(client.get_model_version_by_alias(model, "champion").version)
        lc.append(time.perf_counter() - ts)
    result["c_get_by_alias"] = {"calls": args.alias_reads, "resolved_version": got,
                                "expected_version": args.versions, "latency": lat(lc)}
    result["combined_write_ops_per_s"] = 2 * args.versions / (ta + tb)
    result["ok"] = got == args.versions
    sys.__stdout__.write(json.dumps(result) + "\n")
    sys.__stdout__.flush()


if __name__ == "__main__":
    # MLflow's client prints links to runs on stdout: keep stdout for the JSON line.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        main()
    finally:
        sys.stdout = real_stdout
