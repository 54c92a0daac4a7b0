"""``kp`` value classes with Kneron's names, constructor signatures and defaults
(KP_PYTHON_API.md §5).

Common behaviour: keyword construction; fields are properties (read-only unless Kneron's
are read-write); ``get_member_variable_dict()`` gives a dict and ``str()``/``repr()`` that
dict as JSON (indent 4), enums as ``"Class.MEMBER"``, ids and CRCs as ``"0x…"``, numpy
arrays as lists of text lines. Negative sizes/ids raise ``AssertionError`` (with a message,
where Kneron's is empty) and more than 4 crop boxes ``IndexError``, as in Kneron's package.
"""

from __future__ import annotations

import enum
import json
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from kp_backend.kp.enum import (
    ChannelOrdering,
    FixedPointDType,
    ImageFormat,
    ModelTargetChip,
    ModelTensorDataLayout,
    NormalizeMode,
    PaddingMode,
    ResizeMode,
    UsbSpeed,
    enum_text,
)
from kp_backend.protocol.constants import MAX_CROP_BOX

__all__ = [
    "DdrManageAttributes", "DeviceDescriptor", "DeviceDescriptorList", "DeviceGroupContent",
    "FirmwareVersion", "GenericRawBypassPreProcImageHeader", "GenericRawBypassPreProcResult",
    "GenericRawBypassPreProcResultHeader", "GenericRawImageHeader", "GenericRawResult",
    "GenericRawResultHeader", "GenericRawResultNDArray", "HwPreProcInfo",
    "InferenceConfiguration", "InferenceCropBox", "InferenceFixedNodeOutput",
    "InferenceFloatNodeOutput", "ModelNefDescriptor", "ModelNefMetadata", "NefSchemaVersion",
    "QuantizationParameters", "QuantizedFixedPointDescriptor", "SetupFileSchemaVersion",
    "SetupSchemaVersion", "SingleModelDescriptor", "SystemInfo", "TensorDescriptor",
]


