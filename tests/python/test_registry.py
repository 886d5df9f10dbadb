"""The model registry from Python over gRPC (stubs generated from proto/ by grpcio-tools)
and from the `mlops models` CLI as a CI step: register a run's ONNX model with its lineage,
record evaluations, and let `mlops models gate` decide with its exit code.

    MLOPS_BIN=target/debug/mlops .venv/bin/python -m pytest tests/python/test_registry.py
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest

import mlops_client
from mlops_client import registry_pb2 as rpb
from mlops_client import tracking_pb2 as pb

REPO = Path(__file__).resolve().parents[2]
LINEAR = (REPO / "tests" / "fixtures" / "onnx" / "linear.onnx").read_bytes()
T = 30


@pytest.fixture(scope="module")
def registry(server):
    stub = mlops_client.connect_registry(server.registry_target)
    yield stub
    stub.channel.close()


def _cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [os.environ["MLOPS_BIN"], "--registry-addr", server.registry_target, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def model(server, registry):
    """A model with two versions registered from one run, each evaluated on `holdout`."""
    exp = server.stub.CreateExperiment(pb.CreateExperimentRequest(name=f"reg-{uuid.uuid4().hex}"), timeout=T)
    run = server.stub.CreateRun(pb.CreateRunRequest(experiment_id=exp.experiment_id), timeout=T).run
    rid = run.info.run_id
    server.stub.LogBatch(
        pb.LogBatchRequest(run_id=rid, metrics=[pb.Metric(key="auc", value=0.9, timestamp=1, step=0)]), timeout=T
    )

    def chunks():
        yield pb.UploadArtifactRequest(header=pb.ArtifactHeader(run_id=rid, path="model/model.onnx"))
        yield pb.UploadArtifactRequest(chunk=LINEAR)

    server.stub.UploadArtifact(chunks(), timeout=T)
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    registry.CreateRegisteredModel(
        rpb.CreateRegisteredModelRequest(
            name=name, gate_policy=rpb.GatePolicy(require_passed_gate=True, aliases=["champion"])
        ),
        timeout=T,
    )
    versions = []
    for auc in (0.90, 0.93):
        v = registry.CreateModelVersion(
            rpb.CreateModelVersionRequest(name=name, run_id=rid, artifact_path="model"), timeout=T
        ).model_version
        registry.LogEvaluation(
            rpb.LogEvaluationRequest(name=name, version=v.version, dataset="holdout", metrics={"auc": auc, "loss": 0.3}),
            timeout=T,
        )
        versions.append(v)
    return {"name": name, "run_id": rid, "experiment_id": exp.experiment_id, "versions": versions}


def test_registration_from_python_reads_lineage_and_signature(model):
    v = model["versions"][0]
    assert v.status == rpb.READY
    assert v.lineage.run_id == model["run_id"]
    assert v.lineage.experiment_id == model["experiment_id"]
    assert [(m.key, m.value) for m in v.lineage.metrics] == [("auc", 0.9)]
    assert v.signature.format == "onnx"
    assert [(i.name, i.elem_type) for i in v.signature.inputs] == [("x", "float")]
    dims = v.signature.inputs[0].shape.dims
    assert (dims[0].symbol, dims[1].size) == ("N", 4)


def test_gate_as_a_ci_step(server, registry, model):
    name = model["name"]
    # the policy holds champion until a gate passes
    with pytest.raises(grpc.RpcError) as e:
        registry.SetRegisteredModelAlias(rpb.SetRegisteredModelAliasRequest(name=name, alias="champion", version=2), timeout=T)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    fail = _cli(server, "models", "gate", name, "2", "--baseline-version", "1",
                "--threshold", "auc:higher,abs=0.05", "--dataset", "holdout")  # fmt: skip
    assert fail.returncode == 3, (fail.stdout, fail.stderr)
    assert "FAIL" in fail.stdout and "minimum absolute change" in fail.stdout, fail.stdout

    ok = _cli(server, "--json", "models", "gate", name, "2", "--baseline-version", "1",
              "--threshold", "auc:higher,abs=0.02", "--threshold", "loss<=0.35")  # fmt: skip
    assert ok.returncode == 0, (ok.stdout, ok.stderr)
    result = json.loads(ok.stdout)
    assert result["passed"] is True
    assert [m["metric"] for m in result["metrics"]] == ["auc", "loss"]

    moved = _cli(server, "models", "alias", "set", name, "champion", "2")
    assert moved.returncode == 0, moved.stderr
    got = registry.GetModelVersionByAlias(rpb.GetModelVersionByAliasRequest(name=name, alias="champion"), timeout=T)
    assert got.model_version.version == 2


def test_cli_shows_lineage_and_reports_errors(server, model):
    shown = _cli(server, "--json", "models", "version", model["name"], "1")
    assert shown.returncode == 0, shown.stderr
    v = json.loads(shown.stdout)
    assert v["lineage"]["run_id"] == model["run_id"]
    assert v["signature"]["inputs"] == ["x: float[N,4]"]

    missing = _cli(server, "models", "show", "no-such-model")
    assert missing.returncode == 1
    assert "NotFound" in missing.stderr and "no-such-model" in missing.stderr, missing.stderr
    reserved = _cli(server, "models", "alias", "set", model["name"], "latest", "1")
    assert reserved.returncode == 1 and "reserved" in reserved.stderr, reserved.stderr
    bad = _cli(server, "models", "gate", model["name"], "2", "--threshold", "auc")
    assert bad.returncode == 1 and "which way is better" in bad.stderr, bad.stderr
