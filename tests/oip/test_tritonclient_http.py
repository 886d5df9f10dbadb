"""Triton's own HTTP client (tritonclient.http, pinned) against our inference service's Open
Inference Protocol over HTTP/JSON, unchanged: health, metadata, config, repository calls,
inference with binary tensors (its default) and JSON tensors, BYTES, statistics, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import expected, fixture_json, rows



@pytest.fixture(scope="module")
def client(platform):
    platform.register("breast", "logreg")
    platform.register("iris_names", "label_encoder")
    c = httpclient.InferenceServerClient(url=platform.http)
    yield c
    c.close()


def test_health_metadata_and_repository(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata()["name"] == "mlops-inference"
    assert not client.is_model_ready("breast")
    client.load_model("breast")
    assert client.is_model_ready("breast")
    meta = client.get_model_metadata("breast")
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]
    assert client.get_model_config("breast")["max_batch_size"] == 1024
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["breast"]["state"] == "READY"


@pytest.mark.parametrize("binary", [True, False])
def test_inference_binary_and_json(client, binary):
    client.load_model("breast")
    f = fixture_json("logreg")
    x = rows(f, "input", 20)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("label", binary_data=binary),
        httpclient.InferRequestedOutput("probabilities", binary_data=binary),
    ]
    result = client.infer("breast", [inp], outputs=outputs, request_id="h-1")
    assert result.get_response()["id"] == "h-1"
    np.testing.assert_array_equal(result.as_numpy("label"), expected(f, "label", 20))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected(f, "probabilities", 20), atol=1e-5)
    stats = client.get_inference_statistics("breast")["model_stats"][0]
    assert stats["inference_count"] >= 20


def test_bytes_output(client):
    client.load_model("iris_names")
    f = fixture_json("label_encoder")
    x = rows(f, "input", 20)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    labels = client.infer("iris_names", [inp]).as_numpy("label")
    assert [v.decode() for v in labels.reshape(-1)] == expected(f, "label", 20).reshape(-1).tolist()


def test_errors(client):
    client.load_model("breast")
    bad = httpclient.InferInput("input", [2, 15], "FP32")
    bad.set_data_from_numpy(np.zeros((2, 15), dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("breast", [bad])
    assert "expects [-1, 30]" in e.value.message()
    with pytest.raises(InferenceServerException):
        client.infer("nobody", [bad])
    client.unload_model("breast")
    assert not client.is_model_ready("breast")
