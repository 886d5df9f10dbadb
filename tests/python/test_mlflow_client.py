"""MLflow's own Python client against the platform's MLflow REST API (`mlops up` serves it
beside the gRPC services): experiments, nested runs, params, metrics with steps, tags,
dataset inputs, artifacts through the `mlflow-artifacts` proxy, `mlflow.search_runs` as a
pandas frame, metric histories, MLflow's error codes; and what MLflow logged is the same
run through our gRPC API and the `mlops` CLI.

    MLOPS_BIN=target/debug/mlops .venv/bin/python -m pytest -q tests/python/test_mlflow_client.py

Logged models, autologging and `load_model` are tested in test_mlflow_compat.py, the model
registry through MLflow's client in test_mlflow_registry.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

# MLflow's client retries 429 and 5xx for minutes by default: fail fast instead. It reads
# these when it makes each request.
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "60"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples" / "python"))

from conftest import Server, mlops_bin, up_command  # noqa: E402
from mlops_client import tracking_pb2 as pb  # noqa: E402

CALL_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def client(server: Server):
    """An MlflowClient on the server's MLflow URI, which is also the fluent API's."""
    mlflow.set_tracking_uri(server.mlflow_uri)
    yield MlflowClient(server.mlflow_uri)
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error_code(excinfo) -> str:
    return excinfo.value.error_code


def test_experiments_create_get_search_rename_delete(client: MlflowClient, server: Server):
    name = unique("mlflow-exp")
    exp_id = client.create_experiment(name, tags={"team": "risk"})
    exp = client.get_experiment(exp_id)
    assert (exp.name, exp.lifecycle_stage, exp.tags) == (name, "active", {"team": "risk"})
    # Artifacts of the experiment's runs go through the gateway's artifact proxy.
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    assert exp.creation_time > 0 and exp.last_update_time >= exp.creation_time
    # A relative location is under the server's working directory, as MLflow resolves it.
    rel = client.create_experiment(unique("mlflow-rel"), artifact_location="my_location")
    got = client.get_experiment(rel).artifact_location
    assert os.path.realpath(got) == os.path.realpath(server.root / "my_location"), got

    assert client.get_experiment_by_name(name).experiment_id == exp_id
    assert client.get_experiment_by_name(unique("absent")) is None

    found = client.search_experiments(filter_string=f"name = '{name}'")
    assert [e.experiment_id for e in found] == [exp_id]
    found = client.search_experiments(filter_string="tags.team = 'risk'")
    assert exp_id in [e.experiment_id for e in found]

    # Paging: tokens pass through; the last page has none.
    first = client.search_experiments(max_results=1, order_by=["creation_time ASC"])
    assert len(first) == 1 and first.token
    rest = client.search_experiments(max_results=1000, page_token=first.token, order_by=["creation_time ASC"])
    assert first[0].experiment_id not in [e.experiment_id for e in rest]
    assert rest.token is None

    client.set_experiment_tag(exp_id, "stage", "dev")
    client.rename_experiment(exp_id, name + "-renamed")
    exp = client.get_experiment(exp_id)
    assert exp.name == name + "-renamed" and exp.tags["stage"] == "dev"

    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    assert exp_id not in [e.experiment_id for e in client.search_experiments()]
    deleted = client.search_experiments(view_type=mlflow.entities.ViewType.DELETED_ONLY)
    assert exp_id in [e.experiment_id for e in deleted]
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"

    # The same experiment through our gRPC API.
    got = server.stub.GetExperiment(pb.GetExperimentRequest(experiment_id=exp_id), timeout=CALL_TIMEOUT)
    assert got.experiment.name == name + "-renamed"


def _log_training_run(exp_name: str, tmp_path: Path):
    """Logs a parent run with a nested child through MLflow's fluent API; returns both ids."""
    mlflow.set_experiment(exp_name)
    features = np.arange(20, dtype=np.float64).reshape(10, 2)
    frame = pd.DataFrame({"x": np.arange(5), "y": np.arange(5) * 2.0})
    with mlflow.start_run(run_name="train") as parent:
        mlflow.log_param("model", "rf")
        mlflow.log_params({"depth": 4, "lr": 0.1})
        for step, loss in enumerate([0.9, 0.5, 0.25]):
            mlflow.log_metric("loss", loss, step=step)
        mlflow.log_metrics({"acc": 0.8, "auc": 0.91}, step=2)
        mlflow.log_metric("nan_metric", float("nan"))
        mlflow.set_tag("team", "risk")
        mlflow.log_input(mlflow.data.from_numpy(features, name="features"), context="training")
        mlflow.log_input(mlflow.data.from_pandas(frame, name="holdout"), context="evaluation")
        with mlflow.start_run(run_name="fold-1", nested=True) as child:
            mlflow.log_metric("acc", 0.7)
            mlflow.log_param("fold", 1)
        (tmp_path / "notes.txt").write_text("hello from mlflow\n")
        mlflow.log_artifact(str(tmp_path / "notes.txt"))
    return parent.info.run_id, child.info.run_id


