"""MLflow's own web UI on `mlops up`, as a person opens it: the pinned `mlflow` package's UI
build, found by `mlops up` in the active Python environment (this venv, named by
VIRTUAL_ENV), rendered in headless Chromium (Debian's `chromium`, which `make test`
installs; the test fails without it). Each page's rendered DOM is checked for what a user
looks for there, and a screenshot of it goes to pytest's temporary directory (its path is
printed).

Also the UI's own calls, answered the way MLflow's server answers them: the REST API under
/ajax-api/, GraphQL for the run page, /get-artifact, /model-versions/get-artifact."""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from conftest import chromium, mlops_bin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlops_up import Up  # noqa: E402


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """`mlops up` in this venv's environment: it must find mlflow's UI by itself."""
    root = tmp_path_factory.mktemp("mlflow-ui")
    env = dict(os.environ, VIRTUAL_ENV=sys.prefix)
    env.pop("MLOPS_MLFLOW_UI_DIR", None)
    up = Up(mlops_bin(), root, env=env)
    err = up.wait_ready("--mlflow-admin-addr")
    if err:
        pytest.fail(err, pytrace=False)
    uri = f"http://{up.addrs['--mlflow-addr']}"
    yield {"up": up, "uri": uri, "shots": root / "screenshots"}
    err = up.stop()
    if err:
        pytest.fail(err, pytrace=False)


