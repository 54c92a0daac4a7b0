"""Conversions between the lower layers' objects and ``kp`` value classes (pure)."""

from __future__ import annotations

import struct
from typing import Iterable

from kp_backend.kp.enum import ModelTargetChip, ModelTensorDataLayout, UsbSpeed
from kp_backend.kp.value import (
    DeviceDescriptor,
    FirmwareVersion,
    GenericRawBypassPreProcResultHeader,
    GenericRawResultHeader,
    HwPreProcInfo,
    InferenceCropBox,
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
from kp_backend.nef import NefFile, NefModel, TensorInfo
from kp_backend.npu_types import Chip
from kp_backend.protocol.constants import PID_KL520, RESULT_HEADER_SIZE
from kp_backend.protocol.wire import ResultHeader, SystemInfoReply
from kp_backend.usb.transport import UsbDeviceInfo

__all__ = ["NEF_DESCRIPTOR_MAGIC", "device_descriptor", "system_info", "nef_descriptor",
           "models_descriptor", "fill_result_header", "num_output_nodes"]

#: ``ModelNefDescriptor.magic`` of a populated descriptor.
NEF_DESCRIPTOR_MAGIC = 0x5AA55AA5


def device_descriptor(info: UsbDeviceInfo) -> DeviceDescriptor:
    try:
        speed = UsbSpeed(info.speed)
    except ValueError:
        speed = UsbSpeed.KP_USB_SPEED_UNKNOWN
    return DeviceDescriptor(usb_port_id=info.port_id, vendor_id=info.vendor_id,
                            product_id=info.product_id, link_speed=speed,
                            kn_number=info.kn_number, is_connectable=info.connectable,
                            usb_port_path=info.port_path[:20], firmware=info.firmware[:30])


def system_info(reply: SystemInfoReply) -> SystemInfo:
    return SystemInfo(kn_number=reply.kn_number, firmware_version=FirmwareVersion(
        reserved=reply.reserved, major=reply.major, minor=reply.minor, update=reply.update,
        build=reply.build))


def _tensor(t: TensorInfo) -> TensorDescriptor:
    quant = QuantizationParameters([QuantizedFixedPointDescriptor(scale=float(scale),
                                                                  radix=int(radix))
                                    for radix, scale in t.quantization.entries])
    try:
        layout = ModelTensorDataLayout(int(t.data_layout))
    except ValueError:
        layout = ModelTensorDataLayout(0)
    return TensorDescriptor(index=t.index, name=t.name, shape_npu=list(t.shape_npu),
                            shape_onnx=list(t.shape_onnx or t.shape_npu), data_layout=layout,
                            quantization_parameters=quant)


def _chip(chip: int) -> ModelTargetChip:
    try:
        return ModelTargetChip(int(chip))
    except ValueError:
        return ModelTargetChip(0)


def _model(m: NefModel) -> SingleModelDescriptor:
    return SingleModelDescriptor(
        target_chip=_chip(m.target_chip), version=m.version, id=m.id,
        input_nodes=[_tensor(t) for t in m.inputs], output_nodes=[_tensor(t) for t in m.outputs],
        setup_schema_version=SetupSchemaVersion(*m.setup_schema_version),
        setup_file_schema_version=SetupFileSchemaVersion(*m.setup_file_schema_version),
        max_raw_out_size=m.max_raw_out_size)


def models_descriptor(chip: int, crc: int, models: Iterable[NefModel],
                      metadata: ModelNefMetadata | None = None) -> ModelNefDescriptor:
    return ModelNefDescriptor(magic=NEF_DESCRIPTOR_MAGIC, metadata=metadata,
                              target_chip=_chip(chip), crc=crc,
                              models=[_model(m) for m in models])


def nef_descriptor(nef: NefFile) -> ModelNefDescriptor:
    """Kneron's ``ModelNefDescriptor`` of a parsed NEF."""
    meta = ModelNefMetadata(kn_number=nef.kn_number, toolchain_version=nef.toolchain_version,
                            compiler_version=nef.compiler_version,
                            nef_schema_version=NefSchemaVersion(*nef.schema_version),
                            platform=nef.platform)
    return models_descriptor(int(nef.target_chip), nef.crc, nef.models, meta)


def num_output_nodes(raw: bytes, product_id: int) -> int:
    """The node count after the header: u32 at 344 (KL520) or i32 at 348 (KL720)."""
    offset = RESULT_HEADER_SIZE if product_id == PID_KL520 else RESULT_HEADER_SIZE + 4
    if len(raw) < offset + 4:
        return 0
    return max(struct.unpack_from("<i", raw, offset)[0], 0)


def fill_result_header(header: GenericRawBypassPreProcResultHeader, raw: bytes) -> None:
    """Copy a received result's header fields into a ``kp`` result header (§6.5 step 6)."""
    head = ResultHeader.parse(raw)
    values = dict(inference_number=head.inf_number, crop_number=head.crop_number,
                  num_output_node=num_output_nodes(raw, head.product_id),
                  product_id=head.product_id)
    if isinstance(header, GenericRawResultHeader):
        info = head.pre_proc_info[0] if head.pre_proc_info else None
        if info is not None:
            box = info.crop_area
            values["hw_pre_proc_info"] = HwPreProcInfo(
                img_width=info.img_width, img_height=info.img_height,
                resized_img_width=info.resized_img_width,
                resized_img_height=info.resized_img_height, pad_top=info.pad_top,
                pad_bottom=info.pad_bottom, pad_left=info.pad_left, pad_right=info.pad_right,
                model_input_width=info.model_input_width,
                model_input_height=info.model_input_height,
                crop_area=InferenceCropBox(crop_box_index=box.crop_number, x=box.x1, y=box.y1,
                                           width=box.width, height=box.height))
    cls = type(header)
    for name, value in values.items():
        getattr(cls, name).init(header, value)


def chip_of_product(product_id: int) -> Chip:
    from kp_backend.npu_types import CHIP_BY_PRODUCT_ID

    return CHIP_BY_PRODUCT_ID.get(product_id, Chip.UNKNOWN)