def test_runs_params_metrics_tags_inputs_and_nesting(client: MlflowClient, server: Server, tmp_path: Path):
    exp_name = unique("mlflow-runs")
    parent_id, child_id = _log_training_run(exp_name, tmp_path)
    exp_id = client.get_experiment_by_name(exp_name).experiment_id

    run = client.get_run(parent_id)
    assert run.info.run_name == "train" and run.info.experiment_id == exp_id
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    assert run.info.lifecycle_stage == "active"
    assert run.info.artifact_uri == f"mlflow-artifacts:/{exp_id}/{parent_id}/artifacts"
    assert run.data.params == {"model": "rf", "depth": "4", "lr": "0.1"}
    assert run.data.metrics["loss"] == 0.25  # the latest step's value
    assert (run.data.metrics["acc"], run.data.metrics["auc"]) == (0.8, 0.91)
    assert np.isnan(run.data.metrics["nan_metric"])
    assert run.data.tags["team"] == "risk"
    assert run.data.tags["mlflow.runName"] == "train"
    assert "mlflow.source.name" in run.data.tags
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"features", "holdout"}
    assert {t.key: t.value for t in inputs["features"].tags}["mlflow.data.context"] == "training"
    assert {t.key: t.value for t in inputs["holdout"].tags}["mlflow.data.context"] == "evaluation"
    assert inputs["holdout"].dataset.source_type and inputs["holdout"].dataset.digest
    assert inputs["holdout"].dataset.schema  # pandas datasets carry their schema

    child = client.get_run(child_id)
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert child.data.params == {"fold": "1"} and child.info.status == "FINISHED"

    history = client.get_metric_history(parent_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.5), (2, 0.25)]
    assert all(m.key == "loss" and m.timestamp > 0 for m in history)
    assert client.get_metric_history(parent_id, "never_logged") == []
    # Sampled histories of several runs, as MLflow's charts read them.
    resp = requests.get(
        f"{server.mlflow_uri}/api/2.0/mlflow/metrics/get-history-bulk-interval",
        params={"run_ids": [parent_id, child_id], "metric_key": "loss", "max_results": 2},
        timeout=CALL_TIMEOUT,
    )
    assert [(m["run_id"], m["step"], m["value"]) for m in resp.json()["metrics"]] == [
        (parent_id, 0, 0.9),
        (parent_id, 2, 0.25),
    ]

    # Tags: set, rename through mlflow.runName, delete.
    client.set_tag(parent_id, "mlflow.runName", "train-renamed")
    client.set_tag(parent_id, "note", "x")
    client.delete_tag(parent_id, "note")
    run = client.get_run(parent_id)
    assert run.info.run_name == "train-renamed" and "note" not in run.data.tags

    # The same runs through our gRPC API: the parent link is the run's, not just a tag.
    got = server.stub.GetRun(pb.GetRunRequest(run_id=child_id), timeout=CALL_TIMEOUT).run
    assert got.info.parent_run_id == parent_id and got.info.experiment_id == exp_id
    got = server.stub.GetRun(pb.GetRunRequest(run_id=parent_id), timeout=CALL_TIMEOUT).run
    assert got.info.run_name == "train-renamed"
    assert {p.key: p.value for p in got.data.params} == {"model": "rf", "depth": "4", "lr": "0.1"}
    assert {i.dataset.name: i.context for i in got.inputs.dataset_inputs} == {
        "features": "training",
        "holdout": "evaluation",
    }

    # MLflow nests a run under a run of another experiment too: linked as well.
    other = client.create_experiment(unique("mlflow-other"))
    stray = client.create_run(other, tags={"mlflow.parentRunId": parent_id}).info.run_id
    assert client.get_run(stray).data.tags["mlflow.parentRunId"] == parent_id
    found = client.search_runs([other], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert [r.info.run_id for r in found] == [stray]
    got = server.stub.GetRun(pb.GetRunRequest(run_id=stray), timeout=CALL_TIMEOUT).run
    assert got.info.parent_run_id == parent_id
    # A parent that is no run here (another server's) stays a tag alone, as MLflow keeps it.
    elsewhere = uuid.uuid4().hex
    tagged = client.create_run(other, tags={"mlflow.parentRunId": elsewhere}).info.run_id
    assert client.get_run(tagged).data.tags["mlflow.parentRunId"] == elsewhere
    got = server.stub.GetRun(pb.GetRunRequest(run_id=tagged), timeout=CALL_TIMEOUT).run
    assert got.info.parent_run_id == ""

    # And through the CLI.
    res = subprocess.run(
        [os.environ["MLOPS_BIN"], "runs", "show", parent_id, "--json", "--tracking-addr", server.target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["run_id"] == parent_id and shown["status"] == "FINISHED"
    assert shown["params"]["model"] == "rf" and shown["metrics"]["loss"] == 0.25
    assert shown["tags"]["team"] == "risk"


def test_search_runs_as_a_pandas_frame(client: MlflowClient):
    exp_id = client.create_experiment(unique("mlflow-search"))
    for i, (model, acc) in enumerate([("rf", 0.7), ("rf", 0.9), ("sgd", 0.95)]):
        with mlflow.start_run(experiment_id=exp_id, run_name=f"r{i}"):
            mlflow.log_param("model", model)
            mlflow.log_metric("acc", acc)
            mlflow.set_tag("team", "risk" if i < 2 else "ops")

    df = mlflow.search_runs(
        experiment_ids=[exp_id],
        filter_string="metrics.acc > 0.8 and params.model = 'rf'",
    )
    assert isinstance(df, pd.DataFrame) and len(df) == 1
    row = df.iloc[0]
    assert (row["params.model"], row["metrics.acc"], row["tags.team"]) == ("rf", 0.9, "risk")
    assert row["tags.mlflow.runName"] == "r1" and row["status"] == "FINISHED"
    assert row["artifact_uri"].startswith(f"mlflow-artifacts:/{exp_id}/")
    for col in ("run_id", "experiment_id", "start_time", "end_time", "metrics.acc", "params.model", "tags.team"):
        assert col in df.columns, df.columns

    df = mlflow.search_runs(experiment_ids=[exp_id], order_by=["metrics.acc DESC"])
    assert list(df["metrics.acc"]) == [0.95, 0.9, 0.7]
    df = mlflow.search_runs(experiment_ids=[exp_id], filter_string="tags.team = 'ops'")
    assert list(df["params.model"]) == ["sgd"]

    # Paging with MlflowClient: page tokens pass through.
    page = client.search_runs([exp_id], max_results=2, order_by=["metrics.acc ASC"])
    assert [r.data.metrics["acc"] for r in page] == [0.7, 0.9] and page.token
    page = client.search_runs([exp_id], max_results=2, order_by=["metrics.acc ASC"], page_token=page.token)
    assert [r.data.metrics["acc"] for r in page] == [0.95] and not page.token

    # Deleted runs leave the default view and come back when restored.
    victim = client.search_runs([exp_id], filter_string="metrics.acc < 0.8")[0].info.run_id
    client.delete_run(victim)
    assert client.get_run(victim).info.lifecycle_stage == "deleted"
    assert len(mlflow.search_runs(experiment_ids=[exp_id])) == 2
    deleted = client.search_runs([exp_id], run_view_type=mlflow.entities.ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [victim]
    client.restore_run(victim)
    assert len(mlflow.search_runs(experiment_ids=[exp_id])) == 3


def test_artifacts_through_the_proxy(client: MlflowClient, server: Server, tmp_path: Path):
    exp_id = client.create_experiment(unique("mlflow-artifacts"))
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.json").write_text('{"b": 1}')
    blob = os.urandom(3 * 1024 * 1024 + 17)  # several upload chunks
    (tmp_path / "weights.bin").write_bytes(blob)

    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_artifact(str(tmp_path / "weights.bin"))
        mlflow.log_artifacts(str(src), artifact_path="data")
        mlflow.log_text("inline text", "notes/readme.md")
        mlflow.log_dict({"k": [1, 2]}, "notes/config.json")
    run_id = run.info.run_id

    top = {(f.path, f.is_dir) for f in client.list_artifacts(run_id)}
    assert top == {("weights.bin", False), ("data", True), ("notes", True)}
    sizes = {f.path: f.file_size for f in client.list_artifacts(run_id)}
    assert sizes["weights.bin"] == len(blob) and sizes["data"] is None
    assert {f.path for f in client.list_artifacts(run_id, "data")} == {"data/a.txt", "data/sub"}
    assert client.list_artifacts(run_id, "data/a.txt") == []  # a file lists as nothing
    assert client.list_artifacts(run_id, "absent") == []

    out = Path(client.download_artifacts(run_id, "data", str(tmp_path / "dl1")))
    assert (out / "a.txt").read_text() == "alpha"
    assert json.loads((out / "sub" / "b.json").read_text()) == {"b": 1}
    out = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="weights.bin", dst_path=str(tmp_path / "dl2")))
    assert out.read_bytes() == blob
    out = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{run_id}/notes", dst_path=str(tmp_path / "dl3")))
    assert (out / "readme.md").read_text() == "inline text"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/notes/config.json") == {"k": [1, 2]}

    # The files are the run's artifacts in the tracking service.
    listed = server.stub.ListArtifacts(pb.ListArtifactsRequest(run_id=run_id, path="data"), timeout=CALL_TIMEOUT)
    assert {(f.path, f.is_dir) for f in listed.files} == {("data/a.txt", False), ("data/sub", True)}
    chunks = server.stub.DownloadArtifact(pb.DownloadArtifactRequest(run_id=run_id, path="weights.bin"), timeout=CALL_TIMEOUT)
    assert b"".join(c.chunk for c in chunks) == blob

    # Proxy paths that name no run's artifacts, or another run's, are MLflow errors.
    base = f"{server.mlflow_uri}/api/2.0/mlflow-artifacts/artifacts"
    resp = requests.get(f"{base}/{int(exp_id) + 1000}/{run_id}/artifacts/data/a.txt", timeout=CALL_TIMEOUT)
    assert resp.status_code == 404 and resp.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # (`%2e%2e`: requests would resolve a literal `..` before sending)
    resp = requests.put(f"{base}/{exp_id}/{run_id}/artifacts/%2e%2e/escape.txt", data=b"x", timeout=CALL_TIMEOUT)
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE", resp.text
    resp = requests.put(f"{base}/{exp_id}/elsewhere.txt", data=b"x", timeout=CALL_TIMEOUT)
    assert resp.status_code == 404 and resp.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", resp.text
    resp = requests.get(f"{base}/{exp_id}/{run_id}/artifacts/nope.txt", timeout=CALL_TIMEOUT)
    assert resp.status_code == 404 and resp.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_mlflow_error_codes(client: MlflowClient, server: Server):
    missing = uuid.uuid4().hex
    with pytest.raises(MlflowException) as e:
        client.get_run(missing)
    assert error_code(e) == "RESOURCE_DOES_NOT_EXIST"
    # MLflow's words, which client code matches.
    assert f"Run with id={missing} not found" in str(e.value), str(e.value)
    # An id no run can have is not found either, as on MLflow's server.
    with pytest.raises(MlflowException) as e:
        client.get_run("not-a-run-id")
    assert error_code(e) == "RESOURCE_DOES_NOT_EXIST" and "Run with id=not-a-run-id not found" in str(e.value)
    with pytest.raises(MlflowException) as e:
        client.search_runs([], max_results=50_001)
    assert error_code(e) == "INVALID_PARAMETER_VALUE" and "Invalid value 50001 for parameter 'max_results'" in str(e.value)

    name = unique("mlflow-dup")
    exp_id = client.create_experiment(name)
    with pytest.raises(MlflowException) as e:
        client.create_experiment(name)
    assert error_code(e) == "RESOURCE_ALREADY_EXISTS"

    with pytest.raises(MlflowException) as e:
        client.get_experiment(str(10**9))
    assert error_code(e) == "RESOURCE_DOES_NOT_EXIST"
    assert f"No Experiment with id={10**9} exists" in str(e.value), str(e.value)

    run = client.create_run(exp_id)
    run_id = run.info.run_id
    client.log_param(run_id, "p", "1")
    client.log_param(run_id, "p", "1")  # the same value again is fine
    with pytest.raises(MlflowException) as e:
        client.log_param(run_id, "p", "2")
    assert error_code(e) == "INVALID_PARAMETER_VALUE"

    client.delete_run(run_id)
    with pytest.raises(MlflowException) as e:
        client.log_metric(run_id, "m", 1.0)
    assert error_code(e) == "INVALID_PARAMETER_VALUE"
    client.restore_run(run_id)
    client.log_metric(run_id, "m", 1.0)
    client.set_terminated(run_id, status="FAILED")
    assert client.get_run(run_id).info.status == "FAILED"

    # Raw HTTP: MLflow's error bodies and statuses (the client retries 429 and 5xx only).
    api = f"{server.mlflow_uri}/api/2.0/mlflow"
    resp = requests.get(f"{api}/no-such-endpoint", timeout=CALL_TIMEOUT)
    assert resp.status_code == 404 and resp.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    resp = requests.post(
        f"{api}/experiments/create", data="{not json", headers={"Content-Type": "application/json"}, timeout=CALL_TIMEOUT
    )
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    resp = requests.post(f"{api}/experiments/create", json={}, timeout=CALL_TIMEOUT)
    assert resp.status_code == 400
    assert resp.json()["message"].startswith("Missing value for required parameter 'name'")
    resp = requests.post(f"{api}/runs/log-metric", json={"run_id": run_id, "key": "m", "value": "x", "timestamp": 1}, timeout=CALL_TIMEOUT)
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # GET with a query string, POST with a JSON body, where MLflow accepts both.
    resp = requests.get(f"{api}/experiments/search", params={"filter": f"name = '{name}'"}, timeout=CALL_TIMEOUT)
    assert [e["experiment_id"] for e in resp.json()["experiments"]] == [exp_id]
    resp = requests.post(f"{api}/experiments/search", json={"filter": f"name = '{name}'"}, timeout=CALL_TIMEOUT)
    assert [e["experiment_id"] for e in resp.json()["experiments"]] == [exp_id]
    resp = requests.get(f"{api}/runs/get", params={"run_id": run_id}, timeout=CALL_TIMEOUT)
    assert resp.json()["run"]["info"]["run_uuid"] == run_id


def test_runs_logged_over_grpc_read_through_mlflow(client: MlflowClient, server: Server):
    """The other direction: a run written with our gRPC API, read with MLflow's client."""
    stub = server.stub
    exp_id = stub.CreateExperiment(pb.CreateExperimentRequest(name=unique("grpc-exp")), timeout=CALL_TIMEOUT).experiment_id
    run = stub.CreateRun(pb.CreateRunRequest(experiment_id=exp_id, run_name="from-grpc"), timeout=CALL_TIMEOUT).run
    stub.LogBatch(
        pb.LogBatchRequest(
            run_id=run.info.run_id,
            metrics=[pb.Metric(key="loss", value=v, timestamp=1000 + i, step=i) for i, v in enumerate([3.0, 2.0, 1.0])],
            params=[pb.Param(key="opt", value="adam")],
        ),
        timeout=CALL_TIMEOUT,
    )
    got = client.get_run(run.info.run_id)
    assert got.info.run_name == "from-grpc" and got.data.params == {"opt": "adam"}
    assert got.data.metrics == {"loss": 1.0}
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [3.0, 2.0, 1.0]


def _up_with_auth(tmp_path_factory, name: str, **env: str):
    """`mlops up` with `env` added to the environment (and no gateway token unless it
    names one); yields its MLflow URI once a reader's request is answered."""
    root = tmp_path_factory.mktemp(name)
    cmd, _, _, _, mlflow_uri = up_command(mlops_bin(), root / "data")
    env = {**{k: v for k, v in os.environ.items() if k != "MLOPS_MLFLOW_TOKEN"}, **env}
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=root)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            try:
                resp = requests.get(
                    f"{mlflow_uri}/api/2.0/mlflow/experiments/get",
                    params={"experiment_id": "0"},
                    headers={"Authorization": "Bearer reader-tok"},
                    timeout=1,
                )
                if resp.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        yield mlflow_uri
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=20) == 0, log_path.read_text(errors="replace")[-3000:]
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


