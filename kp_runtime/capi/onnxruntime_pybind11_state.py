"""``from kp_runtime.capi.onnxruntime_pybind11_state import InvalidArgument`` works as with ORT."""

from kp_runtime.errors import (  # noqa: F401
    EPFail,
    EngineError,
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    ModelLoadCanceled,
    ModelLoaded,
    ModelRequiresCompilation,
    NoModel,
    NoSuchFile,
    NotFound,
    NotImplemented,
    RuntimeException,
)
from kp_runtime.node_arg import ModelMetadata, NodeArg  # noqa: F401
from kp_runtime.options import (  # noqa: F401
    ExecutionMode,
    ExecutionOrder,
    GraphOptimizationLevel,
    RunOptions,
    SessionOptions,
)
