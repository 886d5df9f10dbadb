"""End to end: the platform's `mlops up`, the example pipeline examples/python/train.py, and
checks of what it logged through the tracking gRPC API.

    scripts/py-venv.sh
    MLOPS_BIN=target/debug/mlops .venv/bin/python -m pytest tests/python -v

MLOPS_BIN is required: without it the tests fail (they are never skipped). The server gets a
fresh data directory and free loopback ports, its output goes to server.log in pytest's
temporary directory (the tail is shown when something fails), and it is stopped with SIGINT
at the end, which it must survive with exit code 0 within 20 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import grpc
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "python"
TRAIN = EXAMPLES / "train.py"
sys.path.insert(0, str(EXAMPLES))

import mlops_client  # noqa: E402  (generates the stubs from proto/)
from conftest import Server, free_ports  # noqa: E402
from mlops_client import tracking_pb2 as pb  # noqa: E402

EXPERIMENT = "e2e-breast-cancer"
RUN_NAME = "e2e-sgd"
EPOCHS = 20
METRIC_KEYS = ("train_loss", "val_accuracy", "val_auc")
SEARCH_FILTER = "metrics.val_auc > 0.9 and params.model = 'sgd'"
CALL_TIMEOUT = 30.0

def _run_train(srv: Server, *extra: str) -> dict:
    """Runs the example with this interpreter (the venv's python) and returns its JSON summary."""
    cmd = [sys.executable, str(TRAIN), "--target", srv.target, "--json", *extra]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"train.py did not finish within 300 s\nstderr:\n{e.stderr}\n{srv.log_tail()}", pytrace=False)
    if res.returncode != 0:
        pytest.fail(
            f"train.py exited {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}\n{srv.log_tail()}",
            pytrace=False,
        )
    try:
        return json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"train.py --json printed no JSON:\n{res.stdout}\nstderr:\n{res.stderr}", pytrace=False)


@pytest.fixture(scope="module")
def trained(server) -> dict:
    return _run_train(server, "--experiment", EXPERIMENT, "--run-name", RUN_NAME)


def _get_run(srv: Server, run_id: str) -> pb.Run:
    return srv.stub.GetRun(pb.GetRunRequest(run_id=run_id), timeout=CALL_TIMEOUT).run


def _history(srv: Server, run_id: str, key: str):
    steps, timestamps, values = [], [], []
    token = ""
    while True:
        resp = srv.stub.GetMetricHistory(
            pb.GetMetricHistoryRequest(run_id=run_id, metric_key=key, page_token=token), timeout=CALL_TIMEOUT
        )
        assert len(resp.steps) == len(resp.timestamps) == len(resp.values), "columns of unequal length"
        steps += resp.steps
        timestamps += resp.timestamps
        values += resp.values
        token = resp.next_page_token
        if not token:
            return steps, timestamps, values


def _download(srv: Server, run_id: str, path: str) -> bytes:
    chunks = srv.stub.DownloadArtifact(pb.DownloadArtifactRequest(run_id=run_id, path=path), timeout=CALL_TIMEOUT)
    return b"".join(c.chunk for c in chunks)


def _search(srv: Server, experiment_id: str, filter_: str) -> List[str]:
    ids, token = [], ""
    while True:
        resp = srv.stub.SearchRuns(
            pb.SearchRunsRequest(experiment_ids=[experiment_id], filter=filter_, page_token=token),
            timeout=CALL_TIMEOUT,
        )
        ids += [r.info.run_id for r in resp.runs]
        token = resp.next_page_token
        if not token:
            return ids


