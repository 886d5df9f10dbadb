"""MLflow's own Python client against the platform's model registry REST API (`mlops up`
serves it beside the gRPC services): registered models (create, get, rename, update,
delete, tags, search with paging), versions registered from a run's artifacts (by
`runs:/` URI, by the run's artifact URI, by `mlflow.register_model`), aliases, stages
with `archive_existing_versions`, the download URI and `models:/` downloads, MLflow's
error codes; and a version created through MLflow is the same version through our
registry's gRPC API and the `mlops` CLI.

    MLOPS_BIN=target/debug/mlops .venv/bin/python -m pytest -q tests/python/test_mlflow_registry.py
"""

from __future__ import annotations

import json
import os
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
import grpc  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples" / "python"))

import mlops_client  # noqa: E402
from conftest import Server  # noqa: E402
from mlops_client import registry_pb2 as rpb  # noqa: E402
from mlops_client import tracking_pb2 as pb  # noqa: E402

T = 30.0
WEIGHTS = b"not a real model, but bytes the registry copies: \x00\x01\x02"


@pytest.fixture(scope="module")
def client(server: Server):
    """An MlflowClient whose tracking and registry URIs are the server's MLflow URI."""
    mlflow.set_tracking_uri(server.mlflow_uri)
    mlflow.set_registry_uri(server.mlflow_uri)
    yield MlflowClient(tracking_uri=server.mlflow_uri, registry_uri=server.mlflow_uri)
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def registry(server: Server):
    stub = mlops_client.connect_registry(server.registry_target)
    yield stub
    stub.channel.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def code_of(excinfo) -> str:
    return excinfo.value.error_code


