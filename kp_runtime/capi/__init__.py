"""Mirror of ``onnxruntime.capi`` for code that imports error classes from there."""