def _digest(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(X).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()[:8]


def _data():
    ds = load_breast_cancer()
    return ds.data.astype(np.float64), ds.target.astype(np.int64)


# --------------------------------------------------------------------------- the pipeline


def test_experiment_created(server, trained):
    exp = trained["experiment"]
    assert exp["created"] is True
    resp = server.stub.GetExperimentByName(pb.GetExperimentByNameRequest(name=EXPERIMENT), timeout=CALL_TIMEOUT)
    assert resp.experiment.experiment_id == exp["id"]
    assert resp.experiment.lifecycle_stage == pb.LIFECYCLE_STAGE_ACTIVE


def test_parent_run_finished_with_params_and_tags(server, trained):
    p = trained["parent_run"]
    run = _get_run(server, p["run_id"])
    assert run.info.run_id == p["run_id"]
    assert run.info.run_name == RUN_NAME
    assert run.info.experiment_id == trained["experiment"]["id"]
    assert run.info.status == pb.RUN_STATUS_FINISHED, pb.RunStatus.Name(run.info.status)
    assert run.info.HasField("end_time") and run.info.end_time >= run.info.start_time
    assert run.info.parent_run_id == ""

    params = {x.key: x.value for x in run.data.params}
    assert params == p["params"]
    assert params["model"] == "sgd"
    assert params["epochs"] == str(EPOCHS)
    assert params["split_seed"] == "42"
    assert params["loss"] == "log_loss"

    tags = {t.key: t.value for t in run.data.tags}
    assert tags.get("mlflow.source.name") == "train.py"
    assert tags.get("team") == "ml-platform"

    # RunData.metrics holds the latest point of each key: the last epoch.
    latest = {m.key: m for m in run.data.metrics}
    assert set(METRIC_KEYS) <= set(latest)
    for key in METRIC_KEYS:
        assert latest[key].step == EPOCHS - 1
        assert latest[key].value == pytest.approx(p["final_metrics"][key], rel=1e-12)
    assert latest["val_auc"].value > 0.9


@pytest.mark.parametrize("key", METRIC_KEYS)
def test_metric_history(server, trained, key):
    p = trained["parent_run"]
    steps, timestamps, values = _history(server, p["run_id"], key)
    assert steps == list(range(EPOCHS))
    assert values == pytest.approx(p["history"][key], rel=1e-12)
    # Real client timestamps (ms since the epoch), logged in order.
    assert timestamps == sorted(timestamps)
    now = time.time() * 1000
    assert all(now - 3_600_000 < t <= now + 60_000 for t in timestamps), timestamps


def test_child_run_nested_under_parent(server, trained):
    p, c = trained["parent_run"], trained["child_run"]
    run = _get_run(server, c["run_id"])
    assert run.info.parent_run_id == p["run_id"]
    assert run.info.experiment_id == trained["experiment"]["id"]
    assert run.info.status == pb.RUN_STATUS_FINISHED, pb.RunStatus.Name(run.info.status)
    tags = {t.key: t.value for t in run.data.tags}
    assert tags.get("mlflow.parentRunId") == p["run_id"]
    params = {x.key: x.value for x in run.data.params}
    assert params == c["params"]
    assert params["model"] == "random_forest"
    metrics = {m.key: m.value for m in run.data.metrics}
    assert metrics == pytest.approx(c["final_metrics"], rel=1e-12)
    assert metrics["val_accuracy"] > 0.9


def test_dataset_inputs(server, trained):
    run = _get_run(server, trained["parent_run"]["run_id"])
    by_context = {d.context: d.dataset for d in run.inputs.dataset_inputs}
    assert set(by_context) == {"training", "evaluation"}, list(by_context)

    X, y = _data()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=42, stratify=y)
    expected = {"training": (X_train, y_train), "evaluation": (X_test, y_test)}
    for context, ds in by_context.items():
        assert ds.name == "breast_cancer"
        assert ds.digest == _digest(*expected[context])
        assert ds.source_type == "code"
        assert json.loads(ds.source)["loader"] == "sklearn.datasets.load_breast_cancer"
        columns = json.loads(ds.schema)["mlflow_colspec"]
        assert len(columns) == X.shape[1] + 1
        assert json.loads(ds.profile)["num_rows"] == len(expected[context][1])
    assert by_context["training"].digest != by_context["evaluation"].digest


