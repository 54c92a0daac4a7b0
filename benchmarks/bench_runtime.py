"""kp_runtime session overhead: what InferenceSession adds on top of a provider's own work.

* ``overhead_vs_ort``: per-call time of a kp_runtime CPU session on a one-node model (Add
  on two 1x16 float inputs) over onnxruntime's ``InferenceSession.run`` on the same model,
  measured side by side (interleaved rounds, best round of each). Target <= 3. Skipped
  (``value`` None) when onnxruntime is not installed.
* ``runtime.validate_feed`` / ``runtime.session_overhead``: no targets, for watching the
  per-run cost of validation and dispatch.

Run with ``python -m benchmarks --only runtime``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto, helper

import kp_runtime
from kp_runtime.node_arg import NodeArg
from kp_runtime.validation import validate_feed

ORT_TARGET = 3.0


def _per_call_us(fn, repeat: int) -> float:
    fn()  # warm up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e6


def _best_per_call_us(fns: dict[str, Callable[[], Any]], rounds: int,
                      number: int) -> dict[str, float]:
    """Best per-call time of each function, rounds interleaved so drift hits all alike."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():
        fn()  # warm up
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / number * 1e6)
    return best


def _add_model():
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "add16",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 16]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # loadable by every onnxruntime >= 1.14
    return model


def overhead_vs_ort(quick: bool) -> dict:
    try:
        import onnxruntime
    except ImportError:
        return {"value": None, "unit": "x", "target": ORT_TARGET, "ok": None,
                "note": "skipped: onnxruntime is not installed"}
    data = _add_model().SerializeToString()
    feeds = {n: np.arange(16, dtype=np.float32).reshape(1, 16) for n in ("a", "b")}
    ort = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    ours = kp_runtime.InferenceSession(data, providers=["cpu"])
    np.testing.assert_array_equal(ours.run(None, feeds)[0], ort.run(None, feeds)[0])
    rounds, number = (5, 300) if quick else (15, 2000)
    best = _best_per_call_us({"ort": lambda: ort.run(None, feeds),
                              "kp": lambda: ours.run(None, feeds)}, rounds, number)
    ratio = best["kp"] / best["ort"]
    return {"value": ratio, "unit": "x", "target": ORT_TARGET, "ok": ratio <= ORT_TARGET,
            "note": f"Add 1x16: kp_runtime cpu {best['kp']:.1f} us / onnxruntime "
                    f"{onnxruntime.__version__} {best['ort']:.1f} us per run"}


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
        "overhead_vs_ort": overhead_vs_ort(quick),
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
        print(f"{name}: {metric['value']} {metric['unit']} ({metric['note']})")
