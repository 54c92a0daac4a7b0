"""USB transport over pyusb: the only module of the host library that imports ``usb``.

One :class:`UsbTransport` per opened Kneron device. It applies the KDP2 transfer rules of
PROTOCOL.md §2 to every logical transfer:

* ``write``: pieces of at most 2 MiB, then a terminator when the total length is a multiple
  of the packet size (the fake ZLP ``44 33 22 11`` for KDP2 firmware, a real ZLP for legacy
  KDP firmware). A short write is an error here (Kneron ignores it).
* ``read``: reads of at most 2 MiB until a short read or the requested size; when exactly
  the requested size arrived and it is a packet multiple, one 4-byte read with a 5 ms timeout
  must return the device's zero-length packet.
* ``control``: vendor OUT requests (bmRequestType 0x40, no data stage).

Every pyusb failure is mapped to Kneron's negative libusb code in :func:`map_usb_error`.
The transport holds no locks; the device layer serialises OUT and IN per device.
"""

from __future__ import annotations

import array
import errno
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import usb.core
import usb.util

from kp_backend.protocol.codes import ApiReturnCode
from kp_backend.protocol.constants import (
    CHUNK_SIZE,
    CONFIGURATION,
    FAKE_ZLP,
    INTERFACE,
    PACKET_SIZE_HIGH_SPEED,
    PACKET_SIZE_SUPER_SPEED,
    VENDOR_ID,
    VENDOR_OUT_REQUEST_TYPE,
    ZLP_READ_LENGTH,
    ZLP_READ_TIMEOUT_MS,
    UsbSpeed,
)
from kp_backend.protocol.wire import packet_multiple, port_id_from_ports, port_path
from kp_backend.usb.backends import resolve_backend
from kp_backend.usb.errors import KpError, KpProtocolError, error_for_code
from kp_backend.usb.fw_state import firmware_string, uses_fake_zlp

__all__ = [
    "UsbDeviceInfo",
    "UsbTransport",
    "find_devices",
    "find_device",
    "map_usb_error",
    "UDEV_RULE_PATH",
]

log = logging.getLogger(__name__)

RC = ApiReturnCode
UDEV_RULE_PATH = __file__.rsplit("/", 1)[0] + "/99-kneron.rules"

_ERRNO_TO_CODE = {
    errno.EIO: RC.KP_ERROR_USB_IO_N1,
    errno.EINVAL: RC.KP_ERROR_USB_INVALID_PARAM_N2,
    errno.EACCES: RC.KP_ERROR_USB_ACCESS_N3,
    errno.EPERM: RC.KP_ERROR_USB_ACCESS_N3,
    errno.ENODEV: RC.KP_ERROR_USB_NO_DEVICE_N4,
    errno.ENOENT: RC.KP_ERROR_USB_NOT_FOUND_N5,
    errno.EBUSY: RC.KP_ERROR_USB_BUSY_N6,
    errno.ETIMEDOUT: RC.KP_ERROR_USB_TIMEOUT_N7,
    errno.EOVERFLOW: RC.KP_ERROR_USB_OVERFLOW_N8,
    errno.EPIPE: RC.KP_ERROR_USB_PIPE_N9,
    errno.EINTR: RC.KP_ERROR_USB_INTERRUPTED_N10,
    errno.ENOMEM: RC.KP_ERROR_USB_NO_MEM_N11,
    errno.ENOSYS: RC.KP_ERROR_USB_NOT_SUPPORTED_N12,
}


def permission_hint() -> str:
    """How to fix ``LIBUSB_ERROR_ACCESS`` (the udev rule on Linux)."""
    if sys.platform.startswith("linux"):
        return (
            "permission denied opening the USB device; install the udev rule shipped with "
            f"kp_backend: sudo cp {UDEV_RULE_PATH} /etc/udev/rules.d/ && "
            "sudo udevadm control --reload-rules && sudo udevadm trigger, then re-plug the dongle"
        )
    return "permission denied opening the USB device (on Windows install the WinUSB driver)"


