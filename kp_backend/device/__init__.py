"""Device groups: connect, firmware and model loading, FIFO sizing, reset, and typed
inference sends/receives of raw bytes (PROTOCOL.md §1.7, §4–§6)."""

from kp_backend.device.errors import (
    KpDeviceNotFound,
    KpDeviceStatus,
    KpDisconnected,
    KpError,
    KpProtocolError,
    KpTimeout,
)
from kp_backend.device.fifo import DdrManageAttributes, FifoPlan, plan_fifo
from kp_backend.device.group import DeviceGroup, ModelEntry, image_byte_count
from kp_backend.device.link import DeviceLink, ModelInfoReply

__all__ = [
    "DdrManageAttributes", "DeviceGroup", "DeviceLink", "FifoPlan", "KpDeviceNotFound",
    "KpDeviceStatus", "KpDisconnected", "KpError", "KpProtocolError", "KpTimeout",
    "ModelEntry", "ModelInfoReply", "image_byte_count", "plan_fifo",
]