def test_artifacts_listed(server, trained):
    p = trained["parent_run"]
    root = server.stub.ListArtifacts(pb.ListArtifactsRequest(run_id=p["run_id"]), timeout=CALL_TIMEOUT)
    assert root.root_uri
    entries = {f.path: f for f in root.files}
    assert set(entries) == {"model", "metrics.json"}, list(entries)
    assert entries["model"].is_dir and not entries["metrics.json"].is_dir
    model_dir = server.stub.ListArtifacts(
        pb.ListArtifactsRequest(run_id=p["run_id"], path="model"), timeout=CALL_TIMEOUT
    )
    files = {f.path: f.file_size for f in model_dir.files}
    assert files == {"model/model.pkl": p["artifact_sizes"]["model/model.pkl"]}


@pytest.mark.parametrize("which", ["parent_run", "child_run"])
def test_model_artifact_predicts(server, trained, which):
    r = trained[which]
    data = _download(server, r["run_id"], "model/model.pkl")
    assert len(data) == r["artifact_sizes"]["model/model.pkl"]
    model = pickle.loads(data)  # our own artifact, written by train.py in this test
    X, y = _data()
    accuracy = float((model.predict(X) == y).mean())
    assert accuracy > 0.9, accuracy


def test_metrics_json_artifact(server, trained):
    p, c = trained["parent_run"], trained["child_run"]
    doc = json.loads(_download(server, p["run_id"], "metrics.json"))
    assert doc["parent"]["run_id"] == p["run_id"]
    assert doc["parent"]["metrics"] == pytest.approx(p["final_metrics"])
    assert doc["child"]["run_id"] == c["run_id"]
    assert doc["child"]["metrics"] == pytest.approx(c["final_metrics"])


def test_search_runs(server, trained):
    p, c = trained["parent_run"], trained["child_run"]
    exp_id = trained["experiment"]["id"]
    assert trained["search"]["filter"] == SEARCH_FILTER
    assert p["run_id"] in trained["search"]["run_ids"]
    found = _search(server, exp_id, SEARCH_FILTER)
    assert p["run_id"] in found
    assert c["run_id"] not in found  # params.model = 'random_forest'
    assert _search(server, exp_id, "metrics.val_auc > 0.9 and params.model = 'mlp'") == []
    assert p["run_id"] not in _search(server, exp_id, "metrics.val_auc > 1.5")


def test_second_run_reuses_experiment(server, trained):
    again = _run_train(server, "--experiment", EXPERIMENT, "--run-name", RUN_NAME + "-2")
    assert again["experiment"] == {**trained["experiment"], "created": False}
    assert again["parent_run"]["run_id"] != trained["parent_run"]["run_id"]
    found = _search(server, trained["experiment"]["id"], SEARCH_FILTER)
    assert {trained["parent_run"]["run_id"], again["parent_run"]["run_id"]} <= set(found)


# --------------------------------------------------------------------------- bad input


def _new_run(srv: Server, name: str) -> str:
    resp = srv.stub.CreateRun(pb.CreateRunRequest(experiment_id="0", run_name=name), timeout=CALL_TIMEOUT)
    return resp.run.info.run_id


def test_log_param_conflict_is_invalid_argument(server):
    run_id = _new_run(server, "param-conflict")
    log = lambda value: server.stub.LogParam(  # noqa: E731
        pb.LogParamRequest(run_id=run_id, param=pb.Param(key="lr", value=value)), timeout=CALL_TIMEOUT
    )
    log("0.125")
    log("0.125")  # the same value again is accepted
    with pytest.raises(grpc.RpcError) as err:
        log("0.5")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    details = err.value.details()
    assert "0.125" in details and "0.5" in details, details
    params = {p.key: p.value for p in _get_run(server, run_id).data.params}
    assert params == {"lr": "0.125"}
    server.stub.UpdateRun(pb.UpdateRunRequest(run_id=run_id, status=pb.RUN_STATUS_FINISHED), timeout=CALL_TIMEOUT)


