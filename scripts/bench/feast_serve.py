#!/usr/bin/env python3
"""Feast's own feature server (`feast serve`), measured on the peers' Feast online workload.

Run (from anywhere; needs the Feast venv, see below):

    /tmp/feast-venv/bin/python scripts/bench/feast_serve.py            # defaults
    /tmp/feast-venv/bin/python scripts/bench/feast_serve.py --help

Venv: python3 -m venv /tmp/feast-venv && /tmp/feast-venv/bin/pip install feast==0.67.0
      pandas==2.3.3 pyarrow==25.0.1 numpy==2.4.6 grpcio==1.85.3 grpcio-health-checking==1.85.1
(grpcio-health-checking is only needed for the gRPC server, `feast listen`).

Workload (the online part of ../shared/bench/peers/feast_online.py, whose code is imported and
reused: make_feature_df, FEATURE_STORE_YAML, DEFINITIONS_PY, DATA_START, TTL, FIRST_ID, SEED):
  * E=10,000 drivers (driver_id 1000..10999, int64), F=10 float32 features f0..f9, one row per
    driver per hour for 7 days, rng = numpy.default_rng(42); entity `driver` (join key driver_id),
    FeatureView `driver_stats` (ttl 1 day), provider local, file offline store, SQLite online store;
    store.apply(...) then store.materialize(DATA_START - 1h, DATA_END + 1h) -> SQLite holds the
    latest row of every driver.
  * The repo lives in $PEERS_ROOT/feast_serve_repo (default /tmp/peers/feast_serve_repo), NOT in
    feast_online.py's /tmp/peers/feast_repo, so neither script clobbers the other; it is reused when
    its workload.json matches the arguments and the online store exists (--rebuild forces a rebuild).
  * Entity ids per request: drawn exactly as feast_online.py draws them (same rng, continued after
    the feature data: n-calls lists of 1 id, then lists of 100 ids, uniform with replacement over
    the known ids). With the defaults here (200 x 1, 100 x 100) the 100-entity lists are the first
    100 of feast_online.py's 200. The same id lists are sent to the HTTP and the gRPC server.
  * Server: `feast -c REPO serve -h 127.0.0.1 -p PORT --no-access-log` (Feast's defaults otherwise:
    gunicorn, 1 uvicorn worker, registry_ttl_sec 60, max_requests 1000) as a subprocess on a free
    port; the script waits for GET /health and a first good answer.
  * Client: one thread, one keep-alive http.client connection. Per size: 1 warm-up request (the
    first id list, as feast_online.py does), then N timed `POST /get-online-features` with
    {"features": ["driver_stats:f0".."driver_stats:f9"], "entities": {"driver_id": [...]}}.
    Timed: from sending the request to having read the whole response body; JSON decoding and the
    value check are not timed. Every answer is checked: statuses PRESENT and f0..f9 equal (1e-6) to
    the parquet's last row of each driver.
  * gRPC: `feast serve --type grpc` is tried; in Feast 0.67 it is rejected ("Python server only
    supports 'http'"), which is recorded under "grpc_serve_type_grpc". Feast's only gRPC server that
    answers GetOnlineFeatures is `feast listen` (feast.infra.contrib.grpc_server.GrpcFeatureServer,
    service /GrpcFeatureServer/GetOnlineFeatures, registry_ttl_sec 5 by default); it is measured the
    same way (one channel, unary calls, timed around the stub call, which includes proto decoding)
    and reported under "grpc" (null with --no-grpc or if grpc_health is missing).
  * Both client and server run on this machine; latency includes the Python client's own cost.

Output: exactly one JSON line on stdout
  {"bench": "feast_serve", "versions": {...}, "env": {...}, "workload": {...},
   "http": {"entities_1": {"p50_ms", "p99_ms", "n", ...}, "entities_100": {...}, "startup_s": ..},
   "grpc": {...} | null, "grpc_serve_type_grpc": "...", "ok": true}
Everything else goes to stderr. Servers are stopped at the end and on error / SIGINT / SIGTERM.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from datetime import timedelta

PEERS_DIR = os.environ.get("FEAST_PEERS_DIR", "/work/shared/bench/peers")
sys.path.insert(0, PEERS_DIR)
# _common redirects sys.stdout to stderr; emit() writes the one result line to the real stdout.
from _common import PEERS_ROOT, SEED, emit, env_info, lat_summary, log, versions  # noqa: E402
import feast_online as fo  # noqa: E402

REPO = f"{PEERS_ROOT}/feast_serve_repo"
FEAST_BIN = os.path.join(os.path.dirname(sys.executable), "feast")
_procs: list = []


# ------------------------------------------------------------------ setup (reuses feast_online.py)

def build_repo(args, rng):
    """Same data, definitions and materialization as feast_online.main() (online part).
    Returns the feature frame (needed for the value check); consumes rng exactly as feast_online."""
    import numpy as np  # noqa: F401
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32, Int64

    E, F = args.entities, args.features
    feat_df = fo.make_feature_df(E, F, args.days, rng)
    marker = f"{REPO}/workload.json"
    want = {"entities": E, "features": F, "days": args.days, "seed": args.seed, "feast": versions("feast")["feast"]}
    online_db = f"{REPO}/data/online_store.db"
    if not args.rebuild and os.path.exists(online_db) and os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == want:
                log(f"reusing materialized repo {REPO}")
                return feat_df, {"reused": True}
    shutil.rmtree(REPO, ignore_errors=True)
    os.makedirs(f"{REPO}/data", exist_ok=True)
    parquet = f"{REPO}/data/features.parquet"
    feat_df.to_parquet(parquet, index=False)
    with open(f"{REPO}/feature_store.yaml", "w") as f:
        f.write(fo.FEATURE_STORE_YAML.format(repo=REPO))
    with open(f"{REPO}/definitions.py", "w") as f:
        f.write(fo.DEFINITIONS_PY.format(parquet=parquet, ttl_s=int(fo.TTL.total_seconds()), F=F))
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    source = FileSource(name="driver_stats_source", path=parquet, timestamp_field="event_timestamp",
                        created_timestamp_column="created")
    fv = FeatureView(name="driver_stats", entities=[driver], ttl=fo.TTL,
                     schema=[Field(name="driver_id", dtype=Int64)] + [Field(name=f"f{i}", dtype=Float32) for i in range(F)],
                     online=True, source=source)
    store = FeatureStore(repo_path=REPO)
    t0 = time.perf_counter()
    store.apply([driver, source, fv])
    t_apply = time.perf_counter() - t0
    data_end = fo.DATA_START + timedelta(days=args.days)
    t0 = time.perf_counter()
    store.materialize(start_date=fo.DATA_START - timedelta(hours=1), end_date=data_end + timedelta(hours=1))
    t_mat = time.perf_counter() - t0
    log(f"built {REPO}: apply {t_apply:.2f}s, materialize {t_mat:.2f}s")
    with open(marker, "w") as f:
        json.dump(want, f)
    return feat_df, {"reused": False, "apply_s": round(t_apply, 3), "materialize_s": round(t_mat, 3)}


# ------------------------------------------------------------------ server processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, logname):
    logf = open(f"{PEERS_ROOT}/{logname}", "w")
    log("starting:", " ".join(cmd))
    env = dict(os.environ, FEAST_USAGE="False", FEAST_TELEMETRY="False")
    p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    p._logf = logf  # type: ignore[attr-defined]
    p._logpath = logf.name  # type: ignore[attr-defined]
    _procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(p.pid, sig)  # gunicorn forks workers: signal the whole (own) session
            except ProcessLookupError:
                break
            try:
                p.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    p._logf.close()
    if p in _procs:
        _procs.remove(p)


def stop_all(*_):
    for p in list(_procs):
        stop(p)


def on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


def log_tail(p, n=15):
    try:
        with open(p._logpath) as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ------------------------------------------------------------------ checks

def check(ids, names, cols, statuses, last, F):
    """names: feature names in answer order; cols: list of value lists; statuses: list of lists.
    Returns number of problems (missing / not PRESENT / wrong value)."""
    bad = 0
    for j in range(F):
        k = names.index(f"f{j}")
        vals, st = cols[k], statuses[k]
        if len(vals) != len(ids):
            return len(ids) * F
        for r, d in enumerate(ids):
            v = vals[r]
            if v is None or st[r] not in ("PRESENT", 1) or abs(float(v) - float(last[d][j])) > 1e-6:
                bad += 1
    return bad


# ------------------------------------------------------------------ HTTP

def measure_http(args, draws, last, refs):
    port = free_port()
    p = start([FEAST_BIN, "-c", REPO, "serve", "-h", "127.0.0.1", "-p", str(port), "--no-access-log"],
              "feast-serve-http.log")
    try:
        t0 = time.perf_counter()
        deadline = time.time() + args.startup_timeout
        conn = None
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"feast serve exited rc={p.returncode}:\n{log_tail(p)}")
            if time.time() > deadline:
                raise RuntimeError(f"feast serve did not answer in {args.startup_timeout}s:\n{log_tail(p)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/health")
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    break
                conn.close()
            except OSError:
                if conn is not None:
                    conn.close()
            time.sleep(0.2)
        startup_s = time.perf_counter() - t0
        log(f"feast serve (http) up on :{port} after {startup_s:.2f}s (pid {p.pid})")
        headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

        def call(ids):
            body = json.dumps({"features": refs, "entities": {"driver_id": ids}})
            t = time.perf_counter()
            conn.request("POST", "/get-online-features", body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            d = time.perf_counter() - t
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {data[:500]!r}")
            return d, data

        out, problems = {"startup_s": round(startup_s, 3)}, 0
        for n_ent, ds in draws.items():
            call(ds[0])  # warm-up
            lat = []
            for ids in ds:
                d, data = call(ids)
                lat.append(d)
                js = json.loads(data)
                names = js["metadata"]["feature_names"]
                res = js["results"]
                problems += check(ids, names, [x["values"] for x in res], [x["statuses"] for x in res],
                                  last, args.features)
            out[f"entities_{n_ent}"] = lat_summary(lat)
            log(f"http  {n_ent:>3} entities: p50 {out[f'entities_{n_ent}']['p50_ms']:.3f} ms, "
                f"p99 {out[f'entities_{n_ent}']['p99_ms']:.3f} ms (n={len(lat)})")
        conn.close()
        out["bad_values"] = problems
        return out
    finally:
        stop(p)


def probe_serve_type_grpc(args):
    """Does `feast serve --type grpc` start a server? Returns a short description."""
    port = free_port()
    p = start([FEAST_BIN, "-c", REPO, "serve", "-h", "127.0.0.1", "-p", str(port), "--type", "grpc"],
              "feast-serve-type-grpc.log")
    try:
        deadline = time.time() + args.startup_timeout
        while time.time() < deadline:
            if p.poll() is not None:
                lines = [ln.strip() for ln in log_tail(p, 40).splitlines() if ln.strip()]
                msg = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "")
                return f"rejected (exit {p.returncode}): {msg}"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return "listening (not measured)"
            time.sleep(0.2)
        return "no answer within startup timeout"
    finally:
        stop(p)


# ------------------------------------------------------------------ gRPC (feast listen)

def measure_grpc(args, draws, last, refs):
    import grpc
    from feast.protos.feast.serving.GrpcServer_pb2_grpc import GrpcFeatureServerStub
    from feast.protos.feast.serving.ServingService_pb2 import FeatureList, FieldStatus, GetOnlineFeaturesRequest
    from feast.protos.feast.types.Value_pb2 import RepeatedValue, Value

    port = free_port()
    p = start([FEAST_BIN, "-c", REPO, "listen", "-a", f"127.0.0.1:{port}"], "feast-listen-grpc.log")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = GrpcFeatureServerStub(channel)

        def req(ids):
            return GetOnlineFeaturesRequest(
                features=FeatureList(val=refs),
                entities={"driver_id": RepeatedValue(val=[Value(int64_val=i) for i in ids])})

        t0 = time.perf_counter()
        deadline = time.time() + args.startup_timeout
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"feast listen exited rc={p.returncode}:\n{log_tail(p)}")
            if time.time() > deadline:
                raise RuntimeError(f"feast listen did not answer in {args.startup_timeout}s:\n{log_tail(p)}")
            try:
                stub.GetOnlineFeatures(req([fo.FIRST_ID]), timeout=5)
                break
            except grpc.RpcError:
                time.sleep(0.2)
        startup_s = time.perf_counter() - t0
        log(f"feast listen (grpc) up on :{port} after {startup_s:.2f}s (pid {p.pid})")
        present = FieldStatus.Value("PRESENT")
        out, problems = {"server": "feast listen (feast.infra.contrib.grpc_server.GrpcFeatureServer)",
                         "startup_s": round(startup_s, 3)}, 0
        for n_ent, ds in draws.items():
            stub.GetOnlineFeatures(req(ds[0]), timeout=30)  # warm-up
            lat = []
            for ids in ds:
                r_ = req(ids)
                t = time.perf_counter()
                resp = stub.GetOnlineFeatures(r_, timeout=30)
                lat.append(time.perf_counter() - t)
                names = list(resp.metadata.feature_names.val)
                cols = [[getattr(v, v.WhichOneof("val")) if v.WhichOneof("val") not in (None, "null_val") else None
                         for v in fv.values] for fv in resp.results]
                sts = [[1 if s == present else 0 for s in fv.statuses] for fv in resp.results]
                problems += check(ids, names, cols, sts, last, args.features)
            out[f"entities_{n_ent}"] = lat_summary(lat)
            log(f"grpc  {n_ent:>3} entities: p50 {out[f'entities_{n_ent}']['p50_ms']:.3f} ms, "
                f"p99 {out[f'entities_{n_ent}']['p99_ms']:.3f} ms (n={len(lat)})")
        out["bad_values"] = problems
        return out
    finally:
        channel.close()
        stop(p)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls-1", type=int, default=200, help="timed requests with 1 entity (default 200)")
    ap.add_argument("--calls-100", type=int, default=100, help="timed requests with 100 entities (default 100)")
    ap.add_argument("--entities", type=int, default=10000, help="E (default 10000)")
    ap.add_argument("--features", type=int, default=10, help="F (default 10)")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--rebuild", action="store_true", help="rebuild and re-materialize the repo even if reusable")
    ap.add_argument("--no-grpc", action="store_true", help="skip the gRPC server (feast listen)")
    ap.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for a server")
    args = ap.parse_args()

    os.environ.setdefault("FEAST_USAGE", "False")
    os.environ.setdefault("FEAST_TELEMETRY", "False")
    warnings.filterwarnings("ignore")
    import numpy as np

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    os.makedirs(PEERS_ROOT, exist_ok=True)
    env = env_info()
    E, F = args.entities, args.features
    rng = np.random.default_rng(args.seed)
    feat_df, setup = build_repo(args, rng)
    lastdf = feat_df[feat_df["event_timestamp"] == feat_df["event_timestamp"].max()].set_index("driver_id")
    cols = [f"f{i}" for i in range(F)]
    last = dict(zip(lastdf.index.tolist(), lastdf[cols].to_numpy(dtype=np.float64).tolist()))
    del feat_df, lastdf
    # same draw procedure and rng stream as feast_online.py's online loop
    draws = {n: [rng.integers(fo.FIRST_ID, fo.FIRST_ID + E, size=n).tolist() for _ in range(calls)]
             for n, calls in ((1, args.calls_1), (100, args.calls_100))}
    refs = [f"driver_stats:f{i}" for i in range(F)]
    if args.calls_1 + args.calls_100 + 4 > 950:
        log("warning: more than ~950 requests; Feast's default gunicorn max_requests (1000 + jitter) "
            "will restart the worker during the run")

    try:
        http_res = measure_http(args, draws, last, refs)
        grpc_probe = probe_serve_type_grpc(args)
        log(f"feast serve --type grpc: {grpc_probe}")
        grpc_res = None
        if not args.no_grpc:
            try:
                import grpc_health  # noqa: F401  (feast listen needs it)
                grpc_res = measure_grpc(args, draws, last, refs)
            except ImportError as e:
                log(f"gRPC skipped: {e}")
    finally:
        stop_all()

    ok = http_res["bad_values"] == 0 and (grpc_res is None or grpc_res["bad_values"] == 0)
    emit({"bench": "feast_serve",
          "versions": versions("feast", "pandas", "pyarrow", "numpy", "grpc", "fastapi", "uvicorn", "gunicorn"),
          "env": env,
          "workload": {"entities": E, "features": F, "days": args.days, "seed": args.seed,
                       "calls_1": args.calls_1, "calls_100": args.calls_100, "warmup_calls": 1,
                       "feature_view": "driver_stats", "online_store": "sqlite", "repo": REPO,
                       "setup": setup, "client": "1 thread, keep-alive http.client / 1 grpc channel",
                       "timed": "request sent -> full response read (HTTP: JSON decode not timed)",
                       "http_server": "feast serve --no-access-log (gunicorn, 1 uvicorn worker)"},
          "http": http_res,
          "grpc": grpc_res,
          "grpc_serve_type_grpc": grpc_probe,
          "ok": bool(ok)})
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