AUTH_TOKENS = "reader-tok:reader,writer-tok:writer"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """`mlops up` with tracking's auth on; the gateway's own token is a reader's."""
    yield from _up_with_auth(
        tmp_path_factory, "mlops-auth", MLOPS_TRACKING_AUTH_TOKENS=AUTH_TOKENS, MLOPS_MLFLOW_TOKEN="reader-tok"
    )


@pytest.fixture(scope="module")
def auth_server_without_token(tmp_path_factory):
    """`mlops up` with tracking's auth on and no token of the gateway's own: a request
    without a credential reaches the services without one."""
    yield from _up_with_auth(tmp_path_factory, "mlops-auth-bare", MLOPS_TRACKING_AUTH_TOKENS=AUTH_TOKENS)


def test_up_refuses_an_invalid_setting_rather_than_dropping_it(tmp_path: Path):
    """A malformed MLOPS_TRACKING_AUTH_TOKENS must stop `mlops up`, not start it with the
    defaults, which would serve with auth off."""
    cmd, *_ = up_command(mlops_bin(), tmp_path / "data")
    env = {**os.environ, "MLOPS_TRACKING_AUTH_TOKENS": "tok:superuser"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "MLOPS_TRACKING_" in proc.stderr and "superuser" in proc.stderr, proc.stderr
    assert "ready" not in proc.stdout, proc.stdout


def test_credentials_reach_the_services(auth_server: str, monkeypatch):
    client = MlflowClient(auth_server)
    # No credential of its own: the gateway's (a reader's) goes along.
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    assert client.get_experiment("0").name == "Default"
    with pytest.raises(MlflowException) as e:
        client.create_experiment(unique("denied"))
    assert error_code(e) == "PERMISSION_DENIED"
    # The request's own bearer token wins (MLflow sends MLFLOW_TRACKING_TOKEN as one).
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "writer-tok")
    exp_id = client.create_experiment(unique("allowed"))
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "bogus")
    with pytest.raises(MlflowException) as e:
        client.get_experiment(exp_id)
    assert error_code(e) == "UNAUTHENTICATED"
    resp = requests.get(
        f"{auth_server}/api/2.0/mlflow/experiments/get",
        params={"experiment_id": exp_id},
        headers={"Authorization": "Bearer bogus"},
        timeout=CALL_TIMEOUT,
    )
    assert resp.status_code == 401


