"""Quick start: build a tiny ONNX model, run it with kp_runtime exactly as with onnxruntime.

    python examples/quickstart_cpu.py
"""

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

import kp_runtime as ort  # the only change from onnxruntime code


def build_model(path: Path) -> None:
    """y = relu(x @ W + b) with a symbolic batch dimension."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], rng.standard_normal(12).astype(np.float32))
    b = helper.make_tensor("b", TensorProto.FLOAT, [3], [0.1, -0.2, 0.3])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])],
        "quickstart",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w, b],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "quickstart.onnx"
        build_model(model)
        print("available providers:", ort.get_available_providers())
        with ort.InferenceSession(model, providers=["cpu"]) as session:
            print("inputs: ", session.get_inputs())
            print("outputs:", session.get_outputs())
            x = np.arange(8, dtype=np.float32).reshape(2, 4)
            (y,) = session.run(None, {"x": x})
            print("ran on", session.get_providers()[0], "->", y.dtype, y.shape)
            print(y)
            try:
                session.run(None, {"x": x.astype(np.float64)})
            except ort.InvalidArgument as exc:
                print("bad input is reported as onnxruntime does:", exc)


if __name__ == "__main__":
    main()
