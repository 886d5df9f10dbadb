#!/usr/bin/env python3
"""Generates the small ONNX models in tests/fixtures/onnx/ used by the mlops-onnx crate.

Pinned: onnx==1.23.2 (with numpy 2.x; numpy only builds the weight arrays). Run it from any
directory in a throwaway virtualenv:

    python3 -m venv /tmp/onnx-venv
    /tmp/onnx-venv/bin/pip install onnx==1.23.2 numpy
    /tmp/onnx-venv/bin/python scripts/make-onnx-fixtures.py

The output is deterministic: the same onnx version writes byte-identical files, so a
regenerated fixture shows up in `git diff` only when this script (or the pin) changed.

Every model is checked with onnx.checker (full_check, which also runs shape inference) and run
once with onnx.reference.ReferenceEvaluator against the expected output written below, so a
fixture that would not load in a real runtime fails here, not in a Rust test.

The models (see tests/fixtures/onnx/README.md for the signatures):

- linear.onnx: y = x @ W + b with x float[N,4] and y float[N,1]; W and b are initializers,
  W = [[0.5], [-1.0], [2.0], [0.25]], b = [0.1]. For x = [[1, 2, 3, 4]], y = [[5.6]].
  ir_version 8, opset 13, so that older runtimes (tract, onnxruntime >= 1.10) load it.
- classifier.onnx: inputs features float[N,3] and bias float[1]; outputs
  score = ReduceSum(features, axis 1) + bias, float[N], and
  label = Cast(score > 0, int64), int64[N]. ir_version 8, opset 13.
  For features = [[1, 2, 3], [-4, 0, 1]] and bias = [0.5], score = [6.5, -2.5], label = [1, 0].
- weights_as_inputs.onnx: the same computation as linear.onnx written the old way (IR 3), where
  every initializer (W and b) is also listed in graph.input. A signature reader must not report
  W and b as inputs. ir_version 3, opset 8.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, checker, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

PINNED_ONNX = "1.23.2"
PRODUCER_NAME = "mlops-make-onnx-fixtures"
PRODUCER_VERSION = "1"

OUT_DIR = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx"

W = np.array([[0.5], [-1.0], [2.0], [0.25]], dtype=np.float32)
B = np.array([0.1], dtype=np.float32)


def finish(graph: onnx.GraphProto, *, ir_version: int, opset: int, doc: str) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
        doc_string=doc,
    )
    model.ir_version = ir_version
    checker.check_model(model, full_check=True)
    return model


def linear() -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes=[
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        name="linear",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "b")],
    )
    return finish(graph, ir_version=8, opset=13, doc="y = x @ W + b (mlops test fixture)")


def classifier() -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes=[
            # Opset 13 takes ReduceSum's axes as an input tensor, not an attribute.
            helper.make_node("ReduceSum", ["features", "axes"], ["total"], keepdims=0),
            helper.make_node("Add", ["total", "bias"], ["score"]),
            helper.make_node("Greater", ["score", "zero"], ["positive"]),
            helper.make_node("Cast", ["positive"], ["label"], to=TensorProto.INT64),
        ],
        name="classifier",
        inputs=[
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1]),
        ],
        outputs=[
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ],
        initializer=[
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        ],
    )
    return finish(
        graph,
        ir_version=8,
        opset=13,
        doc="score = sum(features) + bias; label = score > 0 (mlops test fixture)",
    )


def weights_as_inputs() -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes=[
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        name="weights_as_inputs",
        inputs=[
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            # Before IR 4 every initializer had to be declared as a graph input too.
            helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 1]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1]),
        ],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "b")],
    )
    return finish(
        graph,
        ir_version=3,
        opset=8,
        doc="y = x @ W + b with the weights also listed as graph inputs (mlops test fixture)",
    )


def run_checks(models: dict[str, onnx.ModelProto]) -> None:
    x = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    for name in ("linear", "weights_as_inputs"):
        (y,) = ReferenceEvaluator(models[name]).run(None, {"x": x})
        np.testing.assert_allclose(y, np.array([[5.6]], dtype=np.float32), rtol=1e-6)

    features = np.array([[1.0, 2.0, 3.0], [-4.0, 0.0, 1.0]], dtype=np.float32)
    bias = np.array([0.5], dtype=np.float32)
    score, label = ReferenceEvaluator(models["classifier"]).run(
        None, {"features": features, "bias": bias}
    )
    np.testing.assert_allclose(score, np.array([6.5, -2.5], dtype=np.float32))
    assert label.dtype == np.int64 and label.tolist() == [1, 0], label


def main() -> None:
    if onnx.__version__ != PINNED_ONNX:
        raise SystemExit(
            f"onnx {onnx.__version__} is installed but this script is pinned to {PINNED_ONNX}; "
            f"install it with `pip install onnx=={PINNED_ONNX} numpy` in a throwaway venv"
        )
    models = {
        "linear": linear(),
        "classifier": classifier(),
        "weights_as_inputs": weights_as_inputs(),
    }
    run_checks(models)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        path = OUT_DIR / f"{name}.onnx"
        path.write_bytes(model.SerializeToString(deterministic=True))
        print(f"wrote {path.relative_to(OUT_DIR.parent.parent.parent)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
