"""Exception classes, named and numbered as onnxruntime's.

onnxruntime raises classes from ``onnxruntime.capi.onnxruntime_pybind11_state``
whose ``str()`` is ``[ONNXRuntimeError] : <code> : <NAME> : <text>``. We keep the
same names, codes and message shape so ported ``except`` clauses and log
scrapers keep working (``kp_runtime.capi.onnxruntime_pybind11_state`` re-exports
these classes).

All ORT-named classes derive from :class:`KpRuntimeError`, itself a plain
``Exception`` subclass, as in onnxruntime (which derives them directly from
``Exception``). The extra layer lets callers catch everything this project
raises with one clause.

Device-level failures (a Kneron dongle timing out, being unplugged, answering
garbage) are :class:`EPFail` subclasses, so they look like an execution
provider failure to ORT-style code and carry a precise type for new code.
"""

from __future__ import annotations

__all__ = [
    "KpRuntimeError",
    "Fail",
    "InvalidArgument",
    "NoSuchFile",
    "NoModel",
    "EngineError",
    "RuntimeException",
    "InvalidProtobuf",
    "ModelLoaded",
    "NotImplemented",
    "InvalidGraph",
    "EPFail",
    "ModelLoadCanceled",
    "ModelRequiresCompilation",
    "NotFound",
    "DeviceError",
    "DeviceNotFound",
    "DeviceTimeout",
    "DeviceDisconnected",
    "DeviceProtocolError",
    "ProviderUnavailable",
]


class KpRuntimeError(Exception):
    """Base of every error class in this module.

    ``code`` and ``code_name`` are onnxruntime's ``OrtErrorCode`` number and name.
    ``text`` is the message without the ``[ONNXRuntimeError]`` prefix.
    """

    code: int = 1
    code_name: str = "FAIL"

    def __init__(self, text: str = "", *args: object) -> None:
        super().__init__(text, *args)
        self.text = text

    def __str__(self) -> str:
        return f"[ONNXRuntimeError] : {self.code} : {self.code_name} : {self.text}"


class Fail(KpRuntimeError):
    code, code_name = 1, "FAIL"


class InvalidArgument(KpRuntimeError):
    code, code_name = 2, "INVALID_ARGUMENT"


class NoSuchFile(KpRuntimeError):
    code, code_name = 3, "NO_SUCHFILE"


class NoModel(KpRuntimeError):
    code, code_name = 4, "NO_MODEL"


class EngineError(KpRuntimeError):
    code, code_name = 5, "ENGINE_ERROR"


class RuntimeException(KpRuntimeError):
    code, code_name = 6, "RUNTIME_EXCEPTION"


class InvalidProtobuf(KpRuntimeError):
    code, code_name = 7, "INVALID_PROTOBUF"


class ModelLoaded(KpRuntimeError):
    code, code_name = 8, "MODEL_LOADED"


class NotImplemented(KpRuntimeError):  # noqa: A001 - onnxruntime's name
    code, code_name = 9, "NOT_IMPLEMENTED"


class InvalidGraph(KpRuntimeError):
    code, code_name = 10, "INVALID_GRAPH"


class EPFail(KpRuntimeError):
    code, code_name = 11, "EP_FAIL"


class ModelLoadCanceled(KpRuntimeError):
    code, code_name = 12, "MODEL_LOAD_CANCELED"


class ModelRequiresCompilation(KpRuntimeError):
    code, code_name = 13, "MODEL_REQUIRES_COMPILATION"


class NotFound(KpRuntimeError):
    code, code_name = 14, "NOT_FOUND"


# --- device-level failures (not in onnxruntime; all are EPFail) -------------------


class DeviceError(EPFail):
    """A device used by a provider failed. ``device`` names it (e.g. a port path)."""

    def __init__(self, text: str = "", *args: object, device: str | None = None) -> None:
        super().__init__(text, *args)
        self.device = device


class DeviceNotFound(DeviceError):
    """No device of the required kind is present (or the named one is not)."""


class DeviceTimeout(DeviceError, TimeoutError):
    """A transfer or an inference did not complete within the configured timeout."""


class DeviceDisconnected(DeviceError, ConnectionError):
    """The device went away (unplugged, rebooted) while it was in use."""


class DeviceProtocolError(DeviceError):
    """The device answered something the protocol does not allow (bad magic, job id, size)."""


class ProviderUnavailable(EPFail):
    """A requested execution provider cannot run here (no device, missing dependency)."""
