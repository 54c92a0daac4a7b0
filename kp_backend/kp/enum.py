"""``kp`` enums with Kneron's class and member names (KP_PYTHON_API.md §6).

Protocol-level enums (image format, normalise/resize/padding modes, reset mode, USB speed)
and ``ApiReturnCode`` live in :mod:`kp_backend.protocol` and are re-exported unchanged; the
ones only the Python API needs are defined here. ``str(member)`` is ``"Class.MEMBER"`` for
every one of them, as in Kneron's package (:class:`~kp_backend.protocol.constants.KpEnum`).
"""

from __future__ import annotations

import enum

from kp_backend.npu_types import Chip, DataLayout
from kp_backend.protocol.codes import ApiReturnCode
from kp_backend.protocol.constants import (
    ImageFormat,
    KpEnum,
    NormalizeMode,
    PaddingMode,
    ResetMode,
    ResizeMode,
    UsbSpeed,
)

__all__ = [
    "ApiReturnCode", "ChannelOrdering", "FixedPointDType", "ImageFormat", "ModelTargetChip",
    "ModelTensorDataLayout", "NormalizeMode", "PaddingMode", "ProductId", "ResetMode",
    "ResizeMode", "UsbSpeed", "enum_text",
]


def enum_text(value: object) -> str:
    """``"Class.MEMBER"`` for any enum member (also those whose ``str`` is the number)."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return str(value)


class ProductId(KpEnum):
    KP_DEVICE_KL520 = 0x100
    KP_DEVICE_KL720 = 0x720
    KP_DEVICE_KL720_LEGACY = 0x200
    KP_DEVICE_KL530 = 0x530
    KP_DEVICE_KL730 = 0x730
    KP_DEVICE_KL630 = 0x630
    KP_DEVICE_KL540 = 0x540


class ChannelOrdering(KpEnum):
    KP_CHANNEL_ORDERING_HCW = 0
    KP_CHANNEL_ORDERING_CHW = 1
    KP_CHANNEL_ORDERING_HWC = 2


class FixedPointDType(KpEnum):
    KP_FIXED_POINT_DTYPE_UNKNOWN = 0
    KP_FIXED_POINT_DTYPE_INT8 = 1
    KP_FIXED_POINT_DTYPE_INT16 = 2


ModelTargetChip = KpEnum(
    "ModelTargetChip", {f"KP_MODEL_TARGET_CHIP_{c.name}": int(c) for c in Chip})
ModelTargetChip.__doc__ = ("``kp_model_target_chip_t`` (numbers of "
                           ":class:`~kp_backend.npu_types.Chip`).")

ModelTensorDataLayout = KpEnum(
    "ModelTensorDataLayout",
    {f"KP_MODEL_TENSOR_DATA_LAYOUT_{d.layout_name}": int(d) for d in DataLayout})
ModelTensorDataLayout.__doc__ = ("``kp_model_tensor_data_layout_t`` (numbers of "
                                 ":class:`~kp_backend.npu_types.DataLayout`).")
