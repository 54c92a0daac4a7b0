"""``VirtualUsbBackend``: virtual dongles presented to pyusb as USB devices.

An implementation of ``usb.backend.IBackend``, so ``usb.core.find(idVendor=0x3231,
backend=VirtualUsbBackend([...]))`` finds the dongles and every later call of the host code
(``dev.write``, ``dev.read``, ``dev.ctrl_transfer``, descriptors, ``bus``,
``port_numbers``, ``speed``) takes the same path as with real hardware. Failures raise
exactly what pyusb's libusb1 backend raises: ``usb.core.USBTimeoutError`` for
LIBUSB_ERROR_TIMEOUT and ``usb.core.USBError`` otherwise, with ``backend_error_code`` set to
the libusb code (-4 no device, -5 not found, -6 busy, -8 overflow, -9 pipe/STALL) and the
matching ``errno``. As with libusb, a transfer that timed out after moving some bytes
returns that count instead of raising.

Timeouts are milliseconds; 0 means wait forever (libusb's rule).
"""

from __future__ import annotations

import array
import errno
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Iterable

import usb.backend
import usb.core

from kp_backend.emulator import descriptors
from kp_backend.emulator.dongle import DEFAULT_BUS, DEFAULT_KN_NUMBER, DEFAULT_PORTS, VirtualDongle
from kp_backend.emulator.endpoint import (
    LIBUSB_ERROR_NO_DEVICE,
    LIBUSB_ERROR_PIPE,
    LIBUSB_ERROR_TIMEOUT,
    TransferError,
    deadline_after,
)
from kp_backend.protocol.constants import EP_BULK_IN, EP_BULK_OUT

__all__ = ["VirtualUsbBackend", "LIBUSB_ERROR_NOT_FOUND", "LIBUSB_ERROR_BUSY"]

LIBUSB_ERROR_INVALID_PARAM = -2
LIBUSB_ERROR_NOT_FOUND = -5
LIBUSB_ERROR_BUSY = -6

# libusb_strerror() texts and errno values, as pyusb's libusb1 backend reports them
_LIBUSB = {
    -1: ("Input/Output Error", errno.EIO),
    -2: ("Invalid parameter", errno.EINVAL),
    -4: ("No such device (it may have been disconnected)", errno.ENODEV),
    -5: ("Entity not found", errno.ENOENT),
    -6: ("Resource busy", errno.EBUSY),
    -7: ("Operation timed out", errno.ETIMEDOUT),
    -8: ("Overflow", errno.EOVERFLOW),
    -9: ("Pipe error", errno.EPIPE),
}

_STD_GET_STATUS, _STD_CLEAR_FEATURE, _STD_SET_FEATURE = 0, 1, 3
_STD_GET_DESCRIPTOR, _STD_GET_CONFIGURATION, _STD_SET_CONFIGURATION = 6, 8, 9
_STD_GET_INTERFACE, _STD_SET_INTERFACE = 10, 11
_TYPE_MASK, _TYPE_STANDARD, _TYPE_VENDOR = 0x60, 0x00, 0x40


def _raise(code: int) -> None:
    text, err = _LIBUSB.get(code, ("Other error", None))
    if code == LIBUSB_ERROR_TIMEOUT:
        raise usb.core.USBTimeoutError(text, code, err)
    raise usb.core.USBError(text, code, err)


def _deadline(timeout_ms: int | None):
    if timeout_ms is None or timeout_ms <= 0:
        return None
    return deadline_after(timeout_ms / 1000.0)


def _byte_view(buffer) -> memoryview:
    view = memoryview(buffer)
    return view if view.format == "B" else view.cast("B")


@dataclass(frozen=True)
class _DeviceId:
    """What ``enumerate_devices`` yields: one enumeration of one dongle (its descriptors are
    a snapshot, as libusb caches them)."""

    dongle: VirtualDongle
    generation: int
    address: int
    device: bytes
    config: bytes


