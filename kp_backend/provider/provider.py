"""``KneronExecutionProvider``: runs NEF models on KL520 / KL720 dongles, real or virtual."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kp_runtime.model_source import ModelSource
from kp_runtime.options import SessionOptions
from kp_runtime.provider import Availability, DeviceInfo, ExecutionProvider

from kp_backend.nef import NefError, read_nef
from kp_backend.npu_types import CHIP_BY_PRODUCT_ID, Chip
from kp_backend.provider.options import parse_options
from kp_backend.provider.session import KneronSession
from kp_backend.usb import ENV_VIRTUAL_DEVICES, find_devices, libusb_backend, resolve_backend

__all__ = ["KneronExecutionProvider"]


def _nef_problem(model: ModelSource) -> str | None:
    try:
        read_nef(model.data)
    except NefError as exc:
        return exc.text
    except Exception as exc:  # noqa: BLE001 - e.g. an unreadable file
        return f"{type(exc).__name__}: {exc}"
    return None


class KneronExecutionProvider(ExecutionProvider):
    """Kneron NPU provider (``docs/kneron_provider.md``)."""

    name = "KneronExecutionProvider"
    aliases = ("kneron",)
    priority = 100
    model_formats = ("nef",)

    def is_available(self, options: Mapping[str, Any] | None = None) -> Availability:
        """Yes when a Kneron dongle is on USB or ``KP_VIRTUAL_DEVICES`` configures virtual
        ones; with ``options`` naming ``device='virtual…'`` always yes (the virtual dongle
        ships with the package)."""
        device = str((options or {}).get("device", "")).strip().lower()
        if device.startswith("virtual"):
            return Availability.yes()
        if os.environ.get(ENV_VIRTUAL_DEVICES, "").strip():
            return Availability.yes()
        try:
            found = find_devices(libusb_backend(), probe=False)
        except Exception as exc:  # noqa: BLE001 - no libusb, no permission: not available
            return Availability.no(f"cannot scan USB ({type(exc).__name__}: {exc}); set "
                                   f"{ENV_VIRTUAL_DEVICES}=KL520 for a virtual dongle")
        if any(CHIP_BY_PRODUCT_ID.get(i.product_id) in (Chip.KL520, Chip.KL720) for i in found):
            return Availability.yes()
        return Availability.no(f"no KL520/KL720 dongle on USB; set {ENV_VIRTUAL_DEVICES}=KL520 "
                               "(or pass device='virtual') for a virtual dongle")

    def list_devices(self) -> list[DeviceInfo]:
        try:
            infos = find_devices(resolve_backend(None), probe=True)
        except Exception:  # noqa: BLE001 - nothing reachable
            return []
        devices = []
        for info in infos:
            chip = CHIP_BY_PRODUCT_ID.get(info.product_id, Chip.UNKNOWN)
            devices.append(DeviceInfo(
                id=f"kneron:{info.port_id}", type="NPU",
                description=f"Kneron {chip.name} at {info.name}, firmware {info.firmware}",
                properties={"chip": chip.name, "port_id": str(info.port_id),
                            "port_path": info.port_path, "firmware": info.firmware,
                            "kn_number": f"0x{info.kn_number:08X}"}))
        return devices

    def can_run(self, model: ModelSource) -> Availability:
        if model.is_proto:
            return Availability.no("an onnx.ModelProto is not a NEF")
        if model.suffix not in ("", ".nef"):
            return Availability.no(f"{self.name} runs .nef models, not {model.suffix}")
        problem = _nef_problem(model)
        if problem is not None:
            return Availability.no(f"not a readable NEF: {problem}")
        return Availability.yes()

    def create_session(self, model: ModelSource, options: dict[str, str],
                       session_options: SessionOptions) -> KneronSession:
        return KneronSession(model, parse_options(options))
