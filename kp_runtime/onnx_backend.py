"""An ``onnx.backend.base.Backend`` over kp_runtime, so ONNX's backend test suite can run.

``KpRuntimeBackend`` uses the CPU provider; :func:`backend_for` makes a backend
class for any provider::

    import onnx.backend.test
    backend_test = onnx.backend.test.BackendTest(backend_for("cpu"), __name__)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import onnx
from onnx.backend.base import Backend, BackendRep

from kp_runtime.session import InferenceSession


class KpRuntimeBackendRep(BackendRep):
    """A prepared model: ``run(inputs)`` takes a list (graph input order), a dict or one array."""

    def __init__(self, session: InferenceSession) -> None:
        self.session = session

    def run(self, inputs: Any, **kwargs: Any) -> list[Any]:  # type: ignore[override]
        names = [i.name for i in self.session.get_inputs()]
        if isinstance(inputs, Mapping):
            feed = dict(inputs)
        elif isinstance(inputs, (list, tuple)):
            feed = dict(zip(names, inputs))
        else:
            feed = {names[0]: inputs}
        return self.session.run(None, feed)


class KpRuntimeBackend(Backend):
    """ONNX backend running on the providers in :attr:`providers` (default: CPU)."""

    providers: ClassVar[Sequence[str]] = ("CPUExecutionProvider",)
    devices: ClassVar[Sequence[str]] = ("CPU",)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> KpRuntimeBackendRep:
        return KpRuntimeBackendRep(InferenceSession(model, providers=list(cls.providers)))

    @classmethod
    def run_model(
        cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any
    ) -> list[Any]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() in cls.devices


def backend_for(provider: str, devices: Sequence[str] = ("CPU",)) -> type[KpRuntimeBackend]:
    """A :class:`KpRuntimeBackend` subclass bound to ``provider`` (a name or alias)."""
    return type(
        f"KpRuntimeBackend_{provider}",
        (KpRuntimeBackend,),
        {"providers": (provider,), "devices": tuple(d.upper() for d in devices)},
    )
