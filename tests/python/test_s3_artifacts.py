"""Artifacts on an S3-compatible store: `mlops up --artifact-root s3://...` against a
real S3 server on loopback (moto's standalone server, from the test venv): run artifacts,
the registry's model files, and the feature store's offline store (sources read, training
tables written) in the bucket.

    MLOPS_BIN=target/debug/mlops .venv/bin/python -m pytest tests/python/test_s3_artifacts.py
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples" / "python"))

import mlops_client  # noqa: E402
from conftest import cmd_arg, free_ports, up_command  # noqa: E402
from mlops_client import registry_pb2 as rpb  # noqa: E402
from mlops_client import tracking_pb2 as pb  # noqa: E402
from mlops.featurestore.v1 import feature_store_pb2 as fpb, feature_store_pb2_grpc as fgrpc  # noqa: E402

BUCKET = "mlops-artifacts"
PREFIX = "team-a/runs"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with code {proc.returncode} before listening", pytrace=False)
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"{what} did not listen on {port} within {timeout:g} s", pytrace=False)


def _stop(proc: subprocess.Popen, sig=signal.SIGINT) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    moto = Path(sys.executable).parent / "moto_server"
    port = free_ports(1)[0]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    _wait_port(port, proc, "moto_server")
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    _stop(proc, signal.SIGTERM)
    log.close()


@pytest.fixture(scope="module")
def server(s3, tmp_path_factory):
    binary = os.environ.get("MLOPS_BIN")
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail("MLOPS_BIN must point at the mlops binary (cargo build -p mlops-cli)", pytrace=False)
    endpoint, _ = s3
    root = tmp_path_factory.mktemp("mlops-s3")
    cmd, target, _, registry_target, _ = up_command(binary, root / "data")
    env = dict(os.environ, AWS_ENDPOINT=endpoint, AWS_ALLOW_HTTP="true", **CREDENTIALS)
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        cmd + ["--artifact-root", f"s3://{BUCKET}/{PREFIX}"], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    _wait_port(int(target.rsplit(":", 1)[1]), proc, "mlops up")
    _wait_port(int(registry_target.rsplit(":", 1)[1]), proc, "mlops up (registry)")
    stub = mlops_client.connect(target)
    stub.registry = mlops_client.connect_registry(registry_target)
    stub.feature_store_target = cmd_arg(cmd, "--feature-store-addr")
    _wait_port(int(stub.feature_store_target.rsplit(":", 1)[1]), proc, "mlops up (feature store)")
    yield stub
    stub.registry.channel.close()
    stub.channel.close()
    assert _stop(proc) == 0, (root / "server.log").read_text(errors="replace")[-3000:]
    log.close()


def _upload(stub, run_id: str, path: str, data: bytes):
    def messages():
        yield pb.UploadArtifactRequest(header=pb.ArtifactHeader(run_id=run_id, path=path))
        for i in range(0, len(data), 64 * 1024):
            yield pb.UploadArtifactRequest(chunk=data[i : i + 64 * 1024])

    return stub.UploadArtifact(messages(), timeout=60)


def test_artifacts_live_in_the_bucket(server, s3):
    _, client = s3
    run = server.CreateRun(pb.CreateRunRequest(run_name="s3-run"), timeout=30).run
    assert run.info.artifact_uri == f"s3://{BUCKET}/{PREFIX}/0/{run.info.run_id}/artifacts"

    model = os.urandom(6 * 1024 * 1024 + 123)  # more than one 5 MiB multipart part
    resp = _upload(server, run.info.run_id, "model/model.bin", model)
    assert resp.file_size == len(model)
    _upload(server, run.info.run_id, "metrics.json", b'{"auc": 0.97}')

    got = b"".join(c.chunk for c in server.DownloadArtifact(
        pb.DownloadArtifactRequest(run_id=run.info.run_id, path="model/model.bin"), timeout=60))
    assert hashlib.sha256(got).digest() == hashlib.sha256(model).digest()

    listing = server.ListArtifacts(pb.ListArtifactsRequest(run_id=run.info.run_id), timeout=30)
    assert [(f.path, f.is_dir) for f in listing.files] == [("metrics.json", False), ("model", True)]
    inner = server.ListArtifacts(pb.ListArtifactsRequest(run_id=run.info.run_id, path="model"), timeout=30)
    assert [(f.path, f.file_size) for f in inner.files] == [("model/model.bin", len(model))]

    keys = {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    base = f"{PREFIX}/0/{run.info.run_id}/artifacts"
    assert keys == {f"{base}/model/model.bin": len(model), f"{base}/metrics.json": 13}


def test_bad_paths_never_reach_the_bucket(server, s3):
    _, client = s3
    run = server.CreateRun(pb.CreateRunRequest(run_name="s3-bad"), timeout=30).run
    before = client.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)
    for bad in ("../../escape.bin", "/abs.bin", "a/../../b"):
        with pytest.raises(grpc.RpcError) as e:
            _upload(server, run.info.run_id, bad, b"x")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
    assert client.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == before


def test_registered_model_files_live_in_the_bucket(server, s3):
    """The registry copies a version's files under <artifact root>/models in the same bucket."""
    _, client = s3
    run = server.CreateRun(pb.CreateRunRequest(run_name="s3-model"), timeout=30).run
    _upload(server, run.info.run_id, "clf/model.pkl", b"\x80\x04pickled-model")
    server.registry.CreateRegisteredModel(rpb.CreateRegisteredModelRequest(name="s3-model"), timeout=30)
    v = server.registry.CreateModelVersion(
        rpb.CreateModelVersionRequest(name="s3-model", run_id=run.info.run_id, artifact_path="clf"), timeout=60
    ).model_version
    assert v.status == rpb.READY, v
    model_id = server.registry.GetRegisteredModel(rpb.GetRegisteredModelRequest(name="s3-model"), timeout=30).registered_model.id
    assert v.storage_location == f"s3://{BUCKET}/{PREFIX}/models/{model_id}/1"
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert f"{PREFIX}/models/{model_id}/1/model.pkl" in keys


