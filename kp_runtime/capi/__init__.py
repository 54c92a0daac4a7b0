"""Mirror of ``onnxruntime.capi`` for code that imports error classes from there."""
from kp_runtime.capi import onnxruntime_pybind11_state  # noqa: F401  (ort.capi.onnxruntime_pybind11_state.X, as in ORT)
