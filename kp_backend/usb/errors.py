"""Typed errors of the host library, each carrying a Kneron return code.

The lower layers (USB transport, device group) raise these; ``kp_backend.kp`` turns them
into ``ApiKPException(code, function_name)``. Every message names the device (port path /
port id) and the cause. The classes also join :mod:`kp_runtime.errors`' device families so
provider code can catch ``DeviceTimeout`` / ``DeviceDisconnected`` without knowing Kneron.
"""

from __future__ import annotations

from kp_backend.protocol.codes import ApiReturnCode
from kp_runtime.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceNotFound,
    DeviceProtocolError,
    DeviceTimeout,
)

__all__ = [
    "KpError",
    "KpTimeout",
    "KpDisconnected",
    "KpDeviceNotFound",
    "KpProtocolError",
    "KpDeviceStatus",
    "error_for_code",
    "code_label",
]


def code_label(code: int) -> str:
    """``"KP_ERROR_USB_TIMEOUT_N7 (-7)"``, or ``"code 12345"`` for numbers Kneron does not name."""
    try:
        return f"{ApiReturnCode(code).name} ({code})"
    except ValueError:
        return f"code {code}"


class KpError(DeviceError):
    """A host-library failure with a Kneron return code (``code``, an ``int``)."""

    def __init__(self, code: int, message: str, device: str | None = None) -> None:
        self.kp_code = int(code)
        where = f"{device}: " if device else ""
        super().__init__(f"{where}{message} [{code_label(self.kp_code)}]", device=device)
        self.message = message


class KpTimeout(KpError, DeviceTimeout):
    """A USB transfer did not complete within the group timeout (code -7)."""


class KpDisconnected(KpError, DeviceDisconnected):
    """The device left the bus (code -4, or a device missing after a reboot)."""


class KpDeviceNotFound(KpError, DeviceNotFound):
    """No device at the requested port id (codes 10, 28)."""


class KpProtocolError(KpError, DeviceProtocolError):
    """The device answered something the protocol does not allow (codes 11, 30, 32, 99)."""


class KpDeviceStatus(KpError):
    """The firmware reported an error status (result ``status_code`` or a command's rc).
    Raised by ``DeviceGroup.receive`` with ``.raw``, the result message."""

    raw: bytes = b""


_BY_CODE: dict[int, type[KpError]] = {
    ApiReturnCode.KP_ERROR_USB_TIMEOUT_N7: KpTimeout,
    ApiReturnCode.KP_ERROR_USB_NO_DEVICE_N4: KpDisconnected,
    ApiReturnCode.KP_ERROR_DEVICE_NOT_EXIST_10: KpDeviceNotFound,
    ApiReturnCode.KP_ERROR_CONNECT_FAILED_28: KpDeviceNotFound,
    ApiReturnCode.KP_ERROR_DEVICE_INCORRECT_RESPONSE_11: KpProtocolError,
    ApiReturnCode.KP_ERROR_RECEIVE_INCORRECT_HEADER_STAMP_30: KpProtocolError,
    ApiReturnCode.KP_ERROR_RECEIVE_JOB_ID_MISMATCH_32: KpProtocolError,
    ApiReturnCode.KP_ERROR_OTHER_99: KpProtocolError,
}


def error_for_code(code: int, message: str, device: str | None = None) -> KpError:
    """The most specific :class:`KpError` subclass for ``code``; firmware codes
    (>= 100) give :class:`KpDeviceStatus`."""
    cls = _BY_CODE.get(int(code))
    if cls is None:
        cls = KpDeviceStatus if code >= 100 else KpError
    return cls(code, message, device)
