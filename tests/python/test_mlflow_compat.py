"""MLflow's own client (pinned in requirements.txt) against our MLflow REST API: a training
script with nested runs, params, metrics with steps, a dataset input, tags,
`mlflow.sklearn.log_model(..., registered_model_name=...)`, aliases, `search_runs`, and
`mlflow.pyfunc.load_model("models:/name@champion")`; and `mlflow.sklearn.autolog()` recording
the same things on our server as on MLflow's own server, started here from the same venv.

    MLOPS_BIN=target/debug/mlops .venv/bin/python -m pytest tests/python/test_mlflow_compat.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from conftest import free_ports  # noqa: E402
from mlops_client import registry_pb2 as rpb  # noqa: E402
from mlops_client import tracking_pb2 as pb  # noqa: E402
import mlops_client  # noqa: E402

HERE = Path(__file__).resolve().parent


def run_cli(server, *args: str) -> str:
    res = subprocess.run([os.environ["MLOPS_BIN"], "--tracking-addr", server.target,
                          "--registry-addr", server.registry_target, *args],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout


def _wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url} exited with {proc.returncode}\n{log.read_text(errors='replace')[-3000:]}", pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} not up within {timeout:g} s\n{log.read_text(errors='replace')[-3000:]}", pytrace=False)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """MLflow's own tracking server (SQLite, proxied artifacts), from this venv."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_ports(1)[0]
    exe = Path(sys.executable).parent / "mlflow"
    cmd = [str(exe), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
           "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]  # fmt: skip
    log = root / "server.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=root, env=dict(os.environ))
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc, 180, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture()
def ours(server):
    mlflow.set_tracking_uri(server.mlflow_uri)
    mlflow.set_registry_uri(server.mlflow_uri)
    yield server
    mlflow.end_run()


def test_training_script_end_to_end(ours, tmp_path):
    name = f"bc-{uuid.uuid4().hex[:8]}"
    exp_id = mlflow.create_experiment(f"compat-{uuid.uuid4().hex}")
    mlflow.set_experiment(experiment_id=exp_id)
    X, y = load_breast_cancer(return_X_y=True)
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"model": "logreg", "C": 0.5})
        mlflow.set_tag("team", "risk")
        mlflow.log_input(mlflow.data.from_numpy(X, targets=y, name="breast_cancer"), context="training")
        for step in range(3):
            mlflow.log_metrics({"loss": 1.0 / (step + 1), "acc": 0.8 + step / 100}, step=step)
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_param("fold", 1)
            mlflow.log_metric("acc", 0.9)
        clf = LogisticRegression(C=0.5, max_iter=2000).fit(X, y)
        info = mlflow.sklearn.log_model(clf, name="model", registered_model_name=name)
    assert str(info.registered_model_version) == "1"

    client = MlflowClient()
    client.set_registered_model_alias(name, "champion", 1)
    mv = client.get_model_version_by_alias(name, "champion")
    assert mv.version == "1" and mv.run_id == parent.info.run_id
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    np.testing.assert_array_equal(loaded.predict(X[:20]), clf.predict(X[:20]))

    frame = mlflow.search_runs(experiment_ids=[exp_id], filter_string="params.model = 'logreg' and metrics.acc > 0.8")
    assert list(frame["run_id"]) == [parent.info.run_id]
    assert frame.loc[0, "params.C"] == "0.5" and frame.loc[0, "tags.team"] == "risk"
    assert frame.loc[0, "metrics.loss"] == pytest.approx(1 / 3)
    nested = mlflow.search_runs(experiment_ids=[exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert list(nested["run_id"]) == [child.info.run_id]
    hist = client.get_metric_history(parent.info.run_id, "loss")
    assert [m.step for m in hist] == [0, 1, 2]

    # one store, two front doors: the same run and version through gRPC and the CLI
    run = ours.stub.GetRun(pb.GetRunRequest(run_id=parent.info.run_id), timeout=30).run
    assert {p.key: p.value for p in run.data.params}["model"] == "logreg"
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["breast_cancer"]
    reg = mlops_client.connect_registry(ours.registry_target)
    v = reg.GetModelVersionByAlias(rpb.GetModelVersionByAliasRequest(name=name, alias="champion"), timeout=30)
    assert v.model_version.lineage.run_id == parent.info.run_id
    assert v.model_version.source.startswith("models:/m-")
    reg.channel.close()
    shown = run_cli(ours, "--json", "models", "version", name, "1")
    assert json.loads(shown)["lineage"]["run_id"] == parent.info.run_id


def _autolog(uri: str, out: Path) -> dict:
    res = subprocess.run([sys.executable, str(HERE / "scripts" / "autolog_fit.py"), uri, str(out)],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ))  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(out.read_text())


def test_autolog_records_what_it_records_on_mlflow(ours, mlflow_server, tmp_path):
    theirs = _autolog(mlflow_server, tmp_path / "theirs.json")
    mine = _autolog(ours.mlflow_uri, tmp_path / "mine.json")
    assert mine["params"] == theirs["params"]
    assert sorted(mine["metrics"]) == sorted(theirs["metrics"])
    for k, v in theirs["metrics"].items():
        assert mine["metrics"][k] == pytest.approx(v, rel=1e-9), k
    assert mine["tags"] == theirs["tags"]
    assert mine["artifacts"] == theirs["artifacts"]
    assert mine["logged_models"] == theirs["logged_models"]
    assert mine["outputs"] == theirs["outputs"]
    assert theirs["logged_models"], "autolog logged a model on MLflow's server"
