"""CPU reference provider: runs ONNX models with ``onnx.reference.ReferenceEvaluator``.

Exact ONNX reference semantics, no native dependency, slow. Registered through
the entry point ``cpu = "kp_runtime.providers.cpu"`` (this module is the plugin).
"""

from __future__ import annotations

import logging
import platform
import threading
from typing import Any

import numpy as np
from onnx.reference import ReferenceEvaluator

from kp_runtime.errors import Fail, InvalidGraph, NotImplemented
from kp_runtime.hookspecs import hookimpl
from kp_runtime.model_source import ModelSource
from kp_runtime.onnx_model import describe
from kp_runtime.options import RunOptions, SessionOptions
from kp_runtime.provider import Availability, DeviceInfo, ExecutionProvider, ProviderSession

log = logging.getLogger(__name__)


class CPUSession(ProviderSession):
    """One ONNX model in a ``ReferenceEvaluator`` (runs are serialised: it keeps state)."""

    def __init__(self, model: ModelSource) -> None:
        proto = model.onnx_model()
        signature = describe(proto)
        self.inputs = signature.inputs
        self.outputs = signature.outputs
        self.overridable_initializers = signature.overridable_initializers
        self.metadata = signature.metadata
        self._lock = threading.Lock()
        try:
            self._evaluator = ReferenceEvaluator(proto)
        except NotImplementedError as exc:
            raise NotImplemented(f"CPUExecutionProvider cannot run this model: {exc}") from exc
        except Exception as exc:
            raise InvalidGraph(f"Load model from {model.display} failed: {type(exc).__name__}: {exc}") from exc

    def run(
        self, output_names: list[str], feeds: dict[str, Any], run_options: RunOptions | None = None
    ) -> list[Any]:
        try:
            with self._lock:
                results = self._evaluator.run(output_names, feeds)
        except Exception as exc:
            raise Fail(
                f"Non-zero status code returned while running the model on "
                f"CPUExecutionProvider: {type(exc).__name__}: {exc}"
            ) from exc
        return [_as_output(r) for r in results]


def _as_output(value: Any) -> Any:
    # The evaluator may hand back numpy scalars; onnxruntime always returns arrays.
    if isinstance(value, np.generic):
        return np.asarray(value)
    return value


class CPUExecutionProvider(ExecutionProvider):
    name = "CPUExecutionProvider"
    aliases = ("cpu",)
    priority = 0
    model_formats = ("onnx",)

    def list_devices(self) -> list[DeviceInfo]:
        description = platform.processor() or platform.machine() or "CPU"
        return [DeviceInfo(id="cpu:0", type="CPU", description=description)]

    def can_run(self, model: ModelSource) -> Availability:
        try:
            model.onnx_model()
        except Exception as exc:  # noqa: BLE001
            # A clearly named other format (``.nef``) is "not mine"; otherwise the
            # ORT parse error is what a user of a corrupt ONNX file should see.
            foreign = model.suffix not in ("", ".onnx")
            return Availability.no(
                f"not an ONNX model ({exc.text if hasattr(exc, 'text') else exc})",
                None if foreign else exc,
            )
        return Availability.yes()

    def create_session(
        self, model: ModelSource, options: dict[str, str], session_options: SessionOptions
    ) -> CPUSession:
        if options:
            log.warning("CPUExecutionProvider ignores provider options %s", sorted(options))
        return CPUSession(model)


@hookimpl
def kp_runtime_providers() -> list[ExecutionProvider]:
    return [CPUExecutionProvider()]