# --- rendering ------------------------------------------------------------------------
def _render(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return enum_text(value)
    if isinstance(value, ValueBase):
        return value.get_member_variable_dict()
    if isinstance(value, np.ndarray):
        return str(value).splitlines()
    if isinstance(value, (list, tuple)):
        return {i: _render(v) for i, v in enumerate(value)}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def _hex(value: int) -> str:
    return f"0x{int(value):X}"


class ValueBase:
    """Dict / JSON rendering shared by every value class."""

    _dict_fields: tuple[str, ...] = ()

    def get_member_variable_dict(self) -> dict:
        return {name: _render(getattr(self, name)) for name in self._dict_fields}

    def __repr__(self) -> str:
        return json.dumps(self.get_member_variable_dict(), indent=4, default=str)

    __str__ = __repr__


# --- validated properties ---------------------------------------------------------------
def _check_uint(name: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 0:
            raise AssertionError(f"{name} must be >= 0, got {value}")
        return int(value)
    return check


def _check_int(name: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        return int(value)
    return check


def _check_enum(name: str, cls: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            return cls(value)
        except ValueError:
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                return int(value)  # unknown number: the device layer reports it (error 12)
            raise TypeError(f"{name} must be a {cls.__name__}, got {value!r}") from None
    return check


def _check_str(name: str, limit: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = str(value)
        if len(text) > limit:
            raise AssertionError(f"{name} must be at most {limit} characters, got {len(text)}")
        return text
    return check


class _Prop:
    """A property stored in ``_<name>``; ``check`` validates/converts on set."""

    def __init__(self, check: Callable[[Any], Any] | None = None, readonly: bool = False) -> None:
        self.check = check
        self.readonly = readonly

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.slot = name, "_" + name
        if self.check is None:
            self.check = lambda v: v

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else obj.__dict__[self.slot]

    def __set__(self, obj: Any, value: Any) -> None:
        if self.readonly:
            raise AttributeError(f"{type(obj).__name__}.{self.name} is read-only")
        obj.__dict__[self.slot] = self.check(value)

    def init(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = self.check(value)


def _init(obj: Any, **values: Any) -> None:
    cls = type(obj)
    for name, value in values.items():
        getattr(cls, name).init(obj, value)


def _u(name: str, readonly: bool = False) -> _Prop:
    return _Prop(_check_uint(name), readonly)


# --- devices ------------------------------------------------------------------------------
class DeviceDescriptor(ValueBase):
    """One scanned device."""

    _dict_fields = ("usb_port_id", "vendor_id", "product_id", "link_speed", "kn_number",
                    "is_connectable", "usb_port_path", "firmware")
    usb_port_id = _u("usb_port_id", True)
    vendor_id = _u("vendor_id", True)
    product_id = _u("product_id", True)
    link_speed = _Prop(_check_enum("link_speed", UsbSpeed), True)
    kn_number = _u("kn_number", True)
    is_connectable = _Prop(bool, True)
    usb_port_path = _Prop(_check_str("usb_port_path", 20), True)
    firmware = _Prop(_check_str("firmware", 30), True)

    def __init__(self, usb_port_id: int = 0, vendor_id: int = 0, product_id: int = 0,
                 link_speed: UsbSpeed = UsbSpeed.KP_USB_SPEED_UNKNOWN, kn_number: int = 0,
                 is_connectable: bool = False, usb_port_path: str = "", firmware: str = "") -> None:
        _init(self, usb_port_id=usb_port_id, vendor_id=vendor_id, product_id=product_id,
              link_speed=link_speed, kn_number=kn_number, is_connectable=is_connectable,
              usb_port_path=usb_port_path, firmware=firmware)

    def get_member_variable_dict(self) -> dict:
        d = super().get_member_variable_dict()
        for key in ("vendor_id", "product_id", "kn_number"):
            d[key] = _hex(getattr(self, key))
        return d


class DeviceDescriptorList(ValueBase):
    """A snapshot of a scan (unlike Kneron's, an older list never changes)."""

    def __init__(self, device_descriptor_list: Sequence[DeviceDescriptor] = ()) -> None:
        self._list = tuple(device_descriptor_list)

    @property
    def device_descriptor_number(self) -> int:
        return len(self._list)

    @property
    def device_descriptor_list(self) -> list[DeviceDescriptor]:
        return list(self._list)

    def get_member_variable_dict(self) -> dict:
        return {i: d.get_member_variable_dict() for i, d in enumerate(self._list)}


class FirmwareVersion(ValueBase):
    reserved = _u("reserved", True)
    major = _u("major", True)
    minor = _u("minor", True)
    update = _u("update", True)
    build = _u("build", True)

    def __init__(self, reserved: int = 0, major: int = 0, minor: int = 0, update: int = 0,
                 build: int = 0) -> None:
        _init(self, reserved=reserved, major=major, minor=minor, update=update, build=build)

    def _text(self) -> str:
        core = f"{self.major}.{self.minor}.{self.update}-build.{self.build}"
        return f"{self.reserved}.{core}" if self.reserved else core

    def get_member_variable_dict(self) -> dict:
        return {"firmware_version": self._text()}


class SystemInfo(ValueBase):
    kn_number = _u("kn_number", True)
    firmware_version = _Prop(readonly=True)

    def __init__(self, kn_number: int = 0, firmware_version: FirmwareVersion | None = None) -> None:
        _init(self, kn_number=kn_number, firmware_version=firmware_version or FirmwareVersion())

    def get_member_variable_dict(self) -> dict:
        return {"kn_number": _hex(self.kn_number),
                "firmware_version": self.firmware_version._text()}


class DdrManageAttributes(ValueBase):
    _dict_fields = ("model_size", "input_buffer_size", "input_buffer_count",
                    "result_buffer_size", "result_buffer_count")
    model_size = _u("model_size")
    input_buffer_size = _u("input_buffer_size")
    input_buffer_count = _u("input_buffer_count")
    result_buffer_size = _u("result_buffer_size")
    result_buffer_count = _u("result_buffer_count")

    def __init__(self, model_size: int = 0, input_buffer_size: int = 0,
                 input_buffer_count: int = 0, result_buffer_size: int = 0,
                 result_buffer_count: int = 0) -> None:
        _init(self, model_size=model_size, input_buffer_size=input_buffer_size,
              input_buffer_count=input_buffer_count, result_buffer_size=result_buffer_size,
              result_buffer_count=result_buffer_count)

    def get_member_variable_dict(self) -> dict:
        d = super().get_member_variable_dict()
        d["model_size (MiB)"] = d.pop("model_size")  # Kneron's key (the value is in bytes)
        return d


class DeviceGroupContent(ValueBase):
    """What a connected group holds (``DeviceGroup.content``)."""

    _dict_fields = ("timeout", "num_device", "product_id", "loaded_model_nef_descriptor",
                    "ddr_manage_attributes")

    def __init__(self, timeout: int = 0, num_device: int = 0, product_id: int = 0,
                 loaded_model_nef_descriptor: "ModelNefDescriptor | None" = None,
                 ddr_manage_attributes: DdrManageAttributes | None = None) -> None:
        self.timeout = timeout
        self.num_device = num_device
        self.product_id = product_id
        self.loaded_model_nef_descriptor = loaded_model_nef_descriptor or ModelNefDescriptor()
        self.ddr_manage_attributes = ddr_manage_attributes or DdrManageAttributes()

    def get_member_variable_dict(self) -> dict:
        d = super().get_member_variable_dict()
        d["product_id"] = _hex(self.product_id)
        return d


class InferenceConfiguration(ValueBase):
    _dict_fields = ("enable_frame_drop",)
    enable_frame_drop = _Prop(bool)

    def __init__(self, enable_frame_drop: bool = False) -> None:
        _init(self, enable_frame_drop=enable_frame_drop)


# --- inference request headers ----------------------------------------------------------------
class InferenceCropBox(ValueBase):
    _dict_fields = ("crop_box_index", "x", "y", "width", "height")
    crop_box_index = _u("crop_box_index")
    x = _u("x")
    y = _u("y")
    width = _u("width")
    height = _u("height")

    def __init__(self, crop_box_index: int = 0, x: int = 0, y: int = 0, width: int = 0,
                 height: int = 0) -> None:
        _init(self, crop_box_index=crop_box_index, x=x, y=y, width=width, height=height)


def _crop_list(value: Iterable[InferenceCropBox]) -> list[InferenceCropBox]:
    boxes = list(value)
    if len(boxes) > MAX_CROP_BOX:
        raise IndexError(f"at most {MAX_CROP_BOX} crop boxes, got {len(boxes)}")
    for i, box in enumerate(boxes):
        if not isinstance(box, InferenceCropBox):
            raise TypeError(f"crop box {i} must be an InferenceCropBox, got {type(box).__name__}")
    return boxes


class GenericRawImageHeader(ValueBase):
    """Job-10 request: model, pre-processing modes, inference number, crops, image size and
    format. ``width``/``height``/``image_format`` are overwritten by the send call."""

    model_id = _u("model_id")
    resize_mode = _Prop(_check_enum("resize_mode", ResizeMode))
    padding_mode = _Prop(_check_enum("padding_mode", PaddingMode))
    normalize_mode = _Prop(_check_enum("normalize_mode", NormalizeMode))
    inference_number = _u("inference_number")
    inference_crop_box_list = _Prop(_crop_list)
    width = _u("width")
    height = _u("height")
    image_format = _Prop(_check_enum("image_format", ImageFormat))

    def __init__(self, model_id: int = 0, resize_mode: ResizeMode = ResizeMode.KP_RESIZE_ENABLE,
                 padding_mode: PaddingMode = PaddingMode.KP_PADDING_CORNER,
                 normalize_mode: NormalizeMode = NormalizeMode.KP_NORMALIZE_KNERON,
                 inference_number: int = 0,
                 inference_crop_box_list: Sequence[InferenceCropBox] = (),
                 width: int = 0, height: int = 0,
                 image_format: ImageFormat = ImageFormat.KP_IMAGE_FORMAT_RGB565) -> None:
        _init(self, model_id=model_id, resize_mode=resize_mode, padding_mode=padding_mode,
              normalize_mode=normalize_mode, inference_number=inference_number,
              inference_crop_box_list=inference_crop_box_list, width=width, height=height,
              image_format=image_format)

    @property
    def crop_count(self) -> int:
        return len(self.inference_crop_box_list)

    def get_member_variable_dict(self) -> dict:
        return {
            "image": {"width": self.width, "height": self.height,
                      "image_format": _render(self.image_format)},
            "inference_configuration": {
                "resize_mode": _render(self.resize_mode),
                "padding_mode": _render(self.padding_mode),
                "normalize_mode": _render(self.normalize_mode),
                "inference_number": self.inference_number,
                "model_id": self.model_id,
                "crop_count": self.crop_count,
                "inference_crop_box_list": _render(self.inference_crop_box_list),
            },
        }


class GenericRawBypassPreProcImageHeader(ValueBase):
    """Job-17 request: ``image_buffer_size`` is the byte count the send transmits."""

    _dict_fields = ("model_id", "inference_number", "image_buffer_size")
    model_id = _u("model_id")
    inference_number = _u("inference_number")
    image_buffer_size = _u("image_buffer_size")

    def __init__(self, model_id: int = 0, inference_number: int = 0,
                 image_buffer_size: int = 0) -> None:
        _init(self, model_id=model_id, inference_number=inference_number,
              image_buffer_size=image_buffer_size)


# --- results ---------------------------------------------------------------------------------
class HwPreProcInfo(ValueBase):
    """What the device's pre-processing did (first record of a job-10 result)."""

    _dict_fields = ("img_width", "img_height", "resized_img_width", "resized_img_height",
                    "pad_top", "pad_bottom", "pad_left", "pad_right", "model_input_width",
                    "model_input_height", "crop_area")
    img_width = _u("img_width", True)
    img_height = _u("img_height", True)
    resized_img_width = _u("resized_img_width", True)
    resized_img_height = _u("resized_img_height", True)
    pad_top = _u("pad_top", True)
    pad_bottom = _u("pad_bottom", True)
    pad_left = _u("pad_left", True)
    pad_right = _u("pad_right", True)
    model_input_width = _u("model_input_width", True)
    model_input_height = _u("model_input_height", True)
    crop_area = _Prop(readonly=True)

    def __init__(self, img_width: int = 0, img_height: int = 0, resized_img_width: int = 0,
                 resized_img_height: int = 0, pad_top: int = 0, pad_bottom: int = 0,
                 pad_left: int = 0, pad_right: int = 0, model_input_width: int = 0,
                 model_input_height: int = 0, crop_area: InferenceCropBox | None = None) -> None:
        _init(self, img_width=img_width, img_height=img_height,
              resized_img_width=resized_img_width, resized_img_height=resized_img_height,
              pad_top=pad_top, pad_bottom=pad_bottom, pad_left=pad_left, pad_right=pad_right,
              model_input_width=model_input_width, model_input_height=model_input_height,
              crop_area=crop_area or InferenceCropBox())


class GenericRawBypassPreProcResultHeader(ValueBase):
    """Filled by the bypass receive (1.3 fields + 2.2's ``product_id``)."""

    _dict_fields = ("inference_number", "crop_number", "num_output_node", "product_id")
    inference_number = _u("inference_number", True)
    crop_number = _u("crop_number", True)
    num_output_node = _u("num_output_node", True)
    product_id = _u("product_id", True)

    def __init__(self, inference_number: int = 0, crop_number: int = 0,
                 num_output_node: int = 0, product_id: int = 0) -> None:
        _init(self, inference_number=inference_number, crop_number=crop_number,
              num_output_node=num_output_node, product_id=product_id)

    def get_member_variable_dict(self) -> dict:
        d = super().get_member_variable_dict()
        d["product_id"] = _hex(self.product_id)
        return d


class GenericRawResultHeader(GenericRawBypassPreProcResultHeader):
    """Filled by the image receive; adds the device's pre-processing info."""

    _dict_fields = GenericRawBypassPreProcResultHeader._dict_fields + ("hw_pre_proc_info",)
    hw_pre_proc_info = _Prop(readonly=True)

    def __init__(self, inference_number: int = 0, crop_number: int = 0,
                 num_output_node: int = 0, product_id: int = 0,
                 hw_pre_proc_info: HwPreProcInfo | None = None) -> None:
        super().__init__(inference_number, crop_number, num_output_node, product_id)
        _init(self, hw_pre_proc_info=hw_pre_proc_info or HwPreProcInfo())


class GenericRawResultNDArray(ValueBase):
    """The raw result message (a zeroed buffer of ``buffer_size`` bytes until received).
    ``buffer`` / ``bytes(...)`` give the bytes actually received (an extension)."""

    _dict_fields = ("buffer_size",)

    def __init__(self, buffer_size: int) -> None:
        _check_uint("buffer_size")(buffer_size)
        self._buffer_size = int(buffer_size)
        self._data = bytes(buffer_size)

    @property
    def buffer_size(self) -> int:
        return self._buffer_size

    @property
    def buffer(self) -> bytes:
        return self._data

    def __bytes__(self) -> bytes:
        return self._data

    def _fill(self, data: bytes) -> None:
        self._data = bytes(data)


class GenericRawResult(ValueBase):
    _dict_fields = ("header", "raw_result")
    _header_cls: type = GenericRawResultHeader

    def __init__(self, buffer_size: int) -> None:
        self._header = self._header_cls()
        self._raw_result = GenericRawResultNDArray(buffer_size)

    @property
    def header(self):
        return self._header

    @property
    def raw_result(self) -> GenericRawResultNDArray:
        return self._raw_result


class GenericRawBypassPreProcResult(GenericRawResult):
    _header_cls = GenericRawBypassPreProcResultHeader


# --- model descriptors ------------------------------------------------------------------------
class _SchemaVersion(ValueBase):
    major = _u("major", True)
    minor = _u("minor", True)
    revision = _u("revision", True)

    def __init__(self, major: int = 0, minor: int = 0, revision: int = 0) -> None:
        _init(self, major=major, minor=minor, revision=revision)

    def get_member_variable_dict(self) -> dict:
        return {"version": f"{self.major}.{self.minor}.{self.revision}"}


class NefSchemaVersion(_SchemaVersion):
    pass


class SetupSchemaVersion(_SchemaVersion):
    pass


class SetupFileSchemaVersion(_SchemaVersion):
    pass


class QuantizedFixedPointDescriptor(ValueBase):
    _dict_fields = ("scale", "radix")
    scale = _Prop(float, True)
    radix = _Prop(_check_int("radix"), True)

    def __init__(self, scale: float = 0, radix: int = 0) -> None:
        _init(self, scale=scale, radix=radix)


class QuantizationParameters(ValueBase):
    _dict_fields = ("quantized_fixed_point_descriptor_list",)
    quantized_fixed_point_descriptor_list = _Prop(list, True)

    def __init__(self, quantized_fixed_point_descriptor_list:
                 Sequence[QuantizedFixedPointDescriptor] = ()) -> None:
        _init(self, quantized_fixed_point_descriptor_list=quantized_fixed_point_descriptor_list)


class TensorDescriptor(ValueBase):
    _dict_fields = ("index", "name", "shape_npu", "shape_onnx", "data_layout",
                    "quantization_parameters")
    index = _u("index", True)
    name = _Prop(str, True)
    shape_npu = _Prop(list, True)
    shape_onnx = _Prop(list, True)
    data_layout = _Prop(_check_enum("data_layout", ModelTensorDataLayout), True)
    quantization_parameters = _Prop(readonly=True)

    def __init__(self, index: int = 0, name: str = "", shape_npu: Sequence[int] = (),
                 shape_onnx: Sequence[int] = (),
                 data_layout=ModelTensorDataLayout.KP_MODEL_TENSOR_DATA_LAYOUT_UNKNOWN,
                 quantization_parameters: QuantizationParameters | None = None) -> None:
        _init(self, index=index, name=name, shape_npu=shape_npu, shape_onnx=shape_onnx,
              data_layout=data_layout,
              quantization_parameters=quantization_parameters or QuantizationParameters())

    def get_member_variable_dict(self) -> dict:
        d = super().get_member_variable_dict()
        d["shape_npu"], d["shape_onnx"] = list(self.shape_npu), list(self.shape_onnx)
        return d


class SingleModelDescriptor(ValueBase):
    """One model: 2.2's rich fields plus 1.3's ``width``/``height``/``channel``/``img_format``
    (input node 0's NPU shape ``[B, C, H, W]``; ``img_format`` defaults to RGBA8888)."""

    target_chip = _Prop(_check_enum("target_chip", ModelTargetChip), True)
    version = _u("version", True)
    id = _u("id", True)
    input_nodes = _Prop(list, True)
    output_nodes = _Prop(list, True)
    setup_schema_version = _Prop(readonly=True)
    setup_file_schema_version = _Prop(readonly=True)
    max_raw_out_size = _u("max_raw_out_size", True)
    img_format = _Prop(_check_enum("img_format", ImageFormat), True)

    def __init__(self, target_chip=ModelTargetChip.KP_MODEL_TARGET_CHIP_UNKNOWN, version: int = 0,
                 id: int = 0, input_nodes: Sequence[TensorDescriptor] = (),  # noqa: A002
                 output_nodes: Sequence[TensorDescriptor] = (),
                 setup_schema_version: SetupSchemaVersion | None = None,
                 setup_file_schema_version: SetupFileSchemaVersion | None = None,
                 max_raw_out_size: int = 0, *, width: int | None = None,
                 height: int | None = None, channel: int | None = None,
                 img_format: ImageFormat = ImageFormat.KP_IMAGE_FORMAT_RGBA8888) -> None:
        _init(self, target_chip=target_chip, version=version, id=id, input_nodes=input_nodes,
              output_nodes=output_nodes,
              setup_schema_version=setup_schema_version or SetupSchemaVersion(),
              setup_file_schema_version=setup_file_schema_version or SetupFileSchemaVersion(),
              max_raw_out_size=max_raw_out_size, img_format=img_format)
        self._size = (width, height, channel)

    def _dim(self, which: int, axis: int) -> int:
        if self._size[which] is not None:
            return int(self._size[which])
        if self.input_nodes and len(self.input_nodes[0].shape_npu) == 4:
            return int(self.input_nodes[0].shape_npu[axis])
        return 0

    @property
    def width(self) -> int:
        return self._dim(0, 3)

    @property
    def height(self) -> int:
        return self._dim(1, 2)

    @property
    def channel(self) -> int:
        return self._dim(2, 1)

    def get_member_variable_dict(self) -> dict:
        return {
            "target_chip": _render(self.target_chip),
            "version": _hex(self.version),
            "id": self.id,
            "width": self.width, "height": self.height, "channel": self.channel,
            "img_format": _render(self.img_format),
            "max_raw_out_size": self.max_raw_out_size,
            "input_nodes": _render(self.input_nodes),
            "output_nodes": _render(self.output_nodes),
            "setup_schema_version": _render(self.setup_schema_version),
            "setup_file_schema_version": _render(self.setup_file_schema_version),
        }


class ModelNefMetadata(ValueBase):
    _dict_fields = ("kn_number", "toolchain_version", "compiler_version", "nef_schema_version",
                    "platform")
    kn_number = _u("kn_number", True)
    toolchain_version = _Prop(str, True)
    compiler_version = _Prop(str, True)
    nef_schema_version = _Prop(readonly=True)
    platform = _Prop(str, True)

    def __init__(self, kn_number: int = 0, toolchain_version: str = "",
                 compiler_version: str = "", nef_schema_version: NefSchemaVersion | None = None,
                 platform: str = "") -> None:
        _init(self, kn_number=kn_number, toolchain_version=toolchain_version,
              compiler_version=compiler_version,
              nef_schema_version=nef_schema_version or NefSchemaVersion(), platform=platform)

    def get_member_variable_dict(self) -> dict:
        d = super().get_member_variable_dict()
        d["kn_number"] = _hex(self.kn_number)
        return d


class ModelNefDescriptor(ValueBase):
    """The models of a NEF (2.2 fields; 1.3's ``num_models`` is ``len(models)``)."""

    magic = _u("magic", True)
    metadata = _Prop(readonly=True)
    target_chip = _Prop(_check_enum("target_chip", ModelTargetChip), True)
    crc = _u("crc", True)
    models = _Prop(list, True)

    def __init__(self, magic: int = 0, metadata: ModelNefMetadata | None = None,
                 target_chip=ModelTargetChip.KP_MODEL_TARGET_CHIP_UNKNOWN, crc: int = 0,
                 models: Sequence[SingleModelDescriptor] = ()) -> None:
        _init(self, magic=magic, metadata=metadata or ModelNefMetadata(),
              target_chip=target_chip, crc=crc, models=models)

    @property
    def num_models(self) -> int:
        return len(self.models)

    def get_member_variable_dict(self) -> dict:
        return {"magic": _hex(self.magic), "metadata": _render(self.metadata),
                "target_chip": _render(self.target_chip), "crc": _hex(self.crc),
                "num_models": self.num_models, "models": _render(self.models)}


# --- node outputs ------------------------------------------------------------------------------
_SHAPES = {
    ChannelOrdering.KP_CHANNEL_ORDERING_CHW: lambda c, h, w: (1, c, h, w),
    ChannelOrdering.KP_CHANNEL_ORDERING_HCW: lambda c, h, w: (1, h, c, w),
    ChannelOrdering.KP_CHANNEL_ORDERING_HWC: lambda c, h, w: (1, h, w, c),
}


class _NodeOutput(ValueBase):
    width = _u("width", True)
    height = _u("height", True)
    channel = _u("channel", True)
    num_data = _u("num_data", True)
    channels_ordering = _Prop(_check_enum("channels_ordering", ChannelOrdering), True)

    def _set_data(self, data: Any) -> None:
        array = np.asarray(data)
        shape_fn = _SHAPES.get(self.channels_ordering)
        want = shape_fn(self.channel, self.height, self.width) if shape_fn else None
        if want is not None and array.size == int(np.prod(want)):
            array = array.reshape(want)
        self._data = array

    @property
    def ndarray(self) -> np.ndarray:
        """A fresh copy with a leading batch axis (CHW → (1, C, H, W), …)."""
        return self._data.copy()


class InferenceFloatNodeOutput(_NodeOutput):
    _dict_fields = ("width", "height", "channel", "channels_ordering", "num_data", "ndarray")

    def __init__(self, width: int = 0, height: int = 0, channel: int = 0, num_data: int = 0,
                 data: Any = None,
                 channels_ordering=ChannelOrdering.KP_CHANNEL_ORDERING_CHW) -> None:
        _init(self, width=width, height=height, channel=channel, num_data=num_data,
              channels_ordering=channels_ordering)
        self._set_data(np.array([]) if data is None else data)


class InferenceFixedNodeOutput(_NodeOutput):
    """Raw fixed-point values; ``factor = scale · 2^radix`` and float = fixed / factor."""

    _dict_fields = ("width", "height", "channel", "radix", "scale", "factor", "dtype",
                    "channels_ordering", "num_data", "ndarray")
    radix = _Prop(_check_int("radix"), True)
    scale = _Prop(float, True)
    factor = _Prop(float, True)
    dtype = _Prop(_check_enum("dtype", FixedPointDType), True)

    def __init__(self, width: int = 0, height: int = 0, channel: int = 0, radix: int = 0,
                 scale: float = 0, factor: float = 0,
                 dtype=FixedPointDType.KP_FIXED_POINT_DTYPE_UNKNOWN, num_data: int = 0,
                 data: Any = None,
                 channels_ordering=ChannelOrdering.KP_CHANNEL_ORDERING_CHW) -> None:
        _init(self, width=width, height=height, channel=channel, radix=radix, scale=scale,
              factor=factor, dtype=dtype, num_data=num_data,
              channels_ordering=channels_ordering)
        self._set_data(np.array([]) if data is None else data)

    def to_float_node_output(self) -> InferenceFloatNodeOutput:
        """The same node de-quantised (``ndarray / factor``)."""
        if not self.factor:
            raise ZeroDivisionError("factor is 0; this node output has no quantisation")
        return InferenceFloatNodeOutput(
            width=self.width, height=self.height, channel=self.channel, num_data=self.num_data,
            data=self._data / self.factor, channels_ordering=self.channels_ordering)