def test_writes_of_empty_lists_check_the_credential_and_the_target(auth_server_without_token: str):
    """A call whose list is empty (no datasets, no metrics, no tags) is still a write: it
    needs a writer's credential and a run or model that exists, like any other call, rather
    than being answered 200 by the gateway without asking the services."""
    api = f"{auth_server_without_token}/api/2.0/mlflow"
    writer = {"Authorization": "Bearer writer-tok"}

    def call(method: str, path: str, body: dict, headers: dict) -> requests.Response:
        return requests.request(method, f"{api}/{path}", json=body, headers=headers, timeout=CALL_TIMEOUT)

    resp = call("POST", "runs/create", {"experiment_id": "0"}, writer)
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["run"]["info"]["run_id"]
    resp = call("POST", "logged-models", {"experiment_id": "0", "name": unique("empty")}, writer)
    assert resp.status_code == 200, resp.text
    model_id = resp.json()["model"]["info"]["model_id"]
    no_run, no_model = uuid.uuid4().hex, f"m-{uuid.uuid4().hex}"

    # (method, path on an existing target, path on a missing one, body, its missing twin)
    calls = [
        ("POST", "runs/log-inputs", {"run_id": run_id, "datasets": []}, {"run_id": no_run, "datasets": []}),
        ("POST", "runs/log-inputs", {"run_id": run_id}, {"run_id": no_run}),
        ("POST", "runs/log-batch", {"run_id": run_id, "metrics": [], "params": [], "tags": []}, {"run_id": no_run}),
        ("POST", "runs/outputs", {"run_id": run_id, "models": []}, {"run_id": no_run, "models": []}),
    ]
    model_calls = [
        ("PATCH", "logged-models/{}/tags", {"tags": []}),
        ("POST", "logged-models/{}/params", {"params": []}),
    ]
    cases = [(m, p, p, body, missing) for m, p, body, missing in calls]
    cases += [(m, p.format(model_id), p.format(no_model), body, body) for m, p, body in model_calls]
    for method, path, missing_path, body, missing_body in cases:
        for headers, want in [
            ({}, (401, "UNAUTHENTICATED")),
            ({"Authorization": "Bearer bogus"}, (401, "UNAUTHENTICATED")),
            ({"Authorization": "Bearer reader-tok"}, (403, "PERMISSION_DENIED")),
        ]:
            resp = call(method, path, body, headers)
            assert (resp.status_code, resp.json().get("error_code")) == want, (path, body, headers, resp.text)
        resp = call(method, missing_path, missing_body, writer)
        assert (resp.status_code, resp.json().get("error_code")) == (404, "RESOURCE_DOES_NOT_EXIST"), (
            missing_path,
            missing_body,
            resp.text,
        )
        resp = call(method, path, body, writer)
        assert (resp.status_code, resp.json()) == (200, {}), (path, body, resp.text)


