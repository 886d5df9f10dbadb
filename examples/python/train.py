#!/usr/bin/env python3
"""An example training pipeline that logs everything to the MLOps tracking service over gRPC.

    python examples/python/train.py --target 127.0.0.1:50051 [--experiment NAME] [--run-name NAME]

What it does, in order:

1. Loads scikit-learn's breast cancer data set (it ships inside scikit-learn: no download)
   and splits it into a training and an evaluation set.
2. Gets the experiment by name, or creates it when it does not exist.
3. Creates a parent run with a heartbeat lease, logs the two data sets it uses (LogInputs)
   and its params (LogBatch).
4. Trains a model (SGDClassifier with log loss, or an MLPClassifier) epoch by epoch with
   `partial_fit` on standardized data, logging train_loss, val_accuracy and val_auc after
   every epoch (LogBatch, step = epoch), and renewing the lease every few epochs (Heartbeat).
5. Trains a second model (a random forest) in a child run nested under the parent.
6. Uploads the pickled models (`model/model.pkl`, client-streaming UploadArtifact in
   64 KiB chunks) and a `metrics.json`, and checks them with ListArtifacts.
7. Marks both runs FINISHED and searches the experiment for good runs of this model type.

On a gRPC error it prints the status code and details, marks its runs FAILED and exits 1.
`--json` prints a machine-readable summary on stdout (progress goes to stderr);
`--dry-run` trains and prints every request it would send, without a server.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import itertools
import json
import os
import pickle
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import grpc
import numpy as np
import sklearn
from google.protobuf import text_format
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mlops_client  # noqa: E402  (generates the stubs from proto/ on first use)
from mlops_client import tracking_pb2 as pb  # noqa: E402

CHUNK_SIZE = 64 * 1024
HEARTBEAT_EVERY = 5  # epochs
LEASE_SECONDS = 60
CALL_TIMEOUT = 30.0  # seconds, per call
DATASET_NAME = "breast_cancer"


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- data


def dataset_digest(X: np.ndarray, y: np.ndarray) -> str:
    """The first 8 hex characters of the sha256 of the features' and labels' bytes."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(X).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()[:8]


def dataset_input(
    X: np.ndarray,
    y: np.ndarray,
    feature_names: List[str],
    context: str,
    source: dict,
) -> pb.DatasetInput:
    # The schema in MLflow's column-spec format, so MLflow tools can read it too.
    schema = {
        "mlflow_colspec": [{"type": "double", "name": n, "required": True} for n in feature_names]
        + [{"type": "long", "name": "target", "required": True}]
    }
    classes, counts = np.unique(y, return_counts=True)
    profile = {
        "num_rows": int(X.shape[0]),
        "num_features": int(X.shape[1]),
        "class_counts": {str(int(c)): int(n) for c, n in zip(classes, counts)},
    }
    return pb.DatasetInput(
        dataset=pb.Dataset(
            name=DATASET_NAME,
            digest=dataset_digest(X, y),
            source_type="code",
            source=json.dumps(source, sort_keys=True),
            schema=json.dumps(schema),
            profile=json.dumps(profile, sort_keys=True),
        ),
        context=context,
    )


# --------------------------------------------------------------------------- models


def make_classifier(kind: str, seed: int):
    """The epoch-trained model and its hyperparameters."""
    if kind == "sgd":
        hp = {
            "loss": "log_loss",
            "penalty": "l2",
            "alpha": 0.001,
            "learning_rate": "invscaling",
            "eta0": 0.05,
            "power_t": 0.25,
        }
        return SGDClassifier(random_state=seed, **hp), hp
    if kind == "mlp":
        hp = {
            "hidden_layer_sizes": (32,),
            "activation": "relu",
            "solver": "adam",
            "alpha": 0.001,
            "learning_rate_init": 0.001,
        }
        return MLPClassifier(random_state=seed, **hp), hp
    raise ValueError(f"unknown model {kind!r}")


def train_epochs(
    kind: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    epochs: int,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[int, Dict[str, float], int], None],
) -> Pipeline:
    """Trains with partial_fit, one shuffled pass of mini-batches per epoch; returns scaler+model."""
    scaler = StandardScaler().fit(X_train)
    Xs_train, Xs_val = scaler.transform(X_train), scaler.transform(X_val)
    clf, _ = make_classifier(kind, seed)
    classes = np.unique(y_train)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(Xs_train))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            clf.partial_fit(Xs_train[idx], y_train[idx], classes=classes)
        p_train = clf.predict_proba(Xs_train)[:, 1]
        p_val = clf.predict_proba(Xs_val)[:, 1]
        metrics = {
            "train_loss": float(log_loss(y_train, p_train, labels=classes)),
            "val_accuracy": float(accuracy_score(y_val, clf.predict(Xs_val))),
            "val_auc": float(roc_auc_score(y_val, p_val)),
        }
        on_epoch(epoch, metrics, now_ms())
    return Pipeline([("scaler", scaler), ("clf", clf)])


