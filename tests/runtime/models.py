"""Small ONNX models built in code for the runtime tests (no binary files in the repo)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper

OPSET = [helper.make_opsetid("", 17)]


def _model(graph: onnx.GraphProto, **kwargs) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=OPSET, **kwargs)
    model.ir_version = 8  # onnxruntime 1.32 accepts up to 11; 8 keeps older peers happy
    return model


def mlp() -> onnx.ModelProto:
    """y = relu(x @ W + b); x: ['batch', 4] float."""
    rng = np.random.default_rng(1)
    w = helper.make_tensor("W", T.FLOAT, [4, 3], rng.standard_normal(12).astype(np.float32))
    b = helper.make_tensor("b", T.FLOAT, [3], [0.1, -0.2, 0.3])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", T.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["batch", 3])],
        [w, b],
    )
    return _model(graph, producer_name="kp-tests", doc_string="a tiny MLP", model_version=3)


def two_inputs() -> onnx.ModelProto:
    """Gather rows of a fixed [5, 2] float table by int64 indices; also the indices + 1."""
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "idx"], ["rows"], axis=0),
            helper.make_node("Add", ["idx", "one"], ["idx1"]),
        ],
        "two_inputs",
        [
            helper.make_tensor_value_info("table", T.FLOAT, [5, 2]),
            helper.make_tensor_value_info("idx", T.INT64, ["n"]),
        ],
        [
            helper.make_tensor_value_info("rows", T.FLOAT, ["n", 2]),
            helper.make_tensor_value_info("idx1", T.INT64, ["n"]),
        ],
        [helper.make_tensor("one", T.INT64, [], [1])],
    )
    return _model(graph)


def conv() -> onnx.ModelProto:
    """Conv 3->4 (3x3, pad 1) + Softmax over channels; x: [1, 3, 8, 8] float."""
    rng = np.random.default_rng(2)
    w = helper.make_tensor("w", T.FLOAT, [4, 3, 3, 3], rng.standard_normal(108).astype(np.float32))
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Softmax", ["c"], ["p"], axis=1),
        ],
        "conv",
        [helper.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("p", T.FLOAT, [1, 4, 8, 8])],
        [w],
    )
    return _model(graph)


def overridable() -> onnx.ModelProto:
    """y = x * s where initializer s is also a graph input (overridable); metadata set."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["y"])],
        "overridable",
        [helper.make_tensor_value_info("x", T.FLOAT, [None, 2]),
         helper.make_tensor_value_info("s", T.FLOAT, [2])],
        [helper.make_tensor_value_info("y", T.FLOAT, None)],
        [helper.make_tensor("s", T.FLOAT, [2], [2.0, 3.0])],
        doc_string="graph doc",
    )
    model = _model(graph, producer_name="p", domain="kp.test", model_version=7, doc_string="model doc")
    helper.set_model_props(model, {"author": "tests", "license": "none"})
    return model


def logic() -> onnx.ModelProto:
    """out = where(cond, a, -a) with bool cond and double a, rank-unknown-free shapes."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["na"]), helper.make_node("Where", ["cond", "a", "na"], ["out"])],
        "logic",
        [helper.make_tensor_value_info("cond", T.BOOL, [3]),
         helper.make_tensor_value_info("a", T.DOUBLE, [3])],
        [helper.make_tensor_value_info("out", T.DOUBLE, [3])],
    )
    return _model(graph)


ALL = {"mlp": mlp, "two_inputs": two_inputs, "conv": conv, "overridable": overridable, "logic": logic}


def sample_feed(name: str, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """A valid feed for model ``name``."""
    rng = rng or np.random.default_rng(0)
    if name == "mlp":
        return {"x": rng.standard_normal((3, 4)).astype(np.float32)}
    if name == "two_inputs":
        return {"table": rng.standard_normal((5, 2)).astype(np.float32), "idx": np.array([4, 0, 2], np.int64)}
    if name == "conv":
        return {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    if name == "overridable":
        return {"x": rng.standard_normal((2, 2)).astype(np.float32)}
    if name == "logic":
        return {"cond": np.array([True, False, True]), "a": rng.standard_normal(3)}
    raise KeyError(name)