def map_usb_error(exc: BaseException, what: str, device: str | None = None) -> KpError:
    """The one place where pyusb errors become Kneron codes (negative libusb numbers)."""
    if isinstance(exc, KpError):
        return exc
    if isinstance(exc, usb.core.USBTimeoutError):
        code = int(RC.KP_ERROR_USB_TIMEOUT_N7)
    elif isinstance(exc, usb.core.USBError):
        code = exc.backend_error_code
        if not isinstance(code, int) or code >= 0:
            code = int(_ERRNO_TO_CODE.get(exc.errno, RC.KP_ERROR_USB_OTHER_N99))
    elif isinstance(exc, usb.core.NoBackendError):
        return KpError(
            RC.KP_ERROR_USB_NOT_SUPPORTED_N12,
            f"{what}: no libusb backend available (install the 'libusb-package' wheel or the "
            "system libusb-1.0)",
            device,
        )
    else:
        code = int(RC.KP_ERROR_USB_OTHER_N99)
    message = f"{what}: {exc}"
    if code == RC.KP_ERROR_USB_ACCESS_N3:
        message = f"{what}: {permission_hint()}"
    return error_for_code(code, message, device)


@dataclass(frozen=True)
class UsbDeviceInfo:
    """What a scan learns about one Kneron device (PROTOCOL.md §1.6)."""

    vendor_id: int
    product_id: int
    bcd_device: int
    speed: int
    bus: int
    ports: tuple[int, ...]
    serial: str | None = None
    connectable: bool = False
    port_id: int = field(init=False)
    port_path: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "port_id", port_id_from_ports(self.bus, self.ports))
        object.__setattr__(self, "port_path", port_path(self.bus, self.ports))

    @property
    def kn_number(self) -> int:
        """The serial string parsed as hex when it is exactly 8 characters, else 0."""
        text = self.serial or ""
        if len(text) == 8:
            try:
                return int(text, 16)
            except ValueError:
                return 0
        return 0

    @property
    def firmware(self) -> str:
        return firmware_string(self.product_id, self.bcd_device)

    @property
    def name(self) -> str:
        """``"port 1-2-3 (id 393)"``: how messages name the device."""
        return f"port {self.port_path} (id {self.port_id})"


def _speed(dev: usb.core.Device) -> int:
    speed = getattr(dev, "speed", None)
    return int(speed) if isinstance(speed, int) else int(UsbSpeed.KP_USB_SPEED_UNKNOWN)


def _basic_info(dev: usb.core.Device, serial: str | None = None,
                connectable: bool = False) -> UsbDeviceInfo:
    return UsbDeviceInfo(
        vendor_id=dev.idVendor,
        product_id=dev.idProduct,
        bcd_device=dev.bcdDevice,
        speed=_speed(dev),
        bus=int(dev.bus or 0),
        ports=tuple(dev.port_numbers or ()),
        serial=serial,
        connectable=connectable,
    )


def _probe(dev: usb.core.Device) -> tuple[str | None, bool]:
    """Open without claiming: read the serial string; a BUSY answer to re-attaching the
    kernel driver means another process holds the interface (Kneron's trick)."""
    try:
        dev.attach_kernel_driver(INTERFACE)
    except usb.core.USBError as exc:
        code = map_usb_error(exc, "probe").kp_code
        if code in (RC.KP_ERROR_USB_BUSY_N6, RC.KP_ERROR_USB_ACCESS_N3,
                    RC.KP_ERROR_USB_NO_DEVICE_N4):
            return None, False
    except (NotImplementedError, usb.core.NoBackendError):
        pass
    try:
        serial = usb.util.get_string(dev, dev.iSerialNumber) if dev.iSerialNumber else None
    except (usb.core.USBError, ValueError, NotImplementedError) as exc:
        log.debug("cannot read the serial string of %s: %s", dev, exc)
        return None, False
    return serial, True


def _iter_kneron(backend: Any) -> list[usb.core.Device]:
    try:
        return list(usb.core.find(find_all=True, idVendor=VENDOR_ID, backend=backend))
    except usb.core.USBError as exc:
        raise map_usb_error(exc, "USB device enumeration") from exc


def find_devices(backend: Any = None, *, probe: bool = True) -> list[UsbDeviceInfo]:
    """Every device with vendor id 0x3231, in bus order (a snapshot; nothing stays open).

    ``backend``: ``None`` (real USB, or the virtual devices of ``KP_VIRTUAL_DEVICES``), a
    pyusb backend object, or a virtual-device spec string such as ``"KL520"``."""
    be = resolve_backend(backend)
    infos = []
    for dev in _iter_kneron(be):
        try:
            serial, connectable = _probe(dev) if probe else (None, False)
            infos.append(_basic_info(dev, serial, connectable))
        finally:
            usb.util.dispose_resources(dev)
    return infos


