#!/usr/bin/env python3
"""Builds the small ONNX models the `onnx` processor's tests run.

The models are written by hand with onnx.helper (no training, no torch), with fixed
weights that the Rust tests repeat as constants and evaluate independently in f64:

mlp.onnx — a 3-input multilayer perceptron with one hidden layer of 4 units:

    input  "features" float32 [batch, 3]
    h      = relu(features · W1ᵀ + b1)        W1: 4×3, b1: 4
    output "score"    float32 [batch, 1] = sigmoid(h · W2ᵀ + b2)   W2: 1×4, b2: 1

linear2.onnx — a 2-output linear model over 2 inputs (for multiple output columns and a
width different from mlp.onnx):

    input  "features" float32 [batch, 2]
    output "y"        float32 [batch, 2] = features · Wᵀ + b       W: 2×2, b: 2

The outputs are committed in processors/src/onnx/testdata/, so the tests need no Python.
Rerun after changing a weight, and change the constants in processors/src/onnx/tests.rs
to match:

    pip install onnx numpy
    python3 scripts/make-onnx-model.py
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parent.parent / "processors" / "src" / "onnx" / "testdata"

# mlp.onnx — keep in step with MLP_W1, MLP_B1, MLP_W2, MLP_B2 in the tests.
MLP_W1 = np.array(
    [
        [0.5, -0.25, 1.0],
        [-1.0, 0.75, 0.5],
        [0.25, 0.5, -0.5],
        [1.5, -1.0, 0.25],
    ],
    dtype=np.float32,
)
MLP_B1 = np.array([0.1, -0.2, 0.3, 0.0], dtype=np.float32)
MLP_W2 = np.array([[0.8, -0.6, 1.2, 0.4]], dtype=np.float32)
MLP_B2 = np.array([-0.5], dtype=np.float32)

# linear2.onnx — keep in step with LIN_W, LIN_B in the tests.
LIN_W = np.array([[2.0, -1.0], [0.5, 3.0]], dtype=np.float32)
LIN_B = np.array([1.0, -2.0], dtype=np.float32)

OPSET = 13
IR_VERSION = 8  # read by every ONNX runtime of the last years, tract included


def gemm(x, w, b, y, name):
    """y = x · wᵀ + b (Gemm with transB = 1)."""
    return helper.make_node("Gemm", [x, w, b], [y], name=name, transB=1)


def save(graph, path):
    model = helper.make_model(
        graph,
        producer_name="dda scripts/make-onnx-model.py",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print(f"{path}: {path.stat().st_size} bytes")


def mlp():
    graph = helper.make_graph(
        [
            gemm("features", "W1", "b1", "z1", "hidden"),
            helper.make_node("Relu", ["z1"], ["h"], name="relu"),
            gemm("h", "W2", "b2", "z2", "out"),
            helper.make_node("Sigmoid", ["z2"], ["score"], name="sigmoid"),
        ],
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(MLP_W1, "W1"),
            numpy_helper.from_array(MLP_B1, "b1"),
            numpy_helper.from_array(MLP_W2, "W2"),
            numpy_helper.from_array(MLP_B2, "b2"),
        ],
    )
    return graph


def linear2():
    return helper.make_graph(
        [gemm("features", "W", "b", "y", "linear")],
        "linear2",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            numpy_helper.from_array(LIN_W, "W"),
            numpy_helper.from_array(LIN_B, "b"),
        ],
    )


def check(path, x, expected):
    """Evaluates the saved model with onnx's reference evaluator as a sanity check."""
    from onnx.reference import ReferenceEvaluator

    got = ReferenceEvaluator(str(path)).run(None, {"features": x})[0]
    assert np.allclose(got, expected, atol=1e-6), (got, expected)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    save(mlp(), OUT / "mlp.onnx")
    save(linear2(), OUT / "linear2.onnx")

    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    h = np.maximum(x @ MLP_W1.T + MLP_B1, 0.0)
    check(OUT / "mlp.onnx", x, 1.0 / (1.0 + np.exp(-(h @ MLP_W2.T + MLP_B2))))
    x2 = np.array([[1.0, 2.0]], dtype=np.float32)
    check(OUT / "linear2.onnx", x2, x2 @ LIN_W.T + LIN_B)


if __name__ == "__main__":
    main()