def test_integers_an_int64_cannot_hold_are_refused(client: MlflowClient, server: Server):
    """An integer field given a value beyond int64 (as a number or a string) is
    INVALID_PARAMETER_VALUE naming the field, as MLflow's server answers, rather than
    saturated to int64's limit and stored."""
    api = f"{server.mlflow_uri}/api/2.0/mlflow"
    exp_id = client.create_experiment(unique("int-range"))
    run_id = client.create_run(exp_id).info.run_id
    huge, tiny = 10**23, -1e23  # JSON 99999999999999999999999 (well, 1e23) and -1e+23
    point = {"key": "m", "value": 1.0, "timestamp": 1, "step": 0}
    posts = [
        ("runs/log-metric", {"run_id": run_id, **point, "step": huge}, "step"),
        ("runs/log-metric", {"run_id": run_id, **point, "step": "99999999999999999999999"}, "step"),
        ("runs/log-metric", {"run_id": run_id, **point, "timestamp": tiny}, "timestamp"),
        ("runs/log-metric", {"run_id": run_id, **point, "timestamp": str(-(10**23))}, "timestamp"),
        ("runs/log-batch", {"run_id": run_id, "metrics": [point, {**point, "step": huge}]}, "metrics[1].step"),
        ("runs/log-batch", {"run_id": run_id, "metrics": [{**point, "timestamp": tiny}]}, "metrics[0].timestamp"),
        ("runs/update", {"run_id": run_id, "end_time": huge}, "end_time"),
        ("runs/create", {"experiment_id": exp_id, "start_time": tiny}, "start_time"),
        ("runs/search", {"experiment_ids": [exp_id], "max_results": huge}, "max_results"),
        ("experiments/search", {"max_results": tiny}, "max_results"),
    ]
    gets = [
        ("metrics/get-history", {"run_id": run_id, "metric_key": "m", "max_results": str(huge)}, "max_results"),
        (
            "metrics/get-history-bulk-interval",
            {"run_ids": run_id, "metric_key": "m", "start_step": str(-(10**23)), "end_step": "1"},
            "start_step",
        ),
        (
            "metrics/get-history-bulk-interval",
            {"run_ids": run_id, "metric_key": "m", "max_results": str(huge)},
            "max_results",
        ),
    ]
    answers = [(p, f, requests.post(f"{api}/{p}", json=b, timeout=CALL_TIMEOUT)) for p, b, f in posts]
    answers += [(p, f, requests.get(f"{api}/{p}", params=b, timeout=CALL_TIMEOUT)) for p, b, f in gets]
    for path, field, resp in answers:
        assert resp.status_code == 400, (path, field, resp.text)
        body = resp.json()
        assert body["error_code"] == "INVALID_PARAMETER_VALUE", (path, body)
        assert f"'{field}'" in body["message"], (path, body)

    # Nothing of it was stored.
    run = client.get_run(run_id)
    assert run.data.metrics == {} and client.get_metric_history(run_id, "m") == []
    assert run.info.status == "RUNNING" and not run.info.end_time
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [run_id]