def find_device(port_id: int, backend: Any = None) -> usb.core.Device | None:
    """The pyusb device at ``port_id`` (0 = the first Kneron device), or ``None``."""
    be = resolve_backend(backend)
    found = None
    for dev in _iter_kneron(be):
        pid = port_id_from_ports(int(dev.bus or 0), tuple(dev.port_numbers or ()))
        if found is None and (port_id == 0 or pid == port_id):
            found = dev
        else:
            usb.util.dispose_resources(dev)
    return found


_ZERO_BYTE = array.array("B", [0])  # array * n: one allocation, filled by doubling copies


def _as_byte_array(piece: bytes | memoryview) -> array.array:
    """``piece`` as the ``array.array("B")`` pyusb sends without copying: the very array
    when ``piece`` views all of one (the encoders build payloads in such arrays, so a
    200 KB input goes out with no host copy), else one memcpy into a new array
    (``array.array("B", view)`` would copy byte by byte)."""
    owner = piece.obj if isinstance(piece, memoryview) else None
    if (isinstance(owner, array.array) and owner.typecode == "B"
            and len(piece) == len(owner) and piece.contiguous):
        return owner
    buf = array.array("B")
    buf.frombytes(piece)
    return buf


class UsbTransport:
    """An opened, claimed Kneron device with KDP2 bulk/control rules applied."""

    def __init__(self, dev: usb.core.Device) -> None:
        self._dev = dev
        self.info = _basic_info(dev)
        self.name = self.info.name
        self._closed = False
        self._configure()
        self.fake_zlp = uses_fake_zlp(self.info.product_id, self.info.bcd_device)

    # -- opening --------------------------------------------------------------------
    def _configure(self) -> None:
        dev = self._dev
        try:
            try:
                cfg = dev.get_active_configuration()
            except usb.core.USBError as exc:
                if exc.backend_error_code is not None:
                    raise
                dev.set_configuration(CONFIGURATION)  # unconfigured device
                cfg = dev.get_active_configuration()
            usb.util.claim_interface(dev, INTERFACE)
        except usb.core.USBError as exc:
            err = map_usb_error(exc, "open/configure", self.name)
            usb.util.dispose_resources(dev)
            if err.kp_code in (RC.KP_ERROR_USB_ACCESS_N3, RC.KP_ERROR_USB_NO_DEVICE_N4,
                               RC.KP_ERROR_USB_NOT_FOUND_N5):
                raise err from exc
            raise KpError(RC.KP_ERROR_CONFIGURE_DEVICE_27,
                          f"cannot set configuration / claim interface 0: {err.message}",
                          self.name) from exc
        intf = cfg[(INTERFACE, 0)]
        bulk = [ep for ep in intf
                if usb.util.endpoint_type(ep.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK]
        ins = sorted((ep for ep in bulk if ep.bEndpointAddress & 0x80),
                     key=lambda e: e.bEndpointAddress)
        outs = sorted((ep for ep in bulk if not ep.bEndpointAddress & 0x80),
                      key=lambda e: e.bEndpointAddress)
        if not ins or not outs:
            usb.util.dispose_resources(dev)
            raise KpError(RC.KP_ERROR_CONFIGURE_DEVICE_27,
                          "interface 0 lacks a bulk IN or bulk OUT endpoint", self.name)
        self.ep_in = ins[0].bEndpointAddress
        self.ep_out = outs[0].bEndpointAddress
        # Packet size from link speed (Kneron's rule); fall back to the descriptor.
        speed = self.info.speed
        if speed == UsbSpeed.KP_USB_SPEED_UNKNOWN:
            self.packet_size = int(outs[0].wMaxPacketSize) or PACKET_SIZE_HIGH_SPEED
        elif speed >= UsbSpeed.KP_USB_SPEED_SUPER:
            self.packet_size = PACKET_SIZE_SUPER_SPEED
        else:
            self.packet_size = PACKET_SIZE_HIGH_SPEED

    # -- transfers --------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise error_for_code(RC.KP_ERROR_USB_NO_DEVICE_N4, "transport is closed", self.name)

    def _bulk_write(self, piece: bytes | memoryview, timeout_ms: int) -> None:
        try:
            n = self._dev.write(self.ep_out, _as_byte_array(piece), int(timeout_ms))
        except (usb.core.USBError, NotImplementedError) as exc:
            raise map_usb_error(exc, f"bulk write of {len(piece)} bytes", self.name) from exc
        if n != len(piece):
            raise KpError(RC.KP_ERROR_USB_IO_N1,
                          f"short bulk write: {n} of {len(piece)} bytes accepted", self.name)

    def write(self, data: bytes | bytearray | memoryview, timeout_ms: int) -> None:
        """One logical OUT write (2 MiB pieces + fake-ZLP rule). ``timeout_ms`` 0 = forever."""
        self._check_open()
        view = memoryview(data).cast("B")
        total = len(view)
        for offset in range(0, total, CHUNK_SIZE):
            self._bulk_write(view[offset:offset + CHUNK_SIZE], timeout_ms)
        if packet_multiple(total, self.packet_size):
            self._bulk_write(FAKE_ZLP if self.fake_zlp else b"", timeout_ms)

    def _bulk_read(self, size: int, timeout_ms: int) -> bytes:
        """One bulk IN transfer of at most ``size`` bytes, as immutable ``bytes``.

        The buffer handed to pyusb is exactly ``size`` bytes (its length is the transfer's
        length) and made with one allocation; the bytes are then copied out once. pyusb's
        own buffer would cost a zero string, its copy into an array, a slice for a short
        read and our ``bytes`` copy (4 copies instead of 2; making a 2 MiB buffer takes
        29 us instead of 72 us here)."""
        buf = _ZERO_BYTE * size
        try:
            n = self._dev.read(self.ep_in, buf, int(timeout_ms))
        except (usb.core.USBError, NotImplementedError) as exc:
            raise map_usb_error(exc, f"bulk read of {size} bytes", self.name) from exc
        return buf.tobytes() if n == size else bytes(memoryview(buf)[:n])

    def read(self, size: int, timeout_ms: int) -> bytes:
        """One logical IN read of at most ``size`` bytes (2 MiB pieces, ZLP read-after)."""
        self._check_open()
        parts: list[bytes] = []
        got = 0
        while got < size:
            want = min(CHUNK_SIZE, size - got)
            chunk = self._bulk_read(want, timeout_ms)
            parts.append(chunk)
            got += len(chunk)
            if len(chunk) < want:
                break
        if got == size and packet_multiple(size, self.packet_size):
            try:
                extra = self._bulk_read(ZLP_READ_LENGTH, ZLP_READ_TIMEOUT_MS)
            except KpError as exc:
                raise error_for_code(exc.kp_code, f"no zero-length packet after a {size}-byte "
                                     f"read ({exc.message})", self.name) from exc
            if extra:
                raise KpProtocolError(RC.KP_ERROR_OTHER_99,
                                      f"expected a zero-length packet after a {size}-byte read,"
                                      f" got {len(extra)} bytes", self.name)
        return b"".join(parts)

    def control(self, request: int, value: int = 0, index: int = 0, timeout_ms: int = 0) -> None:
        """Vendor control request (0x40, no data stage)."""
        self._check_open()
        try:
            self._dev.ctrl_transfer(VENDOR_OUT_REQUEST_TYPE, int(request), int(value),
                                    int(index), None, int(timeout_ms))
        except (usb.core.USBError, NotImplementedError) as exc:
            raise map_usb_error(exc, f"control request 0x{int(request):02X}", self.name) from exc

    def close(self) -> None:
        """Release interface 0 and close the handle; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            usb.util.release_interface(self._dev, INTERFACE)
        except (usb.core.USBError, NotImplementedError) as exc:
            log.debug("%s: release_interface failed: %s", self.name, exc)
        try:
            usb.util.dispose_resources(self._dev)
        except (usb.core.USBError, NotImplementedError) as exc:
            log.debug("%s: close failed: %s", self.name, exc)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "UsbTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<UsbTransport {self.name} pid=0x{self.info.product_id:04X} "
                f"bcd=0x{self.info.bcd_device:04X} packet={getattr(self, 'packet_size', '?')} "
                f"{state}>")
