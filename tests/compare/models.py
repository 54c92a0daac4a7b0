"""ONNX models and session helpers for the comparison tests (built in code, run by onnxruntime)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from kp_runtime.quantization import TensorQuantization

OPSET = [helper.make_opsetid("", 17)]
N_IN, N_OUT = 6, 5


def weights(seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((N_IN, N_OUT)) * scale).astype(np.float32)


def linear(w: np.ndarray, batch: int | str = "N", relu: bool = False) -> onnx.ModelProto:
    """``logits = x @ W`` (and ``act = relu(logits)`` when ``relu``); x: [batch, 6] float."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["logits"])]
    outputs = [helper.make_tensor_value_info("logits", T.FLOAT, [batch, w.shape[1]])]
    if relu:
        nodes.append(helper.make_node("Relu", ["logits"], ["act"]))
        outputs.append(helper.make_tensor_value_info("act", T.FLOAT, [batch, w.shape[1]]))
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", T.FLOAT, [batch, w.shape[0]])], outputs,
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="kp-compare-tests")
    model.ir_version = 8
    return model


def mixed_inputs() -> onnx.ModelProto:
    """Inputs of several dtypes: ``f`` float [N, 3], ``i`` int64 [2], ``u`` uint8 [4], ``b`` bool [2]."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["f"], ["fo"]),
            helper.make_node("Identity", ["i"], ["io"]),
            helper.make_node("Identity", ["u"], ["uo"]),
            helper.make_node("Identity", ["b"], ["bo"]),
        ],
        "mixed",
        [
            helper.make_tensor_value_info("f", T.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("i", T.INT64, [2]),
            helper.make_tensor_value_info("u", T.UINT8, [4]),
            helper.make_tensor_value_info("b", T.BOOL, [2]),
        ],
        [
            helper.make_tensor_value_info("fo", T.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("io", T.INT64, [2]),
            helper.make_tensor_value_info("uo", T.UINT8, [4]),
            helper.make_tensor_value_info("bo", T.BOOL, [2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    return model


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, path)
    return path


class QuantizedSession:
    """A fixed-point twin of an onnxruntime session, the way an NPU (or the virtual dongle) runs a model.

    Inputs are rounded to their grid before the float model runs and outputs are
    rounded (and saturated) to theirs afterwards; ``get_quantization()`` reports
    the steps, as a Kneron session does.
    """

    def __init__(
        self,
        inner: ort.InferenceSession,
        inputs: dict[str, TensorQuantization],
        outputs: dict[str, TensorQuantization],
    ) -> None:
        self.inner = inner
        self.inputs = inputs
        self.outputs = outputs

    def get_inputs(self) -> list[Any]:
        return self.inner.get_inputs()

    def get_outputs(self) -> list[Any]:
        return self.inner.get_outputs()

    def get_providers(self) -> list[str]:
        return ["FixedPointTwin"]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {"FixedPointTwin": {"bits": "8"}}

    def get_quantization(self) -> dict[str, dict[str, TensorQuantization]]:
        return {"inputs": dict(self.inputs), "outputs": dict(self.outputs)}

    def run(self, output_names: list[str] | None, feed: dict[str, Any]) -> list[Any]:
        rounded = {k: (self.inputs[k].quantize_dequantize(np.asarray(v)) if k in self.inputs else v) for k, v in feed.items()}
        names = output_names or [o.name for o in self.get_outputs()]
        values = self.inner.run(names, rounded)
        return [self.outputs[n].quantize_dequantize(v) if n in self.outputs else v for n, v in zip(names, values)]
