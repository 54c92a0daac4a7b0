"""Value classes, enums, exceptions and the pure FIFO sizing (no devices)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kp_backend import kp
from kp_backend.device import DdrManageAttributes, KpError, plan_fifo
from kp_backend.protocol.wire import DdrConfigReply, fifoq_configure_setup, heap_boundary_setup

RC = kp.ApiReturnCode


def test_import_surface_matches_kneron():
    for name in ("core", "inference", "v1", "ApiKPException", "DeviceGroup", "ChannelOrdering",
                 "GenericRawImageHeader", "GenericRawBypassPreProcImageHeader",
                 "GenericRawResult", "GenericRawBypassPreProcResult", "ModelNefDescriptor",
                 "InferenceFixedNodeOutput", "InferenceFloatNodeOutput", "InferenceConfiguration",
                 "DeviceDescriptorList", "SystemInfo", "value", "enum", "KPConstant"):
        assert hasattr(kp, name), name
    assert kp.v1.GenericRawImageHeader is kp.GenericRawImageHeader
    assert kp.v1.inference.generic_raw_inference_send is kp.inference.generic_raw_inference_send
    assert not hasattr(kp.v1.inference, "generic_inference_retrieve_float_node")
    seed_core = {"scan_devices", "connect_devices", "disconnect_devices", "set_timeout",
                 "load_firmware", "load_firmware_from_file", "load_model", "load_model_from_file",
                 "reset_device", "get_system_info", "get_model_info", "get_version"}
    assert seed_core <= set(dir(kp.core))
    assert kp.KPConstant.Const.MAX_CROP_BOX.value == 4


def test_header_defaults_and_validation():
    h = kp.GenericRawImageHeader()
    assert (h.resize_mode, h.padding_mode, h.normalize_mode, h.image_format) == (
        kp.ResizeMode.KP_RESIZE_ENABLE, kp.PaddingMode.KP_PADDING_CORNER,
        kp.NormalizeMode.KP_NORMALIZE_KNERON, kp.ImageFormat.KP_IMAGE_FORMAT_RGB565)
    assert h.crop_count == 0
    with pytest.raises(AssertionError, match="model_id"):
        kp.GenericRawImageHeader(model_id=-1)
    with pytest.raises(AssertionError):
        kp.InferenceCropBox(x=-5)
    with pytest.raises(IndexError):
        kp.GenericRawImageHeader(inference_crop_box_list=[kp.InferenceCropBox()] * 5)
    h.inference_crop_box_list = [kp.InferenceCropBox(crop_box_index=1, width=3)] * 2
    assert h.crop_count == 2
    with pytest.raises(AssertionError):
        kp.DeviceDescriptor(usb_port_path="x" * 21)
    with pytest.raises(TypeError):
        kp.GenericRawBypassPreProcImageHeader(image_buffer_size="12")
    with pytest.raises(AttributeError):
        kp.GenericRawResultHeader().inference_number = 3  # read-only, as in Kneron's


def test_repr_is_json_with_enum_and_hex_text():
    h = kp.GenericRawImageHeader(model_id=3, inference_crop_box_list=[kp.InferenceCropBox(0, 1, 2, 3, 4)])
    d = json.loads(repr(h))
    assert d["inference_configuration"]["padding_mode"] == "PaddingMode.KP_PADDING_CORNER"
    assert d["inference_configuration"]["inference_crop_box_list"]["0"]["height"] == 4
    info = kp.SystemInfo(kn_number=0xAB, firmware_version=kp.FirmwareVersion(0, 2, 2, 0, 1226))
    assert info.get_member_variable_dict() == {"kn_number": "0xAB",
                                               "firmware_version": "2.2.0-build.1226"}
    assert str(kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW) == "ChannelOrdering.KP_CHANNEL_ORDERING_CHW"
    assert str(kp.ModelTargetChip(2)) == "ModelTargetChip.KP_MODEL_TARGET_CHIP_KL720"
    assert "ndarray" in json.loads(repr(kp.InferenceFloatNodeOutput(1, 1, 2, 2, np.ones(2))))


def test_node_outputs_shapes_and_factor():
    data = np.arange(24, dtype=np.int8).reshape(1, 2, 3, 4)
    fixed = kp.InferenceFixedNodeOutput(width=4, height=3, channel=2, radix=2, scale=0.5,
                                        factor=2.0, num_data=24, data=data)
    assert fixed.ndarray.shape == (1, 2, 3, 4)
    np.testing.assert_array_equal(fixed.to_float_node_output().ndarray, data / 2.0)
    fixed.ndarray[0, 0, 0, 0] = 100  # a fresh copy each time
    assert fixed.ndarray[0, 0, 0, 0] == 0


def test_exception_text_and_unknown_codes():
    e = kp.ApiKPException(RC.KP_ERROR_USB_TIMEOUT_N7, "generic_raw_inference_receive")
    assert str(e) == ("Error raised in function: generic_raw_inference_receive. Error code: -7. "
                      "Description: ApiReturnCode.KP_ERROR_USB_TIMEOUT_N7")
    odd = kp.ApiKPException(123456, "f")
    assert odd.api_return_code == RC.KP_ERROR_OTHER_99 and odd.raw_code == 123456
    assert isinstance(e, kp.ApiException)


def test_model_descriptor_union_of_13_and_22():
    node = kp.TensorDescriptor(index=0, shape_npu=[1, 3, 56, 64])
    m = kp.SingleModelDescriptor(id=5, input_nodes=[node], max_raw_out_size=588)
    assert (m.width, m.height, m.channel) == (64, 56, 3)
    assert m.img_format == kp.ImageFormat.KP_IMAGE_FORMAT_RGBA8888
    d = kp.ModelNefDescriptor(crc=7, models=[m])
    assert d.num_models == 1 and json.loads(repr(d))["crc"] == "0x7"


# --- FIFO sizing (PROTOCOL.md §4.5) -------------------------------------------------------------
KL520_DDR = dict(ddr_available_begin=0x60000000, ddr_available_end=0x63FC0000,
                 ddr_fifoq_allocated=0)


@pytest.mark.parametrize("model_end, max_out, boundary, setup", [
    # values recorded from Kneron's library (golden transcripts)
    (0x6015E2A0, 16444, (0x6015, 0xE2A0), (0x3272, 0x000A)),
    (0x6047F930, 16372, (0x6047, 0xF930), (0x2F1A, 0x000A)),
])
def test_fifo_plan_matches_kneron(model_end, max_out, boundary, setup):
    plan = plan_fifo(DdrConfigReply(ddr_model_end=model_end, **KL520_DDR), 0x100, max_out)
    assert heap_boundary_setup(plan.boundary) == boundary
    assert fifoq_configure_setup(plan.input_buffer_count, plan.input_buffer_size,
                                 plan.result_buffer_count, plan.result_buffer_size) == setup


def test_fifo_plan_limits():
    ddr = DdrConfigReply(ddr_model_end=0x60100000, **KL520_DDR)
    big = plan_fifo(ddr, 0x100, 16444)
    assert big.input_buffer_size <= 16_599_040 and big.input_buffer_count == 3
    with pytest.raises(KpError) as info:
        plan_fifo(ddr, 0x530, 16444)
    assert info.value.kp_code == 44
    tight = DdrConfigReply(ddr_model_end=0x63FC0000 - 16 * 1024 * 1024, **KL520_DDR)
    with pytest.raises(KpError) as info:
        plan_fifo(tight, 0x100, 16444)
    assert info.value.kp_code == 43
    fixed = plan_fifo(ddr, 0x100, 16444, fixed=DdrManageAttributes(input_buffer_count=2,
                                                                   input_buffer_size=5_000_000))
    assert (fixed.input_buffer_count, fixed.input_buffer_size) == (2, 5_007_360)
    shrunk = plan_fifo(DdrConfigReply(ddr_model_end=0x63FC0000 - 26 * 1024 * 1024, **KL520_DDR),
                       0x100, 16444)
    assert shrunk.input_buffer_count == 2 and shrunk.input_buffer_size > 4_157_440
