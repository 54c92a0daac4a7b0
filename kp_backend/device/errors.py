"""Errors of the device layer: :class:`KpError` and its subclasses, each carrying a Kneron
return code (``.kp_code``) and naming the device. Defined with the transport (the lowest
layer) and re-exported here."""

from kp_backend.usb.errors import (  # noqa: F401
    KpDeviceNotFound,
    KpDeviceStatus,
    KpDisconnected,
    KpError,
    KpProtocolError,
    KpTimeout,
    code_label,
    error_for_code,
)

__all__ = ["KpError", "KpTimeout", "KpDisconnected", "KpDeviceNotFound", "KpProtocolError",
           "KpDeviceStatus", "error_for_code", "code_label"]
