"""Which dongles a session uses, and the process-wide registry of opened ones.

Each dongle is opened as its own single-device :class:`~kp_backend.device.DeviceGroup`
(so that one failing dongle fails only its own requests) with one
:class:`~kp_backend.provider.dispatcher.DeviceWorker`. The registry keys dongles by
(pyusb backend, port id) and remembers which NEF (by SHA-256) each holds:

* sessions of the same NEF share the dongle, the loaded model and the worker;
* a session of another NEF while sessions still use the dongle is an ``EPFail`` unless it
  passes ``allow_reload=True``; then the dongle is reloaded and the older sessions' later
  runs fail with an error saying so;
* closing the last session of a dongle stops its worker and releases the USB device;
* a dongle that died (unplugged) is reopened by the next session that asks for it.

Timeout and frame drop are per dongle: the most recently opened session sets them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from kp_runtime.errors import DeviceNotFound, EPFail, InvalidArgument

from kp_backend.device import DeviceGroup
from kp_backend.nef import NefFile
from kp_backend.npu_types import CHIP_BY_PRODUCT_ID, PRODUCT_ID_BY_CHIP, Chip
from kp_backend.protocol.wire import port_path
from kp_backend.provider.dispatcher import DeviceWorker
from kp_backend.provider.options import DeviceSpec
from kp_backend.usb import ENV_VIRTUAL_DEVICES, find_devices, resolve_backend

__all__ = ["DeviceTarget", "DeviceHandle", "DeviceRegistry", "REGISTRY", "resolve_targets",
           "virtual_dongle"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceTarget:
    """Where one dongle is: a pyusb backend and a Kneron port id."""

    backend: Any = field(compare=False)
    port_id: int
    name: str
    backend_key: int = 0

    @property
    def key(self) -> tuple[int, int]:
        return (self.backend_key, self.port_id)


def _target(backend: Any, port_id: int, bus: int, ports: tuple[int, ...]) -> DeviceTarget:
    return DeviceTarget(backend, port_id, f"port {port_path(bus, ports)} (id {port_id})",
                        id(backend))


def _scan(backend: Any) -> list:
    try:
        return find_devices(backend, probe=False)
    except Exception as exc:  # no libusb, permissions: no device usable
        raise DeviceNotFound(f"cannot list USB devices: {type(exc).__name__}: {exc}") from exc


def _found_text(infos: list) -> str:
    if not infos:
        return "no Kneron device is connected"
    return "found " + ", ".join(
        f"{CHIP_BY_PRODUCT_ID.get(i.product_id, Chip.UNKNOWN).name} at {i.name}" for i in infos)


def resolve_targets(spec: DeviceSpec, chip: Chip) -> list[DeviceTarget]:
    """The dongles ``spec`` names for a NEF of ``chip`` (``DeviceNotFound`` when absent)."""
    pid = PRODUCT_ID_BY_CHIP[chip]
    if spec.kind == "virtual":
        from kp_backend import emulator

        text = spec.virtual_spec or chip.name
        backend = emulator.get_shared_virtual_backend(text)
        wrong = [d for d in backend.dongles if d.chip is not chip]
        if wrong:
            raise InvalidArgument(f"device='virtual:{text}' has {wrong[0].chip.name} dongles; "
                                  f"the NEF is for {chip.name}")
        return [_target(backend, d.port_id, d.bus or 0, d.port_numbers) for d in backend.dongles]
    try:
        backend = resolve_backend(None)
    except Exception as exc:  # usb.core.NoBackendError and friends
        raise DeviceNotFound(f"no USB backend: {type(exc).__name__}: {exc}") from exc
    infos = _scan(backend)
    if spec.kind == "auto":
        for info in infos:
            if info.product_id == pid:
                return [_target(backend, info.port_id, info.bus, info.ports)]
        raise DeviceNotFound(
            f"no {chip.name} dongle found for device='auto' ({_found_text(infos)}); connect "
            f"one, pass device='virtual' or set {ENV_VIRTUAL_DEVICES}=KL520 to use virtual "
            "dongles")
    by_port = {info.port_id: info for info in infos}
    targets = []
    for port_id in spec.port_ids:
        info = by_port.get(port_id)
        if info is None:
            raise DeviceNotFound(f"no Kneron dongle at USB port id {port_id} "
                                 f"({_found_text(infos)})")
        if info.product_id != pid:
            raise InvalidArgument(
                f"the dongle at port id {port_id} is a "
                f"{CHIP_BY_PRODUCT_ID.get(info.product_id, Chip.UNKNOWN).name}; the NEF is for "
                f"{chip.name}")
        targets.append(_target(backend, port_id, info.bus, info.ports))
    return targets


def virtual_dongle(target: DeviceTarget) -> Any | None:
    """The :class:`~kp_backend.emulator.VirtualDongle` behind ``target``, if it is virtual."""
    if not type(target.backend).__module__.startswith("kp_backend.emulator"):
        return None
    try:
        return target.backend.dongle(target.port_id)
    except (AttributeError, KeyError):
        return None


class DeviceHandle:
    """One opened dongle: its group, the NEF it holds, its worker and the sessions using it."""

    def __init__(self, target: DeviceTarget) -> None:
        self.target = target
        self.name = target.name
        self.group: DeviceGroup | None = None
        self.worker: DeviceWorker | None = None
        self.nef: NefFile | None = None
        self.sha256 = ""
        self.generation = 0
        self.users: set[int] = set()
        self.frame_drop = False

    @property
    def fifo_depth(self) -> int:
        """Input + result buffers of the dongle: what it holds before a send blocks."""
        fifo = self.group.fifo if self.group is not None else None
        return max(1, fifo.input_buffer_count + fifo.result_buffer_count) if fifo else 1

    def open(self, nef_data: bytes, sha256: str, timeout_ms: int) -> None:
        group = DeviceGroup.connect([self.target.port_id], self.target.backend)
        try:
            group.set_timeout(timeout_ms)
            self._load(group, nef_data, sha256)
        except BaseException:
            group.close()
            raise
        self.group = group

    def _load(self, group: DeviceGroup, nef_data: bytes, sha256: str) -> None:
        nef = group.load_model(nef_data)
        size = max(m.max_raw_out_size for m in nef.models)
        self.nef, self.sha256 = nef, sha256
        self.generation += 1
        self.worker = DeviceWorker(group, self.name, size, lambda: self.frame_drop)
        self.frame_drop = False

    def reload(self, nef_data: bytes, sha256: str) -> None:
        """Replace the loaded NEF (``allow_reload``): pending work of the old one fails."""
        assert self.group is not None and self.worker is not None
        self.worker.stop(EPFail(f"{self.name}: the NEF was replaced by another session "
                                "(allow_reload=True)"))
        self._load(self.group, nef_data, sha256)

    def configure(self, timeout_ms: int, frame_drop: bool) -> None:
        assert self.group is not None
        self.group.set_timeout(timeout_ms)
        if frame_drop != self.frame_drop:
            self.group.set_frame_drop(frame_drop)
            self.frame_drop = frame_drop

    @property
    def dead(self) -> bool:
        return self.worker is None or self.worker.dead is not None

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.group is not None:
            self.group.close()

    def __repr__(self) -> str:
        return f"<DeviceHandle {self.name} nef={self.sha256[:12]} users={len(self.users)}>"


class DeviceRegistry:
    """Process-wide map of opened dongles (module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[tuple[int, int], DeviceHandle] = {}

    def acquire(self, target: DeviceTarget, owner: int, nef_data: bytes, sha256: str, *,
                timeout_ms: int, frame_drop: bool, allow_reload: bool) -> DeviceHandle:
        """Open (or share) ``target`` with the NEF ``nef_data`` loaded, for session ``owner``."""
        with self._lock:
            handle = self._handles.get(target.key)
            if handle is not None and handle.dead:
                log.info("%s died earlier; reopening it", handle.name)
                self._handles.pop(target.key)
                handle.close()
                handle = None
            if handle is None:
                handle = DeviceHandle(target)
                handle.open(nef_data, sha256, timeout_ms)
                self._handles[target.key] = handle
            elif handle.sha256 != sha256:
                if handle.users and not allow_reload:
                    raise EPFail(
                        f"{handle.name} already runs another NEF (sha256 "
                        f"{handle.sha256[:16]}…) for {len(handle.users)} open session(s); "
                        "close them, or pass the provider option allow_reload=True to replace "
                        "it (their later runs then fail)")
                handle.reload(nef_data, sha256)
            handle.configure(timeout_ms, frame_drop)
            handle.users.add(owner)
            return handle

    def release(self, handle: DeviceHandle, owner: int) -> None:
        """Session ``owner`` stops using ``handle``; the last one closes the dongle."""
        with self._lock:
            handle.users.discard(owner)
            if handle.users:
                return
            if self._handles.get(handle.target.key) is handle:
                del self._handles[handle.target.key]
        handle.close()

    def handles(self) -> list[DeviceHandle]:
        with self._lock:
            return list(self._handles.values())


REGISTRY = DeviceRegistry()