@pytest.fixture(scope="module")
def logged(ui, tmp_path_factory):
    """An experiment with a run (params, a metric over 20 steps, a text file) and a
    registered model version from the run."""
    mlflow.set_tracking_uri(ui["uri"])
    mlflow.set_registry_uri(ui["uri"])
    client = MlflowClient(tracking_uri=ui["uri"], registry_uri=ui["uri"])
    suffix = uuid.uuid4().hex[:6]
    exp_name = f"ui-experiment-{suffix}"
    exp_id = client.create_experiment(exp_name)
    src = tmp_path_factory.mktemp("files")
    (src / "notes.txt").write_text("trained on the October data\n")
    (src / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    (src / "weights.bin").write_bytes(b"\x00\x01\x02\x03" * 16)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"ui-run-{suffix}") as r:
        mlflow.log_params({"learning_rate": "0.0125", "max_depth": "7"})
        for step in range(20):
            mlflow.log_metric("val_loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("accuracy_final", 0.9375)
        mlflow.log_artifact(str(src / "notes.txt"))
        mlflow.log_artifact(str(src / "MLmodel"), artifact_path="model")
        mlflow.log_artifact(str(src / "weights.bin"), artifact_path="model")
    with mlflow.start_run(experiment_id=exp_id, run_name=f"ui-run-b-{suffix}") as other:
        for step in range(5):
            mlflow.log_metric("val_loss", 2.0 / (step + 1), step=step)
    from mlflow.entities import Dataset, DatasetInput, InputTag

    client.log_inputs(
        r.info.run_id,
        [
            DatasetInput(Dataset(name="october", digest="d1", source_type="local", source="data/oct.parquet"),
                         tags=[InputTag(key="mlflow.data.context", value="training")]),
            DatasetInput(Dataset(name="holdout", digest="d2", source_type="local", source="data/h.parquet"), tags=[]),
        ],
    )
    model = f"ui-model-{suffix}"
    client.create_registered_model(model)
    mv = client.create_model_version(model, source=f"runs:/{r.info.run_id}/model", run_id=r.info.run_id)
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    return {
        "exp_id": exp_id,
        "exp_name": exp_name,
        "run_id": r.info.run_id,
        "other_run_id": other.info.run_id,
        "run_name": f"ui-run-{suffix}",
        "model": model,
        "version": mv.version,
    }



def render(ui, tmp_path: Path, route: str, name: str, budget_ms: int = 20000) -> str:
    """The DOM of the UI at `#/<route>` once its requests have settled, and a screenshot."""
    url = f"{ui['uri']}/#/{route}"
    dom = chromium(tmp_path / f"profile-{name}", "--window-size=1400,1000", f"--virtual-time-budget={budget_ms}", "--dump-dom", url)
    ui["shots"].mkdir(parents=True, exist_ok=True)
    shot = ui["shots"] / f"{name}.png"
    chromium(tmp_path / f"profile-{name}-shot", "--window-size=1400,1000", f"--virtual-time-budget={budget_ms}", f"--screenshot={shot}", url)
    assert shot.stat().st_size > 10_000, f"{shot} is nearly empty"
    print(f"screenshot: {shot}")
    return dom


def text_of(dom: str) -> str:
    """The visible text of a DOM, roughly: tags and scripts dropped, whitespace collapsed."""
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def get(url: str) -> tuple[int, bytes, object]:
    """(status, body, headers: case-insensitive)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def post_json(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_up_finds_the_ui_in_the_python_environment_and_says_so(ui):
    log = ui["up"].log_path.read_text()
    assert f"web UI    {ui['uri']}/" in log and "mlflow/server/js/build" in log, log
    status, body, headers = get(ui["uri"] + "/")
    assert status == 200 and b'<div id="root"' in body, body[:300]
    assert headers["Content-Type"].startswith("text/html")
    # The bundle index.html names is served from the package's build.
    bundle = re.search(rb'src="(static-files/static/js/main\.[0-9a-f]+\.js)"', body).group(1).decode()
    status, js, headers = get(f"{ui['uri']}/{bundle}")
    assert status == 200 and len(js) > 1_000_000 and headers["Content-Type"].startswith("text/javascript")
    assert get(f"{ui['uri']}/static-files/../../../etc/passwd")[0] == 404
    assert get(f"{ui['uri']}/static-files/static/js/nope.js")[0] == 404
    status, body, _ = get(ui["uri"] + "/version")
    assert (status, body) == (200, mlflow.__version__.encode())


def test_the_ui_calls_answer_as_mlflows_server_does(ui, logged):
    uri = ui["uri"]
    status, info, _ = get(uri + "/ajax-api/3.0/mlflow/server-info")
    assert status == 200 and json.loads(info)["features_enabled"] == {"gateway": False}
    status, found = post_json(
        uri + "/ajax-api/2.0/mlflow/experiments/search",
        {"max_results": 25, "filter": "tags.`mlflow.experiment.isGateway` IS NULL", "order_by": ["last_update_time DESC"]},
    )
    assert status == 200 and logged["exp_name"] in [e["name"] for e in found["experiments"]], found
    # The charts' call: run_ids repeated in the query string.
    q = urllib.parse.urlencode([("run_ids", logged["run_id"]), ("run_ids", logged["other_run_id"]), ("metric_key", "val_loss"), ("max_results", "320")])
    status, body, _ = get(f"{uri}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?{q}")
    points = json.loads(body)["metrics"] if status == 200 else body
    per_run = {rid: sum(m["run_id"] == rid for m in points) for rid in (logged["run_id"], logged["other_run_id"])}
    assert per_run == {logged["run_id"]: 20, logged["other_run_id"]: 5}, body[:300]
    q = urllib.parse.urlencode({"filter": f"run_id IN ('{logged['run_id']}')"})
    status, body, _ = get(f"{uri}/ajax-api/2.0/mlflow/model-versions/search?{q}")
    assert status == 200 and [v["name"] for v in json.loads(body)["model_versions"]] == [logged["model"]], body
    status, body, _ = get(f"{uri}/get-artifact?" + urllib.parse.urlencode({"path": "notes.txt", "run_uuid": logged["run_id"]}))
    assert (status, body) == (200, b"trained on the October data\n")
    q = urllib.parse.urlencode({"name": logged["model"], "version": logged["version"], "path": "MLmodel"})
    status, body, _ = get(f"{uri}/model-versions/get-artifact?{q}")
    assert (status, body) == (200, b"artifact_path: model\nflavors: {}\n")
    status, body, _ = get(f"{uri}/get-artifact?" + urllib.parse.urlencode({"path": "../x", "run_uuid": logged["run_id"]}))
    assert status == 400 and json.loads(body)["message"] == "Invalid path", body


def test_the_routes_mlflow_serves_under_ajax_api_only(ui, logged, tmp_path):
    uri, run = ui["uri"], logged["run_id"]
    # Whole histories of several runs (MLflow's compare page), runs in id order.
    q = urllib.parse.urlencode([("run_id", logged["other_run_id"]), ("run_id", run), ("metric_key", "val_loss")])
    status, body, _ = get(f"{uri}/ajax-api/2.0/mlflow/metrics/get-history-bulk?{q}")
    points = json.loads(body)["metrics"]
    assert status == 200 and len(points) == 25, body[:300]
    assert [p["run_id"] for p in points] == sorted([run] * 20 + [logged["other_run_id"]] * 5)
    status, body, _ = get(f"{uri}/ajax-api/2.0/mlflow/metrics/get-history-bulk?metric_key=val_loss")
    assert status == 400 and b"must specify at least one run_id" in body, body

    # The UI's upload: the body becomes the run's file, listed and downloadable after.
    req = urllib.request.Request(
        f"{uri}/ajax-api/2.0/mlflow/upload-artifact?" + urllib.parse.urlencode({"run_uuid": run, "path": "uploads/chart.json"}),
        data=b'{"points": 3}', method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
    status, body, _ = get(f"{uri}/get-artifact?" + urllib.parse.urlencode({"path": "uploads/chart.json", "run_uuid": run}))
    assert (status, body) == (200, b'{"points": 3}')
    for query, why in [({"path": "x.txt"}, b"must specify run_uuid"), ({"run_uuid": run, "path": "x.txt"}, b"must specify data")]:
        req = urllib.request.Request(f"{uri}/ajax-api/2.0/mlflow/upload-artifact?" + urllib.parse.urlencode(query), data=b"", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 400 and why in e.value.read(), query

    # The datasets the experiment's runs used (the runs table's dataset filter), and the same
    # through GraphQL's mutation.
    status, found = post_json(f"{uri}/ajax-api/2.0/mlflow/experiments/search-datasets", {"experiment_ids": [logged["exp_id"]]})
    assert status == 200, found
    assert found["dataset_summaries"] == [
        {"experiment_id": logged["exp_id"], "name": "holdout", "digest": "d2"},
        {"experiment_id": logged["exp_id"], "name": "october", "digest": "d1", "context": "training"},
    ], found
    query = f'mutation m {{ mlflowSearchDatasets(input: {{experimentIds: ["{logged["exp_id"]}"]}}) {{ datasetSummaries {{ name context }} }} }}'
    status, got = post_json(f"{uri}/graphql", {"query": query, "operationName": "m"})
    assert got["errors"] is None, got
    assert got["data"]["mlflowSearchDatasets"]["datasetSummaries"] == [
        {"name": "holdout", "context": ""}, {"name": "october", "context": "training"},
    ]

    # A logged model's file.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    model = client.create_logged_model(experiment_id=logged["exp_id"], name="ui-logged")
    (tmp_path / "conda.yaml").write_text("name: ui\n")
    client.log_model_artifact(model.model_id, str(tmp_path / "conda.yaml"))
    q = urllib.parse.urlencode({"artifact_file_path": "conda.yaml"})
    status, body, _ = get(f"{uri}/ajax-api/2.0/mlflow/logged-models/{model.model_id}/artifacts/files?{q}")
    assert (status, body) == (200, b"name: ui\n")
    status, body, _ = get(f"{uri}/ajax-api/2.0/mlflow/logged-models/{model.model_id}/artifacts/files")
    assert status == 400 and b"artifact_file_path" in body, body
    status, body, _ = get(f"{uri}/ajax-api/2.0/mlflow/logged-models/{model.model_id}/artifacts/directories")
    listed = json.loads(body)
    assert status == 200 and [f["path"] for f in listed["files"]] == ["conda.yaml"], body
    assert listed["root_uri"].startswith("mlflow-artifacts:/"), listed
    # `..` is refused in MLflow's exact words, which its clients compare.
    req = urllib.request.Request(
        f"{uri}/ajax-api/2.0/mlflow/upload-artifact?" + urllib.parse.urlencode({"run_uuid": run, "path": "../x.txt"}),
        data=b"x", method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400 and json.loads(e.value.read())["message"] == "Invalid path"


# The run page's GraphQL document, as the UI build sends it (Apollo adds __typename).
GET_RUN = """query GetRun($data: MlflowGetRunInput!) @component(name: "MLflow.ExperimentRunTracking") {
  mlflowGetRun(input: $data) {
    apiError { helpUrl code message __typename }
    run {
      info { runName status runUuid experimentId artifactUri endTime lifecycleStage startTime userId __typename }
      experiment { experimentId name tags { key value __typename } artifactLocation lifecycleStage lastUpdateTime __typename }
      modelVersions { status version name source __typename }
      data { metrics { key value step timestamp __typename } params { key value __typename } tags { key value __typename } __typename }
      inputs { datasetInputs { dataset { digest name profile schema source sourceType __typename } tags { key value __typename } __typename } modelInputs { modelId __typename } __typename }
      outputs { modelOutputs { modelId step __typename } __typename }
      __typename
    }
    __typename
  }
}"""


def test_graphql_answers_the_run_page_query(ui, logged):
    status, got = post_json(ui["uri"] + "/graphql", {"query": GET_RUN, "operationName": "GetRun", "variables": {"data": {"runId": logged["run_id"]}}})
    assert status == 200 and got["errors"] is None, got
    run = got["data"]["mlflowGetRun"]["run"]
    assert got["data"]["mlflowGetRun"]["__typename"] == "MlflowGetRunResponse"
    assert got["data"]["mlflowGetRun"]["apiError"] is None
    assert run["__typename"] == "MlflowRunExtension" and run["info"]["runUuid"] == logged["run_id"]
    assert isinstance(run["info"]["startTime"], str) and int(run["info"]["startTime"]) > 0
    assert run["experiment"]["name"] == logged["exp_name"]
    assert [(v["name"], v["version"], v["status"]) for v in run["modelVersions"]] == [(logged["model"], logged["version"], "READY")]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params == {"learning_rate": "0.0125", "max_depth": "7"}
    metrics = {m["key"]: (m["value"], m["step"]) for m in run["data"]["metrics"]}
    assert metrics["val_loss"] == (0.05, "19") and metrics["accuracy_final"][0] == 0.9375

    status, got = post_json(ui["uri"] + "/graphql", {"query": GET_RUN, "variables": {"data": {"runId": "0" * 32}}})
    assert status == 200 and got["data"]["mlflowGetRun"] is None and len(got["errors"]) == 1, got
    status, got = post_json(ui["uri"] + "/graphql", {"query": "{ mlflowGetRun(input: {runId: \"x\"}) { nope } }"})
    assert got == {"data": None, "errors": ["Cannot query field 'nope' on type 'MlflowGetRunResponse'."]}, got
    status, got = post_json(ui["uri"] + "/graphql", {"query": "{ mlflowGetRun("})
    assert got["data"] is None and got["errors"][0].startswith("Syntax Error"), got


def test_the_pages_render_in_chromium(ui, logged, tmp_path):
    exp, run = logged["exp_id"], logged["run_id"]
    page = text_of(render(ui, tmp_path, "experiments", "experiments"))
    assert logged["exp_name"] in page, page[:3000]

    page = text_of(render(ui, tmp_path, f"experiments/{exp}/runs", "runs-table"))
    assert logged["run_name"] in page, page[:3000]

    page = text_of(render(ui, tmp_path, f"experiments/{exp}/runs/{run}", "run-page"))
    for expected in ["learning_rate", "0.0125", "max_depth", "val_loss", "accuracy_final", "0.9375"]:
        assert expected in page, f"{expected} not on the run page: {page[:4000]}"

    dom = render(ui, tmp_path, f"experiments/{exp}/runs/{run}/model-metrics", "metric-chart")
    assert "val_loss" in text_of(dom), text_of(dom)[:3000]
    assert re.search(r"<svg|<canvas|js-plotly-plot", dom), "no chart drawn on the metrics tab"

    page = text_of(render(ui, tmp_path, f"experiments/{exp}/runs/{run}/artifacts", "artifacts"))
    assert "notes.txt" in page and "model" in page, page[:3000]

    page = text_of(render(ui, tmp_path, f"models/{logged['model']}/versions/{logged['version']}", "model-version"))
    assert logged["model"] in page and f"Version {logged['version']}" in page, page[:3000]
