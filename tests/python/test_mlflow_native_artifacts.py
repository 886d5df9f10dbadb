"""The MLflow gateway without its artifact proxy (MLOPS_MLFLOW_SERVE_ARTIFACTS=false, MLflow's
`mlflow server --no-serve-artifacts`): runs and experiments advertise the tracking service's
own `file://` locations, MLflow's client reads and writes them directly, the proxy's routes
answer MLflow's 503, and a local path registers when it lies in the run's artifact directory
(MLflow's rule, with its words) and is copied into the registry like any readable source."""

from __future__ import annotations

import os
import sys
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts

from conftest import mlops_bin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlops_up import Up  # noqa: E402

T = 30


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    root = tmp_path_factory.mktemp("native-artifacts")
    env = dict(os.environ, MLOPS_MLFLOW_SERVE_ARTIFACTS="false")
    up = Up(mlops_bin(), root, env=env, args=("--no-mlflow-ui", "--artifact-root", str(root / "store")))
    err = up.wait_ready("--mlflow-admin-addr")
    if err:
        pytest.fail(err, pytrace=False)
    uri = f"http://{up.addrs['--mlflow-addr']}"
    yield {"client": MlflowClient(tracking_uri=uri, registry_uri=uri), "uri": uri, "root": root}
    err = up.stop()
    if err:
        pytest.fail(err, pytrace=False)


def test_the_client_writes_and_reads_the_stores_own_files(native, tmp_path):
    client, root = native["client"], native["root"]
    exp_id = client.create_experiment(f"native-{uuid.uuid4().hex[:6]}")
    store = (root / "store").resolve()
    assert client.get_experiment(exp_id).artifact_location == f"file://{store}/{exp_id}"
    run = client.create_run(exp_id)
    assert run.info.artifact_uri == f"file://{store}/{exp_id}/{run.info.run_id}/artifacts"

    src = tmp_path / "src"
    src.mkdir()
    (src / "my.file").write_text("Hello, World!")
    client.log_artifact(run.info.run_id, str(src / "my.file"))
    client.log_artifacts(run.info.run_id, str(src), "dir")
    # The client wrote into the tracking service's store, and the server lists what it finds.
    on_disk = Path(urllib.parse.urlparse(run.info.artifact_uri).path)
    assert (on_disk / "dir" / "my.file").read_text() == "Hello, World!"
    r = requests.get(
        f"{native['uri']}/api/2.0/mlflow/artifacts/list", params={"run_id": run.info.run_id}, timeout=T
    )
    assert r.status_code == 200, r.text
    assert r.json()["root_uri"] == run.info.artifact_uri
    assert {f["path"] for f in r.json()["files"]} == {"my.file", "dir"}
    got = download_artifacts(run_id=run.info.run_id, artifact_path="dir", tracking_uri=native["uri"])
    assert (Path(got) / "my.file").read_text() == "Hello, World!"

    # The proxy is off, as on MLflow's server with --no-serve-artifacts.
    r = requests.get(f"{native['uri']}/api/2.0/mlflow-artifacts/artifacts", params={"path": "x"}, timeout=T)
    assert r.status_code == 503 and "--no-serve-artifacts" in r.text, r.text

    # A local path inside the run's artifact directory registers and is copied in; the
    # download URI is the registry's copy's source, a native location too.
    name = f"native-model-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    for i, source in enumerate([f"{run.info.artifact_uri}/dir", f"{on_disk}/dir", f"{run.info.artifact_uri}/dir/x/.."], 1):
        mv = client.create_model_version(name, source=source, run_id=run.info.run_id)
        assert (mv.version, mv.status, mv.source) == (str(i), "READY", f"runs:/{run.info.run_id}/dir"), source
    uri = client.get_model_version_download_uri(name, "1")
    assert uri == f"{run.info.artifact_uri}/dir", uri

    # MLflow's refusals, with its words: nothing is registered.
    for source, run_id in [
        (run.info.artifact_uri, None),
        ("file:///tmp", run.info.run_id),
        (f"{on_disk}/../../other", run.info.run_id),
        ("relative/model", run.info.run_id),
    ]:
        r = requests.post(
            f"{native['uri']}/api/2.0/mlflow/model-versions/create",
            json={"name": name, "source": source, **({"run_id": run_id} if run_id else {})},
            timeout=T,
        )
        assert r.status_code == 400, (source, r.text)
        assert "To use a local path as a model version source" in r.json()["message"], r.text
    r = requests.post(
        f"{native['uri']}/api/2.0/mlflow/model-versions/create",
        json={"name": name, "source": "file://10.1.2.3/path/to/model", "run_id": run.info.run_id},
        timeout=T,
    )
    assert r.status_code == 500 and "is not a valid remote uri" in r.json()["message"], r.text
    r = requests.post(
        f"{native['uri']}/api/2.0/mlflow/model-versions/create",
        json={"name": name, "source": "s3://bucket/models/..%2f..%2fsecrets"},
        timeout=T,
    )
    assert r.status_code == 400 and "an absolute path must be provided" in r.json()["message"], r.text
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["3", "2", "1"]
