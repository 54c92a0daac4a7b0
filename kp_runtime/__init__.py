"""kp_runtime: an onnxruntime-shaped inference API whose execution providers are pluggy plugins.

``import kp_runtime as ort`` is meant to be enough to port ordinary onnxruntime code.
"""

from kp_runtime import capi, errors  # noqa: F401  (ort.capi.onnxruntime_pybind11_state, as in ORT)
from kp_runtime.errors import (  # noqa: F401
    EPFail,
    Fail,
    InvalidArgument,
    InvalidProtobuf,
    KpRuntimeError,
    NoSuchFile,
    ProviderUnavailable,
)
from kp_runtime.hookspecs import hookimpl
from kp_runtime.log import set_default_logger_severity
from kp_runtime.node_arg import ModelMetadata, NodeArg
from kp_runtime.options import (
    ExecutionMode,
    ExecutionOrder,
    GraphOptimizationLevel,
    RunOptions,
    SessionOptions,
)
from kp_runtime.session import (
    InferenceSession,
    get_all_providers,
    get_available_providers,
    get_device,
)

__version__ = "0.1.0"

__all__ = [
    "ExecutionMode",
    "ExecutionOrder",
    "GraphOptimizationLevel",
    "InferenceSession",
    "ModelMetadata",
    "NodeArg",
    "RunOptions",
    "SessionOptions",
    "get_all_providers",
    "get_available_providers",
    "get_device",
    "hookimpl",
    "set_default_logger_severity",
]