@pytest.mark.parametrize("path", ["../escape.txt", "model/../../escape.txt", "<absolute>"])
def test_upload_artifact_path_escape_is_invalid_argument(server, path):
    if path == "<absolute>":  # the contract says "a relative path"
        path = str(server.root / "escape.txt")
    run_id = _new_run(server, "path-escape")

    def requests():
        yield pb.UploadArtifactRequest(header=pb.ArtifactHeader(run_id=run_id, path=path))
        yield pb.UploadArtifactRequest(chunk=b"should not be written\n")

    with pytest.raises(grpc.RpcError) as err:
        server.stub.UploadArtifact(requests(), timeout=CALL_TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    written = list(server.root.rglob("escape.txt"))
    assert written == [], f"the upload wrote outside the run's artifacts: {written}"
    server.stub.UpdateRun(pb.UpdateRunRequest(run_id=run_id, status=pb.RUN_STATUS_FINISHED), timeout=CALL_TIMEOUT)


def _cli(srv: Server, *args: str) -> subprocess.CompletedProcess:
    """Runs the `mlops` CLI against the test server."""
    return subprocess.run(
        [os.environ["MLOPS_BIN"], "--tracking-addr", srv.target, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_reads_what_the_pipeline_logged(server, trained):
    exp_id = trained["experiment"]["id"]
    parent = trained["parent_run"]["run_id"]

    listed = _cli(server, "experiments", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert exp_id in [e["experiment_id"] for e in json.loads(listed.stdout)]

    table = _cli(server, "experiments", "list")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:2] == ["ID", "NAME"]
    assert any(line.split()[0] == exp_id for line in table.stdout.splitlines()[1:])

    found = _cli(server, "runs", "search", "metrics.val_auc > 0.9 and params.model = 'sgd'", "-e", exp_id, "--json")
    assert found.returncode == 0, found.stderr
    runs = json.loads(found.stdout)["runs"]
    assert parent in [r["run_id"] for r in runs]
    assert all(r["params"]["model"] == "sgd" and r["metrics"]["val_auc"] > 0.9 for r in runs)

    shown = _cli(server, "runs", "show", parent, "--json")
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["status"] == "FINISHED" and run["run_id"] == parent
    assert {i["context"] for i in run["inputs"]} >= {"training", "evaluation"}

    history = _cli(server, "runs", "history", parent, "val_auc", "--json")
    assert history.returncode == 0, history.stderr
    assert [p["step"] for p in json.loads(history.stdout)] == list(range(20))


def test_cli_stops_quietly_when_its_reader_goes(server, trained):
    """`mlops runs history ... | head -1`: the reader closes the pipe before the CLI has
    printed; the CLI stops as a command ended by SIGPIPE does, without a panic's message."""
    parent = trained["parent_run"]["run_id"]
    proc = subprocess.Popen(
        [os.environ["MLOPS_BIN"], "--tracking-addr", server.target, "runs", "history", parent, "val_auc"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the CLI has even connected
    _, err = proc.communicate(timeout=60)
    assert b"panicked" not in err, err
    assert proc.returncode == 141, (proc.returncode, err)


def test_cli_reports_bad_filters_and_unreachable_servers(server):
    bad = _cli(server, "runs", "search", "metrics.auc >> 1")
    assert bad.returncode == 1
    assert "InvalidArgument" in bad.stderr or "invalid filter" in bad.stderr, bad.stderr
    assert "position" in bad.stderr, bad.stderr

    port = free_ports(1)[0]
    down = subprocess.run(
        [os.environ["MLOPS_BIN"], "--tracking-addr", f"127.0.0.1:{port}", "experiments", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1
    assert "cannot reach the tracking service" in down.stderr, down.stderr