FEATURE_DEFS = """
entities:
  - name: driver
    join_keys: [driver_id]
    value_type: int64
sources:
  - name: trips_source
    type: parquet
    path: trips
feature_views:
  - name: trips
    entities: [driver]
    ttl: 0
    source: trips_source
    schema:
      - {name: conv_rate, dtype: float32}
"""


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _features(server, *args: str) -> str:
    out = subprocess.run(
        [os.environ["MLOPS_BIN"], "--feature-store-addr", server.feature_store_target, "features", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, f"mlops features {' '.join(args)}: {out.stderr}"
    return out.stdout


def test_the_offline_store_lives_in_the_bucket(server, s3, tmp_path):
    """The feature store's offline store is <artifact root>/features: a source of two Parquet
    files read from the bucket, an entity table read from it, the training table written to
    it, and a materialization from it served online."""
    _, client = s3
    base = f"{PREFIX}/features"

    def t(h: int, m: int = 0) -> int:
        """Microseconds since the epoch at 2024-01-01 h:m UTC."""
        return 1_704_067_200_000_000 + (h * 60 + m) * 60_000_000

    for i, rows in enumerate([[(1, 0, 0.25), (2, 0, 0.75)], [(1, 1, 0.5)]]):
        part = pa.table({
            "driver_id": pa.array([r[0] for r in rows], pa.int64()),
            "event_timestamp": pa.array([t(r[1]) for r in rows], pa.timestamp("us", tz="UTC")),
            "conv_rate": pa.array([r[2] for r in rows], pa.float32()),
        })  # fmt: skip
        client.put_object(Bucket=BUCKET, Key=f"{base}/trips/part-{i}.parquet", Body=_parquet(part))
    entities = pa.table({
        "driver_id": pa.array([1, 1, 2, 3], pa.int64()),
        "event_timestamp": pa.array([t(0, 30), t(2), t(0), t(0)], pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    client.put_object(Bucket=BUCKET, Key=f"{base}/entities.parquet", Body=_parquet(entities))
    defs = tmp_path / "features.yaml"
    defs.write_text(FEATURE_DEFS)
    assert "created" in _features(server, "apply", "-f", str(defs))

    fs = fgrpc.FeatureStoreServiceStub(mlops_client.channel(server.feature_store_target))
    query = fpb.HistoricalQuery(
        features=["trips:conv_rate"], entity_parquet="entities.parquet", output_parquet="out/training.parquet"
    )
    answers = list(fs.GetHistoricalFeatures(iter([fpb.GetHistoricalFeaturesRequest(query=query)]), timeout=60))
    assert answers[-1].summary.rows == 4 and answers[-1].summary.output_parquet == "out/training.parquet", answers
    written = client.get_object(Bucket=BUCKET, Key=f"{base}/out/training.parquet")["Body"].read()
    got = pq.read_table(io.BytesIO(written))
    assert got.column("driver_id").to_pylist() == [1, 1, 2, 3]
    assert got.column("conv_rate").to_pylist() == [0.25, 0.5, 0.75, None]

    # A missing entity table on the bucket is NOT_FOUND, saying where it looked.
    missing = fpb.HistoricalQuery(features=["trips:conv_rate"], entity_parquet="nope.parquet")
    with pytest.raises(grpc.RpcError) as e:
        list(fs.GetHistoricalFeatures(iter([fpb.GetHistoricalFeaturesRequest(query=missing)]), timeout=60))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "nope.parquet" in e.value.details(), e.value.details()

    # Materialized from the bucket into the online store, and served.
    assert "trips" in _features(server, "materialize", "--end", "now")
    online = json.loads(_features(server, "--json", "get", "--features", "trips:conv_rate", "--entity", "driver_id=1,2,3"))
    assert [(r["conv_rate"]["status"], r["conv_rate"].get("value")) for r in online] == [
        ("PRESENT", 0.5), ("PRESENT", 0.75), ("NOT_FOUND", None)
    ], online