@pytest.fixture(scope="module")
def run(client: MlflowClient, tmp_path_factory):
    """A finished run with `model/weights.bin` and an `MLmodel` file logged through MLflow."""
    exp_id = client.create_experiment(unique("mlflow-registry"))
    src = tmp_path_factory.mktemp("model")
    (src / "weights.bin").write_bytes(WEIGHTS)
    (src / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    with mlflow.start_run(experiment_id=exp_id) as r:
        mlflow.log_param("alpha", "0.5")
        mlflow.log_artifact(str(src / "weights.bin"), artifact_path="model")
        mlflow.log_artifact(str(src / "MLmodel"), artifact_path="model")
    return {"run_id": r.info.run_id, "artifact_uri": r.info.artifact_uri, "experiment_id": exp_id}


def test_registered_models_create_get_update_rename_tag_delete(client: MlflowClient):
    name = unique("fraud")
    m = client.create_registered_model(name, tags={"team": "risk"}, description="detects fraud")
    assert (m.name, m.description, m.tags) == (name, "detects fraud", {"team": "risk"})
    assert m.creation_timestamp > 0 and m.last_updated_timestamp >= m.creation_timestamp
    assert (m.latest_versions, m.aliases) == ([], {})

    with pytest.raises(MlflowException) as e:
        client.create_registered_model(name)
    assert code_of(e) == "RESOURCE_ALREADY_EXISTS"

    got = client.get_registered_model(name)
    assert (got.name, got.description, got.tags) == (name, "detects fraud", {"team": "risk"})

    updated = client.update_registered_model(name, description="catches fraud")
    assert updated.description == "catches fraud"

    client.set_registered_model_tag(name, "stage", "pilot")
    client.delete_registered_model_tag(name, "team")
    assert client.get_registered_model(name).tags == {"stage": "pilot"}

    new_name = unique("fraud-renamed")
    client.rename_registered_model(name, new_name)  # MLflow's client returns None
    renamed = client.get_registered_model(new_name)
    assert (renamed.name, renamed.description, renamed.tags) == (new_name, "catches fraud", {"stage": "pilot"})
    with pytest.raises(MlflowException) as e:
        client.get_registered_model(name)
    assert code_of(e) == "RESOURCE_DOES_NOT_EXIST"

    client.delete_registered_model(new_name)
    with pytest.raises(MlflowException) as e:
        client.get_registered_model(new_name)
    assert code_of(e) == "RESOURCE_DOES_NOT_EXIST"
    assert f"Registered Model with name={new_name} not found" in str(e.value), str(e.value)
    with pytest.raises(MlflowException) as e:
        client.delete_registered_model(new_name)
    assert code_of(e) == "RESOURCE_DOES_NOT_EXIST"


def test_search_registered_models_filters_and_pages(client: MlflowClient, registry):
    prefix = unique("paged")
    names = sorted(f"{prefix}-{i}" for i in range(3))
    for n in names:
        client.create_registered_model(n, tags={"batch": prefix})
    client.create_registered_model(unique("other"))

    first = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'", max_results=2)
    assert [m.name for m in first] == names[:2]
    assert first.token
    second = client.search_registered_models(
        filter_string=f"name LIKE '{prefix}%'", max_results=2, page_token=first.token
    )
    assert [m.name for m in second] == names[2:]
    assert not second.token

    by_tag = client.search_registered_models(filter_string=f"tags.batch = '{prefix}'", order_by=["name DESC"])
    assert [m.name for m in by_tag] == names[::-1]
    assert list(client.search_registered_models(filter_string="name = 'no-such-model-anywhere'")) == []

    # MLflow's client appends "tag.`mlflow.prompt.is_prompt` != 'true'" to every search:
    # ordinary models (without the tag) match it, prompts do not, as with MLflow's server.
    assert set(names) <= {m.name for m in client.search_registered_models(max_results=1000)}
    prompt = f"{prefix}-prompt"
    registry.CreateRegisteredModel(
        rpb.CreateRegisteredModelRequest(name=prompt, tags=[rpb.Tag(key="mlflow.prompt.is_prompt", value="true")]),
        timeout=T,
    )
    assert [m.name for m in client.search_registered_models(f"name LIKE '{prefix}%'")] == names
    asked = client.search_registered_models(f"name LIKE '{prefix}%' AND tags.`mlflow.prompt.is_prompt` = 'true'")
    assert [m.name for m in asked] == [prompt]

    # Pages above MLflow's limit are refused as MLflow refuses them.
    with pytest.raises(MlflowException) as e:
        client.search_registered_models(max_results=1001)
    assert code_of(e) == "INVALID_PARAMETER_VALUE"


@pytest.fixture(scope="module")
def model(client: MlflowClient, run):
    """A model with version 1 from `runs:/<run>/model` and version 2 from the run's artifact URI."""
    name = unique("churn")
    client.create_registered_model(name)
    v1 = client.create_model_version(name, source=f"runs:/{run['run_id']}/model", run_id=run["run_id"])
    v2 = client.create_model_version(
        name, source=f"{run['artifact_uri']}/model", run_id=run["run_id"], description="second", tags={"k": "v"}
    )
    return {"name": name, "v1": v1, "v2": v2}


def test_versions_are_registered_from_run_artifacts(client: MlflowClient, run, model):
    v1, v2 = model["v1"], model["v2"]
    assert (v1.name, v1.version, v1.status, v1.current_stage) == (model["name"], "1", "READY", "None")
    assert (v1.run_id, v1.source) == (run["run_id"], f"runs:/{run['run_id']}/model")
    assert v1.creation_timestamp > 0
    assert (v2.version, v2.status, v2.description, v2.tags) == ("2", "READY", "second", {"k": "v"})
    assert v2.source == f"runs:/{run['run_id']}/model"

    got = client.get_model_version(model["name"], "1")
    assert (got.version, got.run_id, got.status) == ("1", run["run_id"], "READY")
    assert client.get_model_version(model["name"], 2).version == "2"

    found = client.search_model_versions(f"name='{model['name']}'")
    assert sorted(v.version for v in found) == ["1", "2"]
    assert {v.version for v in client.search_model_versions(f"run_id='{run['run_id']}'")} >= {"1", "2"}

    # MLflow's default order is last updated first: version 2, until version 1 changes.
    assert [v.version for v in client.search_model_versions(f"name='{model['name']}'")] == ["2", "1"]
    time.sleep(0.01)
    updated = client.update_model_version(model["name"], "1", description="first")
    assert updated.description == "first"
    assert [v.version for v in client.search_model_versions(f"name='{model['name']}'")] == ["1", "2"]
    client.set_model_version_tag(model["name"], "1", "validated", "yes")
    client.delete_model_version_tag(model["name"], "2", "k")
    assert client.get_model_version(model["name"], "1").tags == {"validated": "yes"}
    assert client.get_model_version(model["name"], "2").tags == {}

    latest = client.get_registered_model(model["name"]).latest_versions
    assert [(v.version, v.current_stage) for v in latest] == [("2", "None")]


def test_mlflow_register_model_sends_the_runs_artifact_uri(client: MlflowClient, run):
    name = unique("registered")
    mv = mlflow.register_model(f"runs:/{run['run_id']}/model", name)
    assert (mv.name, mv.version, mv.status, mv.run_id) == (name, "1", "READY", run["run_id"])
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1"))
    assert (local / "weights.bin").read_bytes() == WEIGHTS
    # MLflow's client records which version it downloaded.
    assert (local / "registered_model_meta").is_file()


def test_aliases_set_get_move_and_delete(client: MlflowClient, model):
    name = model["name"]
    client.set_registered_model_alias(name, "champion", "1")
    v = client.get_model_version_by_alias(name, "champion")
    assert (v.version, v.aliases) == ("1", ["champion"])
    assert client.get_registered_model(name).aliases == {"champion": "1"}

    client.set_registered_model_alias(name, "champion", 2)
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert client.get_model_version(name, "1").aliases == []

    for reserved in ("latest", "v3"):
        with pytest.raises(MlflowException) as e:
            client.set_registered_model_alias(name, reserved, "1")
        assert code_of(e) == "INVALID_PARAMETER_VALUE", reserved
        assert "reserved" in e.value.message

    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(MlflowException) as e:
        client.get_model_version_by_alias(name, "champion")
    assert code_of(e) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_registered_model(name).aliases == {}


def test_stages_archive_existing_versions_and_latest(client: MlflowClient, server: Server, model):
    name = model["name"]
    v = client.transition_model_version_stage(name, "1", "Production")
    assert v.current_stage == "Production"
    v = client.transition_model_version_stage(name, "2", "production", archive_existing_versions=True)
    assert v.current_stage == "Production"
    assert client.get_model_version(name, "1").current_stage == "Archived"

    assert [v.version for v in client.get_latest_versions(name, stages=["Production"])] == ["2"]
    assert [v.version for v in client.get_latest_versions(name, stages=["staging"])] == []
    every = client.get_latest_versions(name)
    assert sorted((v.version, v.current_stage) for v in every) == [("1", "Archived"), ("2", "Production")]
    # MLflow's server also answers GET (its client tries POST first).
    r = requests.get(
        f"{server.mlflow_uri}/api/2.0/mlflow/registered-models/get-latest-versions",
        params={"name": name, "stages": "Production"},
        timeout=T,
    )
    assert r.status_code == 200
    assert [v["version"] for v in r.json()["model_versions"]] == ["2"]

    with pytest.raises(MlflowException) as e:
        client.transition_model_version_stage(name, "1", "Live")
    assert code_of(e) == "INVALID_PARAMETER_VALUE"
    assert "Invalid Model Version stage" in e.value.message


def test_download_uri_and_models_uri_downloads(client: MlflowClient, run, model, tmp_path):
    uri = client.get_model_version_download_uri(model["name"], "1")
    assert uri == f"{run['artifact_uri']}/model"
    assert uri.startswith("mlflow-artifacts:/")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{model['name']}/1", dst_path=str(tmp_path)))
    assert (local / "weights.bin").read_bytes() == WEIGHTS


def test_what_mlflow_created_is_the_same_version_over_grpc_and_in_the_cli(server: Server, run, model, registry):
    got = registry.GetModelVersion(rpb.GetModelVersionRequest(name=model["name"], version=1), timeout=T).model_version
    assert (got.version, got.run_id, got.status) == (1, run["run_id"], rpb.READY)
    assert (got.lineage.run_id, got.lineage.artifact_path) == (run["run_id"], "model")
    assert [p.key for p in got.lineage.params] == ["alpha"]
    files = registry.ListModelVersionFiles(rpb.ListModelVersionFilesRequest(name=model["name"], version=1), timeout=T)
    assert sorted(f.path for f in files.files) == ["MLmodel", "weights.bin"]

    res = subprocess.run(
        [os.environ["MLOPS_BIN"], "--registry-addr", server.registry_target, "models", "versions", model["name"], "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    shown = {v["version"]: v for v in json.loads(res.stdout)}
    assert set(shown) >= {1, 2}
    assert shown[1]["run_id"] == run["run_id"]
    assert shown[1]["lineage"]["artifact_path"] == "model"


def test_versions_from_a_logged_model(client: MlflowClient, server: Server, run):
    """`models:/m-...` with `model_id`, as MLflow 3 registers a logged model."""
    lm = server.stub.CreateLoggedModel(
        pb.CreateLoggedModelRequest(experiment_id=run["experiment_id"], source_run_id=run["run_id"]), timeout=T
    ).model

    def chunks():
        yield pb.UploadArtifactRequest(header=pb.ArtifactHeader(logged_model_id=lm.model_id, path="weights.bin"))
        yield pb.UploadArtifactRequest(chunk=WEIGHTS)

    server.stub.UploadArtifact(chunks(), timeout=T)
    name = unique("from-logged-model")
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"models:/{lm.model_id}", model_id=lm.model_id)
    assert (mv.version, mv.status, mv.source, mv.run_id) == ("1", "READY", f"models:/{lm.model_id}", run["run_id"])
    # MLflow's JSON names the logged model as the version's model_id (its client drops it).
    raw = requests.get(
        f"{server.mlflow_uri}/api/2.0/mlflow/model-versions/get", params={"name": name, "version": "1"}, timeout=T
    ).json()["model_version"]
    assert raw["model_id"] == lm.model_id
    uri = client.get_model_version_download_uri(name, "1")
    assert uri == f"mlflow-artifacts:/{run['experiment_id']}/models/{lm.model_id}/artifacts"


def test_errors_in_mlflows_codes(client: MlflowClient, server: Server, run, model):
    with pytest.raises(MlflowException) as e:
        client.get_registered_model(unique("absent"))
    assert code_of(e) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as e:
        client.get_model_version(model["name"], "99")
    assert code_of(e) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as e:
        client.get_model_version(model["name"], "one")
    assert code_of(e) == "INVALID_PARAMETER_VALUE"
    assert "must be an integer" in e.value.message
    with pytest.raises(MlflowException) as e:
        client.create_model_version(unique("absent"), source="s3://bucket/model")
    assert code_of(e) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as e:
        client.create_model_version(model["name"], source=f"runs:/{run['run_id']}/model", run_id=uuid.uuid4().hex)
    assert code_of(e) == "INVALID_PARAMETER_VALUE" and "must name the run that contains the source" in e.value.message

    # The methods of MLflow's REST API, and no others.
    r = requests.post(f"{server.mlflow_uri}/api/2.0/mlflow/registered-models/get", json={"name": "x"}, timeout=T)
    assert r.status_code == 405


def test_every_source_form_registers_as_mlflow_records_it(client: MlflowClient, server: Server, run):
    """What we can read is copied in (immutable); what we cannot is recorded as given, READY,
    as a reference whose files this server does not serve, never refused or half-created."""
    name = unique("sources")
    client.create_registered_model(name)
    elsewhere = uuid.uuid4().hex  # a run that lives on another server
    local_artifacts = (server.root / "data" / "artifacts").resolve() / run["experiment_id"] / run["run_id"] / "artifacts"
    forms = [
        (f"runs:/{run['run_id']}/model", run["run_id"], False),
        (f"{run['artifact_uri']}/model", run["run_id"], False),
        (f"runs:/{elsewhere}/model", None, True),
        ("s3://training-jobs/fraud/2026-12-05/model", None, True),
        (f"runs:/{run['run_id']}/no-such-dir", run["run_id"], True),
        # A local path inside the run's artifact directory, as tracking stores it.
        (f"{local_artifacts}/model", run["run_id"], False),
    ]
    for i, (source, run_id, reference) in enumerate(forms, start=1):
        mv = client.create_model_version(name, source=source, run_id=run_id, run_link=f"https://ci.example.com/{i}")
        assert (mv.version, mv.status) == (str(i), "READY"), source
        assert mv.run_link == f"https://ci.example.com/{i}", source
        if reference:
            assert mv.source == source, "a reference keeps its source as given"
            assert client.get_model_version_download_uri(name, str(i)) == source
        else:
            assert mv.source == f"runs:/{run['run_id']}/model", source
    # Local paths outside the run's artifact directory are refused, as MLflow's server refuses
    # them (a caller could otherwise register any file of the server's), with its words.
    for source, run_id in [("file:///tmp/elsewhere/model", None), ("relative/model", None),
                           ("/tmp/elsewhere/model", run["run_id"]), (f"{local_artifacts}/../../x", run["run_id"])]:
        with pytest.raises(MlflowException) as e:
            client.create_model_version(name, source=source, run_id=run_id)
        assert code_of(e) == "INVALID_PARAMETER_VALUE", source
        assert "To use a local path as a model version source" in e.value.message, e.value.message
    with pytest.raises(MlflowException) as e:
        client.create_model_version(name, source="https://host/models/%2e%2e/%2e%2e/etc")
    assert code_of(e) == "INVALID_PARAMETER_VALUE" and "without relative path references" in e.value.message
    assert len(client.search_model_versions(f"name='{name}'")) == len(forms), "nothing half-created"
    # The registry's gRPC API tells the two apart and refuses a reference's files with the reason.
    reg = mlops_client.connect_registry(server.registry_target)
    try:
        got = reg.GetModelVersion(rpb.GetModelVersionRequest(name=name, version=4)).model_version
        assert got.reference_only and got.source == "s3://training-jobs/fraud/2026-12-05/model"
        assert not reg.GetModelVersion(rpb.GetModelVersionRequest(name=name, version=1)).model_version.reference_only
        with pytest.raises(grpc.RpcError) as e:
            reg.ListModelVersionFiles(rpb.ListModelVersionFilesRequest(name=name, version=4))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "is a reference" in e.value.details()
    finally:
        reg.channel.close()

    # copy_model_version: promote dev's version 1 to prod, files and lineage copied.
    prod = unique("prod.sources")
    copied = client.copy_model_version(f"models:/{name}/1", prod)
    assert (copied.name, copied.version, copied.status, copied.source) == (prod, "1", "READY", f"models:/{name}/1")
    assert copied.run_id == run["run_id"]
    copied_ref = client.copy_model_version(f"models:/{name}/4", prod)
    assert (copied_ref.version, copied_ref.source) == ("2", f"models:/{name}/4")
    # MLflow's client looks the source up first and wraps the server's 404 in its own error.
    with pytest.raises(MlflowException) as e:
        client.copy_model_version(f"models:/{name}/99", prod)
    assert f"Model Version (name={name}, version=99) not found" in e.value.message, e.value.message


def test_a_logged_model_lists_its_registered_versions(client: MlflowClient, run):
    """MLflow's `mlflow.modelVersions` tag; a logged model with no files yet registers too."""
    name = unique("linked")
    client.create_registered_model(name)
    lm = client.create_logged_model(experiment_id=run["experiment_id"])
    for version in (1, 2):
        mv = client.create_model_version(name, source=lm.artifact_location, model_id=lm.model_id)
        assert (mv.version, mv.status) == (str(version), "READY")
    tag = client.get_logged_model(lm.model_id).tags["mlflow.modelVersions"]
    assert tag == f'[{{"name": "{name}", "version": 1}}, {{"name": "{name}", "version": 2}}]', tag
    # A run that used the model lists it among its inputs.
    from mlflow.entities import LoggedModelInput

    client.log_inputs(run["run_id"], models=[LoggedModelInput(lm.model_id)])
    assert [m.model_id for m in client.get_run(run["run_id"]).inputs.model_inputs] == [lm.model_id]


def test_delete_model_version(client: MlflowClient, model):
    """Last: it removes the version the other tests use."""
    name = model["name"]
    client.delete_model_version(name, "2")
    with pytest.raises(MlflowException) as e:
        client.get_model_version(name, "2")
    assert code_of(e) == "RESOURCE_DOES_NOT_EXIST"
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["1"]
    # Numbers are never reused.
    v3 = client.create_model_version(name, source=f"runs:/{model['v1'].run_id}/model", run_id=model["v1"].run_id)
    assert v3.version == "3"
