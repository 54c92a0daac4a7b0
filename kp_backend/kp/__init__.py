"""Kneron PLUS's Python API (``kp``) in pure Python: ``from kp_backend import kp``.

Same names, signatures, value classes, enums, defaults and error codes as Kneron's package
(PLUS 1.3 names, PLUS 2.2 behaviour and wire format): ``kp.core``, ``kp.inference``,
``kp.v1``, ``kp.ApiKPException``, value classes and enums at top level (also grouped as
``kp.value`` / ``kp.enum``). Devices are real USB dongles through libusb, or the virtual
dongles of ``KP_VIRTUAL_DEVICES=KL520,KL720``. See ``docs/kp.md``.
"""

from kp_backend.kp import KPConstant, enum, value  # noqa: F401
from kp_backend.kp import v1  # noqa: F401
from kp_backend.kp._group import DeviceGroup
from kp_backend.kp.core import PLUS_VERSION, core
from kp_backend.kp.enum import (
    ApiReturnCode,
    ChannelOrdering,
    FixedPointDType,
    ImageFormat,
    ModelTargetChip,
    ModelTensorDataLayout,
    NormalizeMode,
    PaddingMode,
    ProductId,
    ResetMode,
    ResizeMode,
    UsbSpeed,
)
from kp_backend.kp.exception import ApiException, ApiKPException
from kp_backend.kp.inference import inference
from kp_backend.kp.value import (
    DdrManageAttributes,
    DeviceDescriptor,
    DeviceDescriptorList,
    DeviceGroupContent,
    FirmwareVersion,
    GenericRawBypassPreProcImageHeader,
    GenericRawBypassPreProcResult,
    GenericRawBypassPreProcResultHeader,
    GenericRawImageHeader,
    GenericRawResult,
    GenericRawResultHeader,
    GenericRawResultNDArray,
    HwPreProcInfo,
    InferenceConfiguration,
    InferenceCropBox,
    InferenceFixedNodeOutput,
    InferenceFloatNodeOutput,
    ModelNefDescriptor,
    ModelNefMetadata,
    NefSchemaVersion,
    QuantizationParameters,
    QuantizedFixedPointDescriptor,
    SetupFileSchemaVersion,
    SetupSchemaVersion,
    SingleModelDescriptor,
    SystemInfo,
    TensorDescriptor,
)

KPValue = value
KPEnum = enum
value.DeviceGroup = DeviceGroup  # kp.value groups every value class

__version__ = PLUS_VERSION

__all__ = [
    "ApiException", "ApiKPException", "ApiReturnCode", "ChannelOrdering", "DdrManageAttributes",
    "DeviceDescriptor", "DeviceDescriptorList", "DeviceGroup", "DeviceGroupContent",
    "FirmwareVersion", "FixedPointDType", "GenericRawBypassPreProcImageHeader",
    "GenericRawBypassPreProcResult", "GenericRawBypassPreProcResultHeader",
    "GenericRawImageHeader", "GenericRawResult", "GenericRawResultHeader",
    "GenericRawResultNDArray", "HwPreProcInfo", "ImageFormat", "InferenceConfiguration",
    "InferenceCropBox", "InferenceFixedNodeOutput", "InferenceFloatNodeOutput", "KPConstant",
    "KPEnum", "KPValue", "ModelNefDescriptor", "ModelNefMetadata", "ModelTargetChip",
    "ModelTensorDataLayout", "NefSchemaVersion", "NormalizeMode", "PaddingMode", "ProductId",
    "QuantizationParameters", "QuantizedFixedPointDescriptor", "ResetMode", "ResizeMode",
    "SetupFileSchemaVersion", "SetupSchemaVersion", "SingleModelDescriptor", "SystemInfo",
    "TensorDescriptor", "UsbSpeed", "core", "enum", "inference", "v1", "value",
]
