"""Triton's own gRPC client (tritonclient.grpc, pinned) against our inference service, unchanged:
every RPC it offers that we serve, raw tensors of every type the fixtures use (FP32, INT64,
BYTES both ways), requested outputs, request ids, load parameters, statistics, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import expected, fixture_json, rows



@pytest.fixture(scope="module")
def client(platform):
    platform.register("breast", "logreg")
    platform.register("forest", "rf")
    platform.register("colors", "pipeline")
    platform.register("iris_names", "label_encoder")
    c = grpcclient.InferenceServerClient(url=platform.grpc)
    yield c
    c.close()


def test_server_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "mlops-inference"
    assert "model_repository" in meta["extensions"]


def test_load_infer_and_describe(client):
    assert not client.is_model_ready("breast")
    client.load_model("breast")
    assert client.is_model_ready("breast")
    assert client.is_model_ready("breast", "1")

    meta = client.get_model_metadata("breast", as_json=True)
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "30"]}]
    config = client.get_model_config("breast", as_json=True)["config"]
    assert config["max_batch_size"] == 1024
    assert config["input"][0]["dims"] == ["30"]

    f = fixture_json("logreg")
    x = rows(f, "input", 20)
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("breast", [inp], request_id="req-7")
    assert result.get_response().id == "req-7"
    np.testing.assert_array_equal(result.as_numpy("label"), expected(f, "label", 20))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected(f, "probabilities", 20), atol=1e-5)

    only = client.infer("breast", [inp], outputs=[grpcclient.InferRequestedOutput("label")])
    assert only.as_numpy("probabilities") is None
    np.testing.assert_array_equal(only.as_numpy("label"), expected(f, "label", 20))

    stats = client.get_inference_statistics("breast", as_json=True)["model_stats"][0]
    assert stats["inference_count"] == "40"
    assert stats["inference_stats"]["success"]["count"] == "2"

    index = {m["name"]: m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index["breast"]["state"] == "READY"
    assert index["forest"].get("state") == "UNAVAILABLE"


def test_bytes_tensors_both_ways(client):
    # A string input (the pipeline's categorical column) and a string output (class names).
    client.load_model("colors")
    f = fixture_json("pipeline")
    num = rows(f, "num", 20)
    cat_spec = next(i for i in f["inputs"] if i["name"] == "cat")
    cat = np.asarray([s.encode() for s in cat_spec["data"]], dtype=object).reshape(cat_spec["shape"])
    a = grpcclient.InferInput("num", list(num.shape), "FP32")
    a.set_data_from_numpy(num)
    b = grpcclient.InferInput("cat", list(cat.shape), "BYTES")
    b.set_data_from_numpy(cat)
    result = client.infer("colors", [a, b])
    np.testing.assert_array_equal(result.as_numpy("label"), expected(f, "label", 20))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected(f, "probabilities", 20), atol=1e-5)

    client.load_model("iris_names")
    f = fixture_json("label_encoder")
    x = rows(f, "input", 20)
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    labels = client.infer("iris_names", [inp]).as_numpy("label")
    assert [v.decode() for v in labels.reshape(-1)] == expected(f, "label", 20).reshape(-1).tolist()


def test_load_parameters_and_dynamic_batching(client):
    config = {"max_batch_size": 32, "dynamic_batching": {"max_queue_delay_microseconds": 2000, "preferred_batch_size": [8]}}
    client.load_model("forest", config=json.dumps(config))
    got = client.get_model_config("forest", as_json=True)["config"]
    assert got["max_batch_size"] == 32
    assert got["dynamic_batching"]["preferred_batch_size"] == [8]
    f = fixture_json("rf")
    x = rows(f, "input", 20)
    # Requests of several sizes in flight at once, each getting exactly its rows back.
    import queue

    done: queue.Queue = queue.Queue()
    sizes = [1, 3, 2, 5, 4, 1]
    for i, n in enumerate(sizes):
        inp = grpcclient.InferInput("input", [n, 30], "FP32")
        inp.set_data_from_numpy(x[i : i + n])
        client.async_infer("forest", [inp], callback=lambda result, error, i=i, n=n: done.put((i, n, result, error)))
    results = [done.get(timeout=30) for _ in sizes]
    for i, n, r, e in results:
        assert e is None, e
        np.testing.assert_allclose(r.as_numpy("probabilities"), expected(f, "probabilities", 20)[i : i + n], atol=1e-5)


def test_streaming_inference(client):
    client.load_model("breast")
    f = fixture_json("logreg")
    x = rows(f, "input", 4)
    import queue

    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(4):
            inp = grpcclient.InferInput("input", [1, 30], "FP32")
            inp.set_data_from_numpy(x[i : i + 1])
            client.async_stream_infer("breast", [inp], request_id=f"s{i}")
        got = {}
        for _ in range(4):
            r, e = answers.get(timeout=30)
            assert e is None, e
            got[r.get_response().id] = r.as_numpy("label")[0]
    finally:
        client.stop_stream()
    assert [got[f"s{i}"] for i in range(4)] == expected(f, "label", 4).tolist()


def test_errors_name_what_was_expected(client):
    client.load_model("breast")
    bad = grpcclient.InferInput("input", [2, 15], "FP32")
    bad.set_data_from_numpy(np.zeros((2, 15), dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("breast", [bad])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "expects [-1, 30]" in e.value.message()

    wrong = grpcclient.InferInput("input", [1, 30], "FP64")
    wrong.set_data_from_numpy(np.zeros((1, 30), dtype=np.float64))
    with pytest.raises(InferenceServerException) as e:
        client.infer("breast", [wrong])
    assert "expects FP32" in e.value.message()

    with pytest.raises(InferenceServerException) as e:
        client.infer("nobody", [bad])
    assert e.value.status() == "StatusCode.NOT_FOUND"

    with pytest.raises(InferenceServerException) as e:
        client.load_model("no-such-model")
    assert e.value.status() == "StatusCode.NOT_FOUND"

    client.unload_model("breast")
    assert not client.is_model_ready("breast")
    ok = grpcclient.InferInput("input", [1, 30], "FP32")
    ok.set_data_from_numpy(np.zeros((1, 30), dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("breast", [ok])
    assert e.value.status() == "StatusCode.UNAVAILABLE"
    assert "unloaded" in e.value.message()
