"""USB transport for Kneron devices (PROTOCOL.md §1–§2); the only pyusb user.

``find_devices(backend=None)`` lists Kneron devices; ``UsbTransport(dev)`` opens one and
applies the chunking / ZLP rules. Errors are :class:`KpError` with Kneron codes.
"""

from kp_backend.usb.backends import ENV_VIRTUAL_DEVICES, libusb_backend, resolve_backend
from kp_backend.usb.errors import (
    KpDeviceNotFound,
    KpDeviceStatus,
    KpDisconnected,
    KpError,
    KpProtocolError,
    KpTimeout,
    error_for_code,
)
from kp_backend.usb.transport import (
    UDEV_RULE_PATH,
    UsbDeviceInfo,
    UsbTransport,
    find_device,
    find_devices,
    map_usb_error,
)

__all__ = [
    "ENV_VIRTUAL_DEVICES",
    "UDEV_RULE_PATH",
    "KpDeviceNotFound",
    "KpDeviceStatus",
    "KpDisconnected",
    "KpError",
    "KpProtocolError",
    "KpTimeout",
    "UsbDeviceInfo",
    "UsbTransport",
    "error_for_code",
    "find_device",
    "find_devices",
    "libusb_backend",
    "map_usb_error",
    "resolve_backend",
]