class _Handle:
    _ids = itertools.count(1)

    def __init__(self, dev: _DeviceId) -> None:
        self.dev = dev
        self.id = next(self._ids)
        self.claimed: set[int] = set()
        self.closed = False


class VirtualUsbBackend(usb.backend.IBackend):
    """A pyusb backend whose devices are :class:`VirtualDongle` objects.

    Dongles are powered on when added. Dongles without an explicit position get bus 1,
    ports (2, 3 + i) for the i-th such dongle (the first has port id 393), and KN number
    0x1A2B3C4D + i unless set. :meth:`close` stops every dongle thread.
    """

    def __init__(self, dongles: Iterable[VirtualDongle] | VirtualDongle = ()) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self.dongles: list[VirtualDongle] = []
        self._closed = False
        if isinstance(dongles, VirtualDongle):
            dongles = [dongles]
        for d in dongles:
            self.add(d)

    # -- management ----------------------------------------------------------------------------
    def add(self, dongle: VirtualDongle) -> VirtualDongle:
        """Plug a dongle in (assigning free defaults) and power it on."""
        if not isinstance(dongle, VirtualDongle):
            raise TypeError(f"expected a VirtualDongle, got {type(dongle).__name__}")
        with self._lock:
            if self._closed:
                raise RuntimeError("this VirtualUsbBackend is closed")
            taken = {(d.bus, d.port_numbers) for d in self.dongles}
            kns = {d.kn_number for d in self.dongles}
            slot = next(i for i in itertools.count()
                        if (DEFAULT_BUS, DEFAULT_PORTS[:-1] + (DEFAULT_PORTS[-1] + i,)) not in taken)
            kn = next(DEFAULT_KN_NUMBER + i for i in itertools.count()
                      if DEFAULT_KN_NUMBER + i not in kns)
            dongle.assign_defaults(DEFAULT_BUS, DEFAULT_PORTS[:-1] + (DEFAULT_PORTS[-1] + slot,), kn)
            if (dongle.bus, dongle.port_numbers) in taken:
                raise ValueError(f"port {dongle.port_path} is already used by another dongle")
            self.dongles.append(dongle)
        dongle.power_on()
        return dongle

    def close(self) -> None:
        """Stop all dongles (their threads exit); further transfers fail with NO_DEVICE."""
        with self._lock:
            self._closed = True
            dongles = list(self.dongles)
        for d in dongles:
            d.close()

    def __enter__(self) -> "VirtualUsbBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def dongle(self, port_id: int) -> VirtualDongle:
        """The dongle with Kneron port id ``port_id``."""
        for d in self.dongles:
            if d.port_id == port_id:
                return d
        raise KeyError(f"no virtual dongle at port id {port_id}; present: "
                       f"{[d.port_id for d in self.dongles]}")

    # -- enumeration and descriptors --------------------------------------------------------------
    def enumerate_devices(self):
        with self._lock:
            dongles = list(self.dongles)
        for d in dongles:
            with d.cond:
                if not d.present:
                    continue
                ident = _DeviceId(d, d.generation, d.address, d.device_descriptor(),
                                  d.config_descriptor())
            yield ident

    def get_parent(self, dev):
        return None

    def get_device_descriptor(self, dev: _DeviceId):
        desc = descriptors.parse_device_descriptor(dev.device)
        desc.bus = dev.dongle.bus
        desc.address = dev.address
        desc.speed = int(dev.dongle.speed)
        desc.port_numbers = tuple(dev.dongle.port_numbers)
        desc.port_number = desc.port_numbers[-1] if desc.port_numbers else 0
        return desc

    def get_configuration_descriptor(self, dev: _DeviceId, config: int):
        if config != 0:
            _raise(LIBUSB_ERROR_NOT_FOUND)
        return descriptors.parse_configuration(dev.config)

    def get_interface_descriptor(self, dev: _DeviceId, intf: int, alt: int, config: int):
        cfg = self.get_configuration_descriptor(dev, config)
        if intf >= len(cfg.interfaces):
            raise IndexError(f"Invalid interface index {intf}")
        if alt != 0:
            raise IndexError(f"Invalid alternate setting index {alt}")
        return cfg.interfaces[intf]

    def get_endpoint_descriptor(self, dev: _DeviceId, ep: int, intf: int, alt: int, config: int):
        interface = self.get_interface_descriptor(dev, intf, alt, config)
        if ep >= len(interface.endpoints):
            raise IndexError(f"Invalid endpoint index {ep}")
        return interface.endpoints[ep]

    # -- handles --------------------------------------------------------------------------------------
    def open_device(self, dev: _DeviceId) -> _Handle:
        with dev.dongle.cond:
            if not dev.dongle.present or dev.generation != dev.dongle.generation:
                _raise(LIBUSB_ERROR_NO_DEVICE)
        return _Handle(dev)

    def close_device(self, handle: _Handle) -> None:
        d = handle.dev.dongle
        with d.cond:
            if d.claimed_by == handle.id:
                d.claimed_by = None
            handle.closed = True

    def _live(self, handle: _Handle) -> VirtualDongle:
        d = handle.dev.dongle
        if handle.closed:
            _raise(LIBUSB_ERROR_INVALID_PARAM)
        # No lock: ``present`` is read before ``generation``, and a boot raises the
        # generation before it sets ``present``, so a True/equal pair means this enumeration
        # was on the bus when ``present`` was read.
        if not d.present or handle.dev.generation != d.generation:
            _raise(LIBUSB_ERROR_NO_DEVICE)
        return d

    def set_configuration(self, handle: _Handle, config_value: int) -> None:
        d = self._live(handle)
        if config_value not in (0, 1):
            _raise(LIBUSB_ERROR_NOT_FOUND)
        with d.cond:
            d.configuration = config_value

    def get_configuration(self, handle: _Handle) -> int:
        return self._live(handle).configuration

    def set_interface_altsetting(self, handle: _Handle, intf: int, altsetting: int) -> None:
        self._live(handle)
        if intf != 0 or altsetting != 0:
            _raise(LIBUSB_ERROR_NOT_FOUND)

    def claim_interface(self, handle: _Handle, intf: int) -> None:
        d = self._live(handle)
        if intf != 0:
            _raise(LIBUSB_ERROR_NOT_FOUND)
        with d.cond:
            if d.claimed_by not in (None, handle.id):
                _raise(LIBUSB_ERROR_BUSY)
            d.claimed_by = handle.id
            handle.claimed.add(intf)

    def release_interface(self, handle: _Handle, intf: int) -> None:
        d = handle.dev.dongle
        with d.cond:
            if d.claimed_by == handle.id:
                d.claimed_by = None
            handle.claimed.discard(intf)

    def is_kernel_driver_active(self, handle: _Handle, intf: int) -> bool:
        self._live(handle)
        return False

    def detach_kernel_driver(self, handle: _Handle, intf: int) -> None:
        self._live(handle)
        _raise(LIBUSB_ERROR_NOT_FOUND)

    def attach_kernel_driver(self, handle: _Handle, intf: int) -> None:
        # no kernel driver exists: libusb answers NOT_FOUND, which Kneron reads as "not busy"
        self._live(handle)
        _raise(LIBUSB_ERROR_NOT_FOUND)

    def clear_halt(self, handle: _Handle, ep: int) -> None:
        self._live(handle)

    def reset_device(self, handle: _Handle) -> None:
        self._live(handle)  # a port reset does not reboot the KDP2 firmware

    # -- transfers ----------------------------------------------------------------------------------
    def _fault(self, d: VirtualDongle, transfer: str, request: int | None = None) -> None:
        action = d.faults.on_transfer(transfer, request)
        if action == "stall":
            _raise(LIBUSB_ERROR_PIPE)
        if action == "timeout":
            _raise(LIBUSB_ERROR_TIMEOUT)

    def bulk_write(self, handle: _Handle, ep: int, intf: int, data, timeout: int) -> int:
        d = self._live(handle)
        if ep != EP_BULK_OUT:
            _raise(LIBUSB_ERROR_NOT_FOUND)
        self._fault(d, "out")
        # the device copies from the caller's buffer (at most once, like libusb's DMA);
        # the view is released before returning so the caller may resize or reuse it
        view = _byte_view(data)
        try:
            return d.host_write(handle.dev.generation, view, _deadline(timeout))
        except TransferError as exc:
            if exc.code == LIBUSB_ERROR_TIMEOUT and exc.transferred:
                return exc.transferred
            _raise(exc.code)
        finally:
            view.release()

    def bulk_read(self, handle: _Handle, ep: int, intf: int, buff, timeout: int) -> int:
        d = self._live(handle)
        if ep != EP_BULK_IN:
            _raise(LIBUSB_ERROR_NOT_FOUND)
        self._fault(d, "in")
        view = _byte_view(buff)
        try:
            return d.host_read(handle.dev.generation, view, _deadline(timeout))
        except TransferError as exc:
            _raise(exc.code)
        finally:
            view.release()

    def intr_read(self, handle: _Handle, ep: int, intf: int, buff, timeout: int) -> int:
        d = self._live(handle)
        if not d.log_endpoint or ep != 0x83:
            _raise(LIBUSB_ERROR_NOT_FOUND)
        # the firmware writes no log text: the read waits for its timeout
        with d.cond:
            deadline = _deadline(timeout)
            while True:
                if not d.present:
                    _raise(LIBUSB_ERROR_NO_DEVICE)
                if deadline is not None and deadline <= time.monotonic():
                    _raise(LIBUSB_ERROR_TIMEOUT)
                d.cond.wait(0.05)

    def ctrl_transfer(self, handle: _Handle, bmRequestType: int, bRequest: int, wValue: int,
                      wIndex: int, data, timeout: int) -> int:
        d = self._live(handle)
        self._fault(d, "control", bRequest)
        kind = bmRequestType & _TYPE_MASK
        if kind == _TYPE_STANDARD:
            return self._standard(d, handle, bmRequestType, bRequest, wValue, wIndex, data)
        if kind == _TYPE_VENDOR and not bmRequestType & 0x80:
            try:
                action = d.vendor_control(handle.dev.generation, bRequest, wValue, wIndex)
            except TransferError as exc:
                _raise(exc.code)
            if action != "ack":
                _raise(LIBUSB_ERROR_PIPE)
            return 0
        _raise(LIBUSB_ERROR_PIPE)  # class requests and vendor IN requests: STALL

    def _standard(self, d: VirtualDongle, handle: _Handle, bm: int, request: int, value: int,
                  index: int, data) -> int:
        if request == _STD_GET_DESCRIPTOR and bm & 0x80:
            kind, number = value >> 8, value & 0xFF
            if kind == descriptors.DESC_DEVICE:
                raw = handle.dev.device
            elif kind == descriptors.DESC_CONFIG and number == 0:
                raw = handle.dev.config
            elif kind == descriptors.DESC_STRING:
                raw = d.string_descriptor(number)
            else:
                raw = None
            if raw is None:
                _raise(LIBUSB_ERROR_PIPE)
            return self._fill(data, raw)
        if request == _STD_GET_STATUS and bm & 0x80:
            return self._fill(data, b"\x01\x00" if bm & 0x1F == 0 else b"\x00\x00")
        if request == _STD_GET_CONFIGURATION and bm & 0x80:
            return self._fill(data, bytes([d.configuration]))
        if request == _STD_SET_CONFIGURATION:
            self.set_configuration(handle, value)
            return 0
        if request == _STD_GET_INTERFACE and bm & 0x80:
            return self._fill(data, b"\x00")
        if request in (_STD_SET_INTERFACE, _STD_CLEAR_FEATURE, _STD_SET_FEATURE):
            return 0
        _raise(LIBUSB_ERROR_PIPE)

    @staticmethod
    def _fill(data, raw: bytes) -> int:
        if not isinstance(data, array.array):
            return 0
        n = min(len(data) * data.itemsize, len(raw))
        memoryview(data).cast("B")[:n] = raw[:n]
        return n