# --------------------------------------------------------------------------- gRPC helpers


class Tracker:
    """Calls the tracking service; retries RESOURCE_EXHAUSTED (a saturated server) with backoff."""

    RETRIES = 5

    def __init__(self, stub, log: Callable[[str], None]):
        self.stub = stub
        self.log = log
        self.last_method = ""

    def call(self, method: str, request):
        """`request` is a message, or for a streaming call a function that returns an iterator."""
        self.last_method = method
        fn = getattr(self.stub, method)
        delay = 0.2
        for attempt in itertools.count():
            try:
                req = request() if callable(request) else request
                return fn(req, timeout=CALL_TIMEOUT)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or attempt >= self.RETRIES:
                    raise
                self.log(f"  {method}: server busy ({e.details()}), retrying in {delay:.1f}s")
                time.sleep(delay)
                delay *= 2

    def get_or_create_experiment(self, name: str):
        """(experiment id, whether it was created now)."""
        try:
            resp = self.call("GetExperimentByName", pb.GetExperimentByNameRequest(name=name))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            exp = resp.experiment
            if exp.lifecycle_stage == pb.LIFECYCLE_STAGE_DELETED:
                # Names stay taken by deleted experiments; bring it back rather than fail.
                self.call("RestoreExperiment", pb.RestoreExperimentRequest(experiment_id=exp.experiment_id))
            return exp.experiment_id, False
        resp = self.call(
            "CreateExperiment",
            pb.CreateExperimentRequest(name=name, tags=[pb.Tag(key="created_by", value="examples/python/train.py")]),
        )
        return resp.experiment_id, True

    def log_metrics(self, run_id: str, metrics: Dict[str, float], step: int, timestamp: int) -> None:
        self.call(
            "LogBatch",
            pb.LogBatchRequest(
                run_id=run_id,
                metrics=[pb.Metric(key=k, value=v, step=step, timestamp=timestamp) for k, v in metrics.items()],
            ),
        )

    def log_params(self, run_id: str, params: Dict[str, str]) -> None:
        self.call(
            "LogBatch",
            pb.LogBatchRequest(run_id=run_id, params=[pb.Param(key=k, value=v) for k, v in params.items()]),
        )

    def upload(self, run_id: str, path: str, data: bytes) -> int:
        def requests() -> Iterator[pb.UploadArtifactRequest]:
            yield pb.UploadArtifactRequest(header=pb.ArtifactHeader(run_id=run_id, path=path))
            for off in range(0, len(data), CHUNK_SIZE):
                yield pb.UploadArtifactRequest(chunk=data[off : off + CHUNK_SIZE])

        resp = self.call("UploadArtifact", requests)
        if resp.file_size != len(data):
            raise RuntimeError(f"upload of {path}: server stored {resp.file_size} bytes, sent {len(data)}")
        return resp.file_size

    def list_files(self, run_id: str, path: str = "") -> Dict[str, int]:
        """Every file under `path` of the run's artifacts (recursively): path -> size."""
        out: Dict[str, int] = {}
        resp = self.call("ListArtifacts", pb.ListArtifactsRequest(run_id=run_id, path=path))
        for f in resp.files:
            if f.is_dir:
                out.update(self.list_files(run_id, f.path))
            else:
                out[f.path] = f.file_size
        return out

    def search_runs(self, experiment_id: str, filter_: str) -> List[str]:
        ids: List[str] = []
        token = ""
        while True:
            resp = self.call(
                "SearchRuns",
                pb.SearchRunsRequest(experiment_ids=[experiment_id], filter=filter_, page_token=token),
            )
            ids.extend(r.info.run_id for r in resp.runs)
            token = resp.next_page_token
            if not token:
                return ids

    def finish(self, run_id: str, status=pb.RUN_STATUS_FINISHED) -> None:
        self.call("UpdateRun", pb.UpdateRunRequest(run_id=run_id, status=status))


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class DryRunStub:
    """Stands in for the TrackingService stub: prints every request and makes up answers."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.files: Dict[str, Dict[str, int]] = {}
        self.leases: Dict[str, int] = {}
        self._service = pb.DESCRIPTOR.services_by_name["TrackingService"]

    def _show(self, method: str, request, limit: int = 300) -> None:
        text = text_format.MessageToString(request, as_one_line=True)
        if len(text) > limit:
            text = text[:limit] + f" ... ({len(text)} chars)"
        self.log(f"[dry-run] {method} {text}")

    def GetExperimentByName(self, req, timeout=None):
        self._show("GetExperimentByName", req)
        raise _FakeRpcError(grpc.StatusCode.NOT_FOUND, f"no experiment named '{req.name}' (dry run)")

    def CreateExperiment(self, req, timeout=None):
        self._show("CreateExperiment", req)
        return pb.CreateExperimentResponse(experiment_id="1")

    def CreateRun(self, req, timeout=None):
        self._show("CreateRun", req)
        run_id = uuid.uuid4().hex
        info = pb.RunInfo(
            run_id=run_id,
            run_name=req.run_name,
            experiment_id=req.experiment_id,
            status=pb.RUN_STATUS_RUNNING,
            start_time=now_ms(),
            parent_run_id=req.parent_run_id,
            artifact_uri=f"dry-run:///{run_id}/artifacts",
            lifecycle_stage=pb.LIFECYCLE_STAGE_ACTIVE,
        )
        if req.HasField("heartbeat_timeout_seconds"):
            self.leases[run_id] = req.heartbeat_timeout_seconds
            info.lease_expires_at = now_ms() + 1000 * req.heartbeat_timeout_seconds
        return pb.CreateRunResponse(run=pb.Run(info=info))

    def Heartbeat(self, req, timeout=None):
        self._show("Heartbeat", req)
        return pb.HeartbeatResponse(lease_expires_at=now_ms() + 1000 * self.leases.get(req.run_id, 0))

    def UploadArtifact(self, requests, timeout=None):
        it = iter(requests)
        header = next(it)
        if header.WhichOneof("item") != "header":
            raise _FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be the header")
        chunks = [r.chunk for r in it]
        size = sum(len(c) for c in chunks)
        self._show("UploadArtifact", header)
        self.log(f"[dry-run]   + {len(chunks)} chunk(s), {size} bytes")
        self.files.setdefault(header.header.run_id, {})[header.header.path] = size
        return pb.UploadArtifactResponse(path=header.header.path, file_size=size)

    def ListArtifacts(self, req, timeout=None):
        self._show("ListArtifacts", req)
        prefix = req.path.rstrip("/") + "/" if req.path else ""
        entries: Dict[str, pb.FileInfo] = {}
        for path, size in self.files.get(req.run_id, {}).items():
            if not path.startswith(prefix):
                continue
            head, sep, _ = path[len(prefix) :].partition("/")
            if sep:
                entries[prefix + head] = pb.FileInfo(path=prefix + head, is_dir=True)
            else:
                entries[path] = pb.FileInfo(path=path, file_size=size)
        return pb.ListArtifactsResponse(root_uri=f"dry-run:///{req.run_id}/artifacts", files=list(entries.values()))

    def SearchRuns(self, req, timeout=None):
        self._show("SearchRuns", req)
        self.log("[dry-run]   (no server: no runs found)")
        return pb.SearchRunsResponse()

    def __getattr__(self, method: str):
        desc = self._service.methods_by_name.get(method)
        if desc is None:
            raise AttributeError(method)
        response_type = getattr(pb, desc.output_type.name)

        def fake(req, timeout=None):
            self._show(method, req)
            return response_type()

        return fake


# --------------------------------------------------------------------------- pipeline


def run_pipeline(args, tracker: Tracker, log: Callable[[str], None], created_runs: List[str]) -> dict:
    ds = load_breast_cancer()
    X = ds.data.astype(np.float64)
    y = ds.target.astype(np.int64)
    feature_names = [str(n) for n in ds.feature_names]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=args.test_size, random_state=args.seed, stratify=y
    )
    log(f"data: {DATASET_NAME} {X.shape[0]} rows x {X.shape[1]} features; train {len(y_train)}, evaluation {len(y_test)}")

    exp_id, created = tracker.get_or_create_experiment(args.experiment)
    log(f"experiment '{args.experiment}': id {exp_id} ({'created' if created else 'reused'})")

    source_tags = [
        pb.Tag(key="mlflow.source.name", value=os.path.basename(__file__)),
        pb.Tag(key="mlflow.source.type", value="LOCAL"),
        pb.Tag(key="team", value=args.team),
    ]
    run_name = args.run_name or f"{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    resp = tracker.call(
        "CreateRun",
        pb.CreateRunRequest(
            experiment_id=exp_id,
            run_name=run_name,
            user_id=_user(),
            tags=source_tags,
            heartbeat_timeout_seconds=LEASE_SECONDS,
        ),
    )
    parent = resp.run.info
    created_runs.append(parent.run_id)
    log(f"parent run {parent.run_id} '{parent.run_name}' (lease {LEASE_SECONDS}s)")

    # Data sets: the training split and the evaluation split.
    source = {
        "loader": "sklearn.datasets.load_breast_cancer",
        "sklearn_version": sklearn.__version__,
        "test_size": args.test_size,
        "split_seed": args.seed,
        "stratify": "target",
    }
    inputs = [
        dataset_input(X_train, y_train, feature_names, "training", {**source, "split": "train"}),
        dataset_input(X_test, y_test, feature_names, "evaluation", {**source, "split": "test"}),
    ]
    tracker.call("LogInputs", pb.LogInputsRequest(run_id=parent.run_id, datasets=inputs))

    _, hyper = make_classifier(args.model, args.seed)
    params = {
        "model": args.model,
        **{k: str(v) for k, v in hyper.items()},
        "epochs": str(args.epochs),
        "batch_size": str(args.batch_size),
        "split_seed": str(args.seed),
        "test_size": str(args.test_size),
        "scaler": "standard",
    }
    tracker.log_params(parent.run_id, params)

    history: Dict[str, List[float]] = {}

    def on_epoch(epoch: int, metrics: Dict[str, float], ts: int) -> None:
        tracker.log_metrics(parent.run_id, metrics, step=epoch, timestamp=ts)
        for k, v in metrics.items():
            history.setdefault(k, []).append(v)
        line = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        log(f"  epoch {epoch:2d}  {line}")
        if (epoch + 1) % HEARTBEAT_EVERY == 0:
            tracker.call("Heartbeat", pb.HeartbeatRequest(run_id=parent.run_id))

    model = train_epochs(
        args.model, X_train, y_train, X_test, y_test, args.epochs, args.batch_size, args.seed, on_epoch
    )
    final = {k: v[-1] for k, v in history.items()}

    # A second model, in a run nested under the parent.
    rf_params = {"n_estimators": 50, "max_depth": 6, "random_state": args.seed}
    resp = tracker.call(
        "CreateRun",
        pb.CreateRunRequest(
            experiment_id=exp_id,
            run_name=f"{run_name}-rf",
            user_id=_user(),
            parent_run_id=parent.run_id,
            tags=source_tags,
        ),
    )
    child = resp.run.info
    created_runs.append(child.run_id)
    log(f"child run {child.run_id} '{child.run_name}' (parent {child.parent_run_id or '?'})")
    tracker.call("LogInputs", pb.LogInputsRequest(run_id=child.run_id, datasets=inputs))
    tracker.log_params(
        child.run_id,
        {"model": "random_forest", **{k: str(v) for k, v in rf_params.items()}, "split_seed": str(args.seed)},
    )
    rf = RandomForestClassifier(n_jobs=1, **rf_params).fit(X_train, y_train)
    child_final = {
        "train_accuracy": float(accuracy_score(y_train, rf.predict(X_train))),
        "val_accuracy": float(accuracy_score(y_test, rf.predict(X_test))),
        "val_auc": float(roc_auc_score(y_test, rf.predict_proba(X_test)[:, 1])),
    }
    tracker.log_metrics(child.run_id, child_final, step=0, timestamp=now_ms())
    log("  " + "  ".join(f"{k}={v:.4f}" for k, v in child_final.items()))
    tracker.call("Heartbeat", pb.HeartbeatRequest(run_id=parent.run_id))

    # Artifacts.
    model_bytes = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    rf_bytes = pickle.dumps(rf, protocol=pickle.HIGHEST_PROTOCOL)
    metrics_doc = {
        "parent": {"run_id": parent.run_id, "model": args.model, "metrics": final},
        "child": {"run_id": child.run_id, "model": "random_forest", "metrics": child_final},
    }
    metrics_bytes = json.dumps(metrics_doc, indent=2, sort_keys=True).encode()
    uploads = {
        parent.run_id: {"model/model.pkl": model_bytes, "metrics.json": metrics_bytes},
        child.run_id: {"model/model.pkl": rf_bytes},
    }
    artifacts: Dict[str, Dict[str, int]] = {}
    for run_id, files in uploads.items():
        for path, data in files.items():
            tracker.upload(run_id, path, data)
            log(f"uploaded {path} ({len(data)} bytes) to run {run_id}")
        listed = tracker.list_files(run_id)
        for path, data in files.items():
            if listed.get(path) != len(data):
                raise RuntimeError(f"ListArtifacts of run {run_id} shows {path} as {listed.get(path)} bytes, uploaded {len(data)}")
        artifacts[run_id] = listed

    tracker.finish(child.run_id)
    tracker.finish(parent.run_id)
    created_runs.clear()  # both are finished: nothing to mark FAILED any more
    log("runs finished")

    search_filter = f"metrics.val_auc > 0.9 and params.model = '{args.model}'"
    matches = tracker.search_runs(exp_id, search_filter)

    return {
        "ok": True,
        "dry_run": bool(args.dry_run),
        "target": None if args.dry_run else args.target,
        "experiment": {"id": exp_id, "name": args.experiment, "created": created},
        "parent_run": {
            "run_id": parent.run_id,
            "run_name": parent.run_name,
            "params": params,
            "final_metrics": final,
            "history": history,
            "artifacts": sorted(artifacts[parent.run_id]),
            "artifact_sizes": artifacts[parent.run_id],
            "datasets": [
                {"name": d.dataset.name, "digest": d.dataset.digest, "context": d.context} for d in inputs
            ],
        },
        "child_run": {
            "run_id": child.run_id,
            "run_name": child.run_name,
            "parent_run_id": parent.run_id,
            "params": {"model": "random_forest", **{k: str(v) for k, v in rf_params.items()}, "split_seed": str(args.seed)},
            "final_metrics": child_final,
            "artifacts": sorted(artifacts[child.run_id]),
            "artifact_sizes": artifacts[child.run_id],
        },
        "search": {"experiment_id": exp_id, "filter": search_filter, "run_ids": matches},
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return ""


def _mark(tracker: Tracker, run_ids: List[str], status) -> None:
    """Best effort: the runs this process created and did not finish get a terminal status."""
    for run_id in reversed(run_ids):
        try:
            tracker.stub.UpdateRun(pb.UpdateRunRequest(run_id=run_id, status=status), timeout=5)
        except grpc.RpcError:
            pass


def summary_text(s: dict) -> str:
    p, c = s["parent_run"], s["child_run"]
    fm = "  ".join(f"{k}={v:.4f}" for k, v in p["final_metrics"].items())
    cm = "  ".join(f"{k}={v:.4f}" for k, v in c["final_metrics"].items())
    lines = [
        "",
        f"experiment {s['experiment']['name']!r} (id {s['experiment']['id']})",
        f"  parent run {p['run_id']} [{p['params']['model']}]  {fm}",
        f"    artifacts: {', '.join(p['artifacts'])}",
        f"  child run  {c['run_id']} [random_forest]  {cm}",
        f"    artifacts: {', '.join(c['artifacts'])}",
        f"search {s['search']['filter']!r}: {len(s['search']['run_ids'])} run(s)",
        *[f"  {r}" for r in s["search"]["run_ids"]],
    ]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="127.0.0.1:50051", help="host:port of the tracking gRPC service")
    ap.add_argument("--experiment", default="breast-cancer", help="experiment name (created if missing)")
    ap.add_argument("--run-name", default=None, help="parent run name (default: <model>-<time>)")
    ap.add_argument("--model", choices=["sgd", "mlp"], default="sgd", help="the epoch-trained model")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=42, help="seed of the split and the models")
    ap.add_argument("--test-size", type=float, default=0.25)
    ap.add_argument("--team", default="ml-platform", help="value of the run tag 'team'")
    ap.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the server to accept connections")
    ap.add_argument("--json", action="store_true", help="print a JSON summary on stdout (progress goes to stderr)")
    ap.add_argument("--dry-run", action="store_true", help="train and print the requests, without a server")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error("--epochs must be at least 1")

    progress = sys.stderr if args.json else sys.stdout

    def log(msg: str) -> None:
        print(msg, file=progress, flush=True)

    if args.dry_run:
        stub = DryRunStub(log)
    else:
        try:
            stub = mlops_client.connect(args.target, wait_seconds=args.wait if args.wait > 0 else None)
        except ConnectionError as e:
            print(f"error: UNAVAILABLE: {e}", file=sys.stderr)
            return 1
    tracker = Tracker(stub, log)
    created_runs: List[str] = []
    try:
        summary = run_pipeline(args, tracker, log, created_runs)
    except grpc.RpcError as e:
        print(f"error: gRPC {tracker.last_method} failed: {e.code().name}: {e.details()}", file=sys.stderr)
        _mark(tracker, created_runs, pb.RUN_STATUS_FAILED)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        _mark(tracker, created_runs, pb.RUN_STATUS_KILLED)
        return 130
    except Exception:
        _mark(tracker, created_runs, pb.RUN_STATUS_FAILED)
        raise
    finally:
        ch = getattr(stub, "channel", None)
        if ch is not None:
            ch.close()

    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(summary_text(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
