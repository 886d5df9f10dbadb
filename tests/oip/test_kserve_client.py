"""KServe's Python gRPC client (kserve.InferenceGRPCClient, pinned) against our inference
service, unchanged: health, readiness, and inference with typed contents (a list) and raw
contents (a numpy array), with requested outputs and request ids."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferInput, InferRequest
from kserve.protocol.infer_type import RequestedOutput

from conftest import expected, fixture_json, rows



def load(target: str, name: str) -> None:
    """RepositoryModelLoad, which KServe's client does not offer: the request message is
    encoded by hand (field 2, model_name) and sent on a plain gRPC channel."""
    encoded = name.encode()
    request = b"\x12" + bytes([len(encoded)]) + encoded
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/RepositoryModelLoad",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        call(request, timeout=30)


@pytest.fixture(scope="module")
def served(platform):
    platform.register("breast", "logreg")
    return platform


def test_health_readiness_and_inference(served):
    f = fixture_json("logreg")
    x = rows(f, "input", 5)

    async def scenario():
        client = InferenceGRPCClient(url=served.grpc, timeout=30)
        assert await client.is_server_live()
        assert await client.is_server_ready()
        assert not await client.is_model_ready("breast")
        load(served.grpc, "breast")
        assert await client.is_model_ready("breast")

        # Raw contents (numpy) with a request id and one requested output.
        raw = InferInput("input", list(x.shape), "FP32")
        raw.set_data_from_numpy(x)
        resp = await client.infer(
            InferRequest("breast", [raw], request_id="k-1", request_outputs=[RequestedOutput("probabilities")])
        )
        assert resp.id == "k-1"
        assert [o.name for o in resp.outputs] == ["probabilities"]
        np.testing.assert_allclose(resp.outputs[0].as_numpy(), expected(f, "probabilities", 5), atol=1e-5)

        # Typed contents (a list), both outputs, answered as typed contents.
        typed = InferInput("input", list(x.shape), "FP32", data=x.reshape(-1).tolist())
        resp = await client.infer(InferRequest("breast", [typed], request_id="k-2"))
        outs = {o.name: o.as_numpy() for o in resp.outputs}
        np.testing.assert_array_equal(outs["label"].reshape(-1), expected(f, "label", 5))
        np.testing.assert_allclose(outs["probabilities"].reshape(5, 2), expected(f, "probabilities", 5), atol=1e-5)

        # A bad request fails with the server's message.
        bad = InferInput("input", [1, 29], "FP32", data=[0.0] * 29)
        with pytest.raises(Exception) as e:
            await client.infer(InferRequest("breast", [bad]))
        assert "expects [-1, 30]" in str(e.value)
        await client.close()

    asyncio.run(scenario())
