"""kp_runtime: an onnxruntime-shaped inference API whose execution providers are pluggy plugins."""

from kp_runtime import errors  # noqa: F401

__version__ = "0.1.0"
