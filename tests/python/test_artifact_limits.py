"""Artifact uploads at the edges, through MLflow's client and the gateway: names a
filesystem cannot hold answer 400 (MLflow's client retries a 503 for minutes), an upload
over MLOPS_TRACKING_MAX_ARTIFACT_BYTES answers 413, and neither message says where the
server keeps its files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

# MLflow's client retries 429 and 5xx for minutes by default: fail fast instead.
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "60"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

import mlflow  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from conftest import mlops_bin, up_command  # noqa: E402

CALL_TIMEOUT = 30.0
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """`mlops up` with artifacts capped at LIMIT bytes; yields (MLflow URI, data dir)."""
    root = tmp_path_factory.mktemp("mlops-limits")
    data = root / "data"
    cmd, _, _, _, mlflow_uri = up_command(mlops_bin(), data)
    env = {**os.environ, "MLOPS_TRACKING_MAX_ARTIFACT_BYTES": str(LIMIT)}
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=root)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            try:
                resp = requests.get(f"{mlflow_uri}/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"}, timeout=1)
                if resp.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        mlflow.set_tracking_uri(mlflow_uri)
        yield mlflow_uri, data
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=20) == 0, log_path.read_text(errors="replace")[-3000:]
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_long_and_reserved_names_are_refused_with_400(limited, tmp_path: Path):
    mlflow_uri, data = limited
    client = MlflowClient(mlflow_uri)
    exp_id = client.create_experiment(unique("names"))
    fits = tmp_path / ("n" * 255)
    fits.write_bytes(b"abc")
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_artifact(str(fits))  # 255 bytes: as long as a file name can be
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["n" * 255]

    # A longer name cannot be a local file either: sent as MLflow's client sends it.
    base = f"{mlflow_uri}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run.info.run_id}/artifacts"
    resp = requests.put(f"{base}/{'n' * 256}", data=b"abc", timeout=CALL_TIMEOUT)
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE", resp.text
    assert "255 bytes" in resp.json()["message"] and str(data) not in resp.text, resp.text
    resp = requests.put(f"{base}/model.bin%231", data=b"x", timeout=CALL_TIMEOUT)
    assert resp.status_code == 400, resp.text
    assert "reserved" in resp.json()["message"] and str(data) not in resp.text, resp.text


def test_uploads_over_the_limit_answer_413(limited, tmp_path: Path):
    mlflow_uri, data = limited
    client = MlflowClient(mlflow_uri)
    exp_id = client.create_experiment(unique("limit"))
    with mlflow.start_run(experiment_id=exp_id) as run:
        (tmp_path / "fits.bin").write_bytes(os.urandom(LIMIT))
        mlflow.log_artifact(str(tmp_path / "fits.bin"))
        (tmp_path / "big.bin").write_bytes(os.urandom(LIMIT + 1))
        # MLflow's artifact client raises the HTTP error itself (it would retry a 5xx first).
        with pytest.raises(requests.HTTPError) as e:
            mlflow.log_artifact(str(tmp_path / "big.bin"))
        assert e.value.response.status_code == 413, e.value.response.text
        assert f"{LIMIT} bytes" in e.value.response.json()["message"], e.value.response.text
    base = f"{mlflow_uri}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run.info.run_id}/artifacts"
    # Far over: refused after the first chunk, while the client is still sending.
    resp = requests.put(f"{base}/big.bin", data=os.urandom(8 * 1024 * 1024), timeout=CALL_TIMEOUT)
    assert resp.status_code == 413, resp.text
    assert f"{LIMIT} bytes" in resp.json()["message"] and str(data) not in resp.text, resp.text
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["fits.bin"]


def test_locations_with_dot_dot_are_refused(limited):
    mlflow_uri, _ = limited
    client = MlflowClient(mlflow_uri)
    for bad in ["mlflow-artifacts:/x%2f..%2f..", "mlflow-artifacts:/a/../../b"]:
        with pytest.raises(MlflowException) as e:
            client.create_experiment(unique("escape"), artifact_location=bad)
        assert e.value.error_code == "INVALID_PARAMETER_VALUE", (bad, e.value)
    exp_id = client.create_experiment(unique("elsewhere"), artifact_location="s3://other-bucket/x")
    assert client.get_experiment(exp_id).artifact_location == "s3://other-bucket/x"
