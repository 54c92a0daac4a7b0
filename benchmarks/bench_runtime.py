"""kp_runtime session overhead: what InferenceSession adds on top of a provider's own work.

Run with ``python -m benchmarks --only runtime``. No targets: the figures are for
watching regressions of the per-run cost of validation and dispatch.
"""

from __future__ import annotations

import time

import numpy as np
from onnx import TensorProto, helper

import kp_runtime
from kp_runtime.node_arg import NodeArg
from kp_runtime.validation import validate_feed


def _per_call_us(fn, repeat: int) -> float:
    fn()  # warm up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e6


def _identity_model():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 224, 224])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(quick: bool = False) -> dict[str, dict]:
    repeat = 200 if quick else 2000
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    inputs = [NodeArg("x", "tensor(float)", [1, 3, 224, 224])]
    validate_us = _per_call_us(lambda: validate_feed(inputs, {"x": x}), repeat)

    session = kp_runtime.InferenceSession(_identity_model(), providers=["cpu"])
    provider_session = session._psess  # the provider's own run, without the session layer
    run_us = _per_call_us(lambda: session.run(None, {"x": x}), repeat)
    raw_us = _per_call_us(lambda: provider_session.run(["y"], {"x": x}), repeat)
    note = "Identity on a 1x3x224x224 float32 input, CPU provider"
    return {
        "runtime.validate_feed": {
            "value": validate_us, "unit": "us/call", "target": None, "ok": None,
            "note": "validate_feed for one 1x3x224x224 float32 input",
        },
        "runtime.session_overhead": {
            "value": max(run_us - raw_us, 0.0), "unit": "us/run", "target": None, "ok": None,
            "note": f"InferenceSession.run minus provider session run; {note}",
        },
    }


if __name__ == "__main__":
    for name, metric in run(quick=True).items():
        print(f"{name}: {metric['value']:.1f} {metric['unit']} ({metric['note']})")
