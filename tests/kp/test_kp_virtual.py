"""End to end: ``kp_backend.kp`` through pyusb and the virtual dongle (no mocks).

Every seed function, send/receive loops, a sender and a receiver thread pipelining 100
inferences matched to their inputs, frame drop on and off, the real NEFs on the right chip,
and the error paths with their Kneron codes.
"""

from __future__ import annotations

import threading
import zlib

import numpy as np
import pytest

from _shared import require_shared
from kp_backend import kp
from kp_backend.nef import read_nef

RC = kp.ApiReturnCode
CHW = kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW
NEFS = {
    "KL520/ssd_fd_lm_plus.nef": "KL520",
    "KL520/ssd_fd_lm_hostlib.nef": "KL520",
    "KL520/mobilenet_hostlib.nef": "KL520",
    "KL720/fdfr_hostlib.nef": "KL720",
}
SSD = "KL520/ssd_fd_lm_plus.nef"


def nef(name: str) -> str:
    return str(require_shared("models", "nef", name))


def expect_code(code, fn, *args, **kwargs) -> kp.ApiKPException:
    with pytest.raises(kp.ApiKPException) as info:
        fn(*args, **kwargs)
    assert info.value.api_return_code == code, (info.value, info.value.detail)
    return info.value


def npu_input_size(model_file: str, model_id: int) -> int:
    return read_nef(nef(model_file)).model(model_id).input_mem_len


def connected(backend, timeout=5000, model: str | None = SSD):
    g = kp.core.connect_devices([0], backend=backend)
    kp.core.set_timeout(g, timeout)
    desc = kp.core.load_model_from_file(g, nef(model)) if model else None
    return g, desc


def bypass(g, model_id, number, data):
    h = kp.GenericRawBypassPreProcImageHeader(model_id=model_id, inference_number=number,
                                              image_buffer_size=len(data))
    kp.inference.generic_raw_inference_bypass_pre_proc_send(g, h, data)
    return h


def pattern_value(payload: bytes, number: int, node: int, c, h, w) -> np.ndarray:
    """The golden transcripts' int8 test pattern (their README), as the emulator computes it."""
    seed = (zlib.crc32(payload) + 17 * number) % 2**32
    return ((7 * seed + 31 * node + 11 * c + 5 * h + 3 * w) % 256 - 128).astype(np.int8)


# --- core ------------------------------------------------------------------------------------------
def test_scan_lists_every_dongle_as_a_snapshot(virtual):
    b = virtual("KL520", {"chip": "KL720"})
    first = kp.core.scan_devices(backend=b)
    assert first.device_descriptor_number == 2
    d520, d720 = first.device_descriptor_list
    assert (d520.product_id, d720.product_id) == (0x100, 0x720)
    assert d520.usb_port_id != d720.usb_port_id
    assert d520.link_speed == kp.UsbSpeed.KP_USB_SPEED_HIGH
    assert d720.link_speed == kp.UsbSpeed.KP_USB_SPEED_SUPER
    assert d520.firmware == d720.firmware == "KDP2 Comp/F"
    assert d520.is_connectable and d520.kn_number != 0
    assert '"vendor_id": "0x3231"' in str(first)
    second = kp.core.scan_devices(backend=b)
    assert second.device_descriptor_number == first.device_descriptor_number == 2


def test_connect_info_timeout_version_disconnect(virtual):
    b = virtual("KL520")
    port = kp.core.scan_devices(backend=b).device_descriptor_list[0].usb_port_id
    g = kp.core.connect_devices([port], backend=b)
    assert g.content.timeout == 0 and g.content.num_device == 1
    kp.core.set_timeout(g, 1234)
    assert g.content.timeout == 1234 and g.content.product_id == 0x100
    info = kp.core.get_system_info(g, port)
    assert info.firmware_version.major == 2 and info.firmware_version.build == 1226
    assert kp.core.get_version() == "2.2.0"
    expect_code(RC.KP_FW_GET_MODEL_INFO_FAILED_109, kp.core.get_model_info, g, port)
    kp.core.disconnect_devices(g)
    kp.core.disconnect_devices(g)
    expect_code(RC.KP_ERROR_DEVICE_NOT_EXIST_10, kp.core.get_system_info, g, port)
    g2 = kp.core.connect_devices_without_check([port], backend=b)  # the device is free again
    kp.core.disconnect_devices(g2)


def test_load_model_and_model_info(virtual):
    g, desc = connected(virtual("KL520"))
    assert desc.magic == 0x5AA55AA5 and desc.target_chip == kp.ModelTargetChip.KP_MODEL_TARGET_CHIP_KL520
    assert [m.id for m in desc.models] == [32, 5] and desc.num_models == 2
    m32 = desc.models[0]
    assert (m32.width, m32.height, m32.channel) == (200, 200, 3)
    assert m32.max_raw_out_size == 16444
    assert m32.input_nodes[0].data_layout == kp.ModelTensorDataLayout.KP_MODEL_TENSOR_DATA_LAYOUT_4W4C8B
    port = kp.core.scan_devices(backend=g.group.backend).device_descriptor_list[0].usb_port_id
    info = kp.core.get_model_info(g, port)
    assert info.crc == desc.crc and [m.id for m in info.models] == [32, 5]
    assert [len(m.output_nodes) for m in info.models] == [8, 2]
    assert g.content.loaded_model_nef_descriptor is desc
    attrs = g.content.ddr_manage_attributes
    assert (attrs.input_buffer_count, attrs.result_buffer_count) == (3, 3)
    assert attrs.result_buffer_size == 20480
    kp.core.disconnect_devices(g)


@pytest.mark.parametrize("name", sorted(NEFS))
def test_real_nef_inference_on_its_chip(virtual, name):
    chip = NEFS[name]
    other = "KL720" if chip == "KL520" else "KL520"
    g, desc = connected(virtual(chip), model=name)
    parsed = read_nef(nef(name))
    number = 0
    for model, expected in zip(desc.models, parsed.models):
        assert model.id == expected.id and model.max_raw_out_size == expected.max_raw_out_size
        data = bytes(range(256)) * (expected.input_mem_len // 256) + bytes(expected.input_mem_len % 256)
        h = bypass(g, model.id, number, data)
        r = kp.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, desc)
        assert r.header.inference_number == number
        assert r.header.num_output_node == len(expected.outputs)
        for i, node in enumerate(expected.outputs):
            out = kp.inference.generic_inference_retrieve_float_node(i, r, CHW)
            _, c, hh, w = node.shape_npu
            assert out.ndarray.shape == (1, c, hh, w) and out.ndarray.dtype == np.float32
        number += 1
    # an image request with device pre-processing on the first 3-channel model
    model = next(m for m in desc.models if m.channel == 3)
    image = np.full((model.height, model.width, 4), 128, np.uint8)
    header = kp.GenericRawImageHeader(model_id=model.id, inference_number=99)
    kp.inference.generic_raw_inference_send(g, header, image,
                                            kp.ImageFormat.KP_IMAGE_FORMAT_RGBA8888)
    assert (header.width, header.height) == (model.width, model.height)
    r = kp.inference.generic_raw_inference_receive(g, header, desc)
    assert r.header.inference_number == 99
    assert r.header.hw_pre_proc_info.model_input_width == model.width
    kp.core.disconnect_devices(g)
    # the same NEF on the other chip is refused
    g2, _ = connected(virtual(other), model=None)
    expect_code(RC.KP_ERROR_INVALID_MODEL_21, kp.core.load_model_from_file, g2, nef(name))
    kp.core.disconnect_devices(g2)


def test_load_firmware_on_a_usb_boot_kl520(virtual, tmp_path):
    b = virtual({"chip": "KL520", "boot": "usb"})
    assert kp.core.scan_devices(backend=b).device_descriptor_list[0].firmware == "KDP2 Loader"
    g = kp.core.connect_devices([0], backend=b)
    kp.core.set_timeout(g, 5000)
    expect_code(RC.KP_ERROR_INVALID_FIRMWARE_24, kp.core.load_model_from_file, g, nef(SSD))
    scpu, ncpu = tmp_path / "fw_scpu.bin", tmp_path / "fw_ncpu.bin"
    scpu.write_bytes(bytes(52568))
    ncpu.write_bytes(bytes(39908))
    expect_code(RC.KP_ERROR_FILE_OPEN_FAILED_20, kp.core.load_firmware_from_file, g,
                str(tmp_path / "missing.bin"), str(ncpu))
    kp.core.load_firmware_from_file(g, str(scpu), str(ncpu))
    assert kp.core.scan_devices(backend=b).device_descriptor_list[0].firmware == "KDP2 Comp/U"
    desc = kp.core.load_model_from_file(g, nef(SSD))
    h = bypass(g, 5, 1, bytes(npu_input_size(SSD, 5)))
    assert kp.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, desc).header.inference_number == 1
    expect_code(RC.KP_ERROR_USB_BOOT_LOAD_SECOND_MODEL_40, kp.core.load_model_from_file, g, nef(SSD))
    kp.core.load_firmware(g, scpu.read_bytes(), ncpu.read_bytes())  # reboots to the loader first
    desc = kp.core.load_model_from_file(g, nef(SSD))
    kp.core.disconnect_devices(g)


def test_flash_boot_second_load_reboots_and_reconnects(virtual):
    g, desc = connected(virtual("KL520"))
    desc2 = kp.core.load_model_from_file(g, nef("KL520/mobilenet_hostlib.nef"))
    assert [m.id for m in desc2.models] == [18]
    size = npu_input_size("KL520/mobilenet_hostlib.nef", 18)
    h = bypass(g, 18, 3, bytes(size))
    assert kp.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, desc2).header.num_output_node == 1
    kp.core.load_firmware(g, b"x", b"y")  # flash boot: skipped, not an error
    kp.core.disconnect_devices(g)


def test_reset_modes(virtual):
    b = virtual("KL520")
    g, desc = connected(b)
    h = bypass(g, 5, 7, bytes(npu_input_size(SSD, 5)))
    kp.core.reset_device(g, kp.ResetMode.KP_RESET_INFERENCE)
    kp.core.set_timeout(g, 300)
    expect_code(RC.KP_ERROR_USB_TIMEOUT_N7,
                kp.inference.generic_raw_inference_bypass_pre_proc_receive, g, h, desc)
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, kp.core.reset_device, g, 7)
    kp.core.reset_device(g, kp.ResetMode.KP_RESET_REBOOT, sleep_secs=0.05)
    kp.core.disconnect_devices(g)
    g, _ = connected(b, model=None)  # the rebooted dongle is back
    kp.core.disconnect_devices(g)
    g720, _ = connected(virtual("KL720"), model=None)
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, kp.core.reset_device, g720,
                kp.ResetMode.KP_RESET_SHUTDOWN)
    kp.core.disconnect_devices(g720)


# --- inference -------------------------------------------------------------------------------------
def test_send_receive_loop_rgb565_and_rgba(virtual):
    g, desc = connected(virtual("KL520"))
    rng = np.random.default_rng(1)
    header = kp.GenericRawImageHeader(model_id=32)
    for i in range(12):
        fmt, depth = ((kp.ImageFormat.KP_IMAGE_FORMAT_RGB565, 2) if i % 2
                      else (kp.ImageFormat.KP_IMAGE_FORMAT_RGBA8888, 4))
        image = rng.integers(0, 255, (240, 320, depth), dtype=np.uint8)
        header.inference_number = i
        kp.inference.generic_raw_inference_send(g, header, image, fmt)
        assert header.image_format == fmt and (header.width, header.height) == (320, 240)
        r = kp.inference.generic_raw_inference_receive(g, header, desc)
        assert r.header.inference_number == i and r.header.num_output_node == 8
        pre = r.header.hw_pre_proc_info
        assert (pre.img_width, pre.img_height) == (320, 240)
        fixed = kp.inference.generic_inference_retrieve_fixed_node(3, r, CHW)
        flt = fixed.to_float_node_output()
        np.testing.assert_allclose(
            kp.inference.generic_inference_retrieve_float_node(3, r, CHW).ndarray, flt.ndarray,
            rtol=1e-6)
        assert fixed.dtype == kp.FixedPointDType.KP_FIXED_POINT_DTYPE_INT8
        hcw = kp.inference.generic_inference_retrieve_fixed_node(
            3, r, kp.ChannelOrdering.KP_CHANNEL_ORDERING_HCW)
        np.testing.assert_array_equal(hcw.ndarray[0], fixed.ndarray[0].transpose(1, 0, 2))
    kp.core.disconnect_devices(g)


def test_crop_boxes_give_one_result_each(virtual):
    g, desc = connected(virtual("KL520"))
    boxes = [kp.InferenceCropBox(crop_box_index=i, x=10 * i, y=0, width=200, height=200)
             for i in range(3)]
    header = kp.GenericRawImageHeader(model_id=32, inference_number=4, inference_crop_box_list=boxes)
    kp.inference.generic_raw_inference_send(g, header, np.zeros((240, 320, 2), np.uint8),
                                            kp.ImageFormat.KP_IMAGE_FORMAT_RGB565)
    crops = [kp.inference.generic_raw_inference_receive(g, header, desc).header.crop_number
             for _ in boxes]
    assert crops == [0, 1, 2]
    kp.core.disconnect_devices(g)


def test_pipelined_threads_match_results_to_inputs(virtual):
    g, desc = connected(virtual({"chip": "KL520", "compute": "transcript_pattern"}), timeout=10000)
    size = npu_input_size(SSD, 5)
    rng = np.random.default_rng(7)
    payloads = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for _ in range(100)]
    results: list = []
    errors: list = []

    def sender():
        try:
            for i, data in enumerate(payloads):
                bypass(g, 5, i, data)
        except BaseException as exc:
            errors.append(exc)

    def receiver():
        try:
            h = kp.GenericRawBypassPreProcImageHeader(model_id=5)
            for _ in payloads:
                results.append(kp.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, desc))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=receiver), threading.Thread(target=sender)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert [r.header.inference_number for r in results] == list(range(100))
    for r in results:
        n = r.header.inference_number
        for node in range(r.header.num_output_node):
            out = kp.inference.generic_inference_retrieve_fixed_node(node, r, CHW).ndarray[0]
            c, h, w = np.indices(out.shape)
            np.testing.assert_array_equal(out, pattern_value(payloads[n], n, node, c, h, w))
    kp.core.disconnect_devices(g)


def test_frame_drop_off_blocks_and_on_drops_oldest(virtual):
    g, desc = connected(virtual("KL520"), timeout=500)
    data = bytes(npu_input_size(SSD, 5))
    recv = kp.inference.generic_raw_inference_bypass_pre_proc_receive
    kp.inference.set_inference_configuration(g, kp.InferenceConfiguration(enable_frame_drop=False))
    headers = [bypass(g, 5, i, data) for i in range(6)]
    expect_code(RC.KP_ERROR_USB_TIMEOUT_N7, bypass, g, 5, 6, data)
    assert [recv(g, headers[0], desc).header.inference_number for _ in range(6)] == list(range(6))
    expect_code(RC.KP_ERROR_USB_TIMEOUT_N7, recv, g, headers[0], desc)
    kp.inference.set_inference_configuration(g, kp.InferenceConfiguration(enable_frame_drop=True))
    for i in range(10, 20):
        bypass(g, 5, i, data)  # never blocks
    got = []
    while True:
        try:
            got.append(recv(g, headers[0], desc).header.inference_number)
        except kp.ApiKPException as exc:
            assert exc.api_return_code == RC.KP_ERROR_USB_TIMEOUT_N7
            break
    assert got == sorted(got) and got[-1] == 19 and len(got) < 10
    kp.core.disconnect_devices(g)


# --- errors -------------------------------------------------------------------------------------
def test_connect_errors(virtual):
    b = virtual("KL520")
    expect_code(RC.KP_ERROR_DEVICES_NUMBER_26, kp.core.connect_devices, [], backend=b)
    expect_code(RC.KP_ERROR_DEVICES_NUMBER_26, kp.core.connect_devices, list(range(1, 22)), backend=b)
    err = expect_code(RC.KP_ERROR_CONNECT_FAILED_28, kp.core.connect_devices, [12345], backend=b)
    assert "12345" in err.detail
    assert str(err) == ("Error raised in function: connect_devices. Error code: 28. "
                        "Description: ApiReturnCode.KP_ERROR_CONNECT_FAILED_28")
    expect_code(RC.KP_ERROR_DEVICE_NOT_EXIST_10, kp.core.connect_devices, [0], backend=virtual())
    mixed = virtual("KL520", "KL720")
    ports = [d.usb_port_id for d in kp.core.scan_devices(backend=mixed).device_descriptor_list]
    expect_code(RC.KP_ERROR_DEVICE_GROUP_MIX_PRODUCT_29, kp.core.connect_devices, ports,
                backend=mixed)
    g = kp.core.connect_devices([ports[0]], backend=mixed)  # a failed connect left nothing held
    kp.core.disconnect_devices(g)


def test_two_dongle_group_round_robin(virtual):
    b = virtual("KL520", "KL520")
    ports = [d.usb_port_id for d in kp.core.scan_devices(backend=b).device_descriptor_list]
    g = kp.core.connect_devices(ports, backend=b)
    kp.core.set_timeout(g, 5000)
    desc = kp.core.load_model_from_file(g, nef(SSD))
    data = bytes(npu_input_size(SSD, 5))
    headers = [bypass(g, 5, i, data) for i in range(4)]
    got = [kp.inference.generic_raw_inference_bypass_pre_proc_receive(g, headers[0], desc)
           .header.inference_number for _ in range(4)]
    assert got == [0, 1, 2, 3]  # devices alternate for sends and receives
    kp.core.disconnect_devices(g)


def test_inference_errors(virtual):
    g, _ = connected(virtual("KL520"), model=None)
    rgb = kp.ImageFormat.KP_IMAGE_FORMAT_RGB565
    image = np.zeros((200, 200, 2), np.uint8)
    send = kp.inference.generic_raw_inference_send
    recv = kp.inference.generic_raw_inference_receive
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, send, g, kp.GenericRawImageHeader(model_id=32), image, rgb)
    desc = kp.core.load_model_from_file(g, nef(SSD))
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, send, g, kp.GenericRawImageHeader(model_id=77), image, rgb)
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, send, g, kp.GenericRawImageHeader(model_id=32), image,
                kp.ImageFormat.KP_IMAGE_FORMAT_UNKNOWN)
    short = kp.GenericRawImageHeader(model_id=32, width=200, height=200)
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, send, g, short, bytes(10), rgb)
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, recv, g, kp.GenericRawImageHeader(model_id=77), desc)
    big = kp.GenericRawBypassPreProcImageHeader(model_id=32, image_buffer_size=64 << 20)
    expect_code(RC.KP_ERROR_SEND_DATA_TOO_LARGE_15,
                kp.inference.generic_raw_inference_bypass_pre_proc_send, g, big, b"")
    cases = [  # (width, height, format, resize, padding, crop boxes) -> device status
        (100, 100, kp.ImageFormat.KP_IMAGE_FORMAT_RGBA8888, 2, 2, [], 22),
        (201, 200, rgb, 2, 2, [], 23),
        (256, 200, kp.ImageFormat.KP_IMAGE_FORMAT_RGBA8888, 1, 1, [], 107),
        (200, 200, kp.ImageFormat.KP_IMAGE_FORMAT_RGBA8888, 1, 2, [], 108),
        (200, 200, kp.ImageFormat.KP_IMAGE_FORMAT_RGBA8888, 2, 2,
         [kp.InferenceCropBox(0, 150, 150, 100, 100)], 112),
    ]
    for number, (w, h, fmt, resize, pad, boxes, status) in enumerate(cases):
        header = kp.GenericRawImageHeader(model_id=32, inference_number=number,
                                          resize_mode=kp.ResizeMode(resize),
                                          padding_mode=kp.PaddingMode(pad),
                                          inference_crop_box_list=boxes)
        depth = 4 if fmt == kp.ImageFormat.KP_IMAGE_FORMAT_RGBA8888 else 2
        send(g, header, np.zeros((h, w, depth), np.uint8), fmt)
        err = expect_code(status, recv, g, header, desc)
        assert err.function_name == "generic_raw_inference_receive"
    header = kp.GenericRawImageHeader(model_id=32)
    send(g, header, image, rgb)
    r = recv(g, header, desc)
    for bad in (8, -1):
        expect_code(RC.KP_ERROR_INVALID_PARAM_12, kp.inference.generic_inference_retrieve_float_node,
                    bad, r, CHW)
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, kp.inference.generic_inference_retrieve_fixed_node,
                0, r, 9)
    kp.core.set_timeout(g, 200)
    expect_code(RC.KP_ERROR_USB_TIMEOUT_N7, recv, g, header, desc)
    kp.core.disconnect_devices(g)


@pytest.mark.parametrize("fault, code", [
    ({"kind": "corrupt_result", "field": "magic", "value": 0}, 30),
    ({"kind": "corrupt_result", "field": "job_id", "value": 10}, 32),
    ({"kind": "npu_timeout"}, 103),
])
def test_result_validation_codes(virtual, fault, code):
    g, desc = connected(virtual({"chip": "KL520", "faults": [fault]}))
    h = bypass(g, 5, 1, bytes(npu_input_size(SSD, 5)))
    expect_code(code, kp.inference.generic_raw_inference_bypass_pre_proc_receive, g, h, desc)
    kp.core.disconnect_devices(g)


@pytest.mark.parametrize("fault, code", [
    ({"kind": "refuse_fifo"}, RC.KP_ERROR_FIFOQ_SETTING_FAILED_43),
    # control #0 is the FIFO reset at connect, #1 the heap boundary of the load
    ({"kind": "stall", "transfer": "control", "request": 0x84, "index": 1},
     RC.KP_ERROR_ADJUST_DDR_HEAP_FAILED_46),
])
def test_fifo_setup_failures(virtual, fault, code):
    g, _ = connected(virtual({"chip": "KL520", "faults": [fault]}), model=None)
    expect_code(code, kp.core.load_model_from_file, g, nef(SSD))
    kp.core.disconnect_devices(g)


def test_reboot_control_failure_gives_25(virtual):
    fault = {"kind": "timeout", "transfer": "control", "request": 0xFF, "index": 1}
    g, _ = connected(virtual({"chip": "KL520", "faults": [fault]}), model=None)
    expect_code(RC.KP_ERROR_RESET_FAILED_25, kp.core.reset_device, g, kp.ResetMode.KP_RESET_REBOOT)
    kp.core.disconnect_devices(g)


def test_garbage_and_missing_nef(virtual, tmp_path):
    g, _ = connected(virtual("KL520"), model=None)
    expect_code(RC.KP_ERROR_INVALID_MODEL_21, kp.core.load_model, g, b"\0" * 4096)
    expect_code(RC.KP_ERROR_FILE_OPEN_FAILED_20, kp.core.load_model_from_file, g,
                str(tmp_path / "nope.nef"))
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, kp.core.load_model, g, "not bytes")
    kp.core.disconnect_devices(g)


def test_env_var_selects_virtual_devices(monkeypatch, short_pauses):
    from kp_backend.emulator import close_shared_virtual_backends

    monkeypatch.setenv("KP_VIRTUAL_DEVICES", "KL720:fast")
    try:
        devices = kp.core.scan_devices()
        assert [d.product_id for d in devices.device_descriptor_list] == [0x720]
        g = kp.core.connect_devices([0])
        assert g.content.product_id == 0x720
        kp.core.disconnect_devices(g)
        assert kp.core.scan_devices(backend="KL720:fast").device_descriptor_number == 1
    finally:
        close_shared_virtual_backends()


def test_packet_multiple_result_takes_the_zlp(virtual):
    from kp_backend.nef import build_simple_nef

    data = build_simple_nef("KL520", [{
        "id": 7,
        "inputs": [{"shape": [1, 3, 16, 16], "layout": "4W4C8B", "radix": 8, "scale": 1.0}],
        "outputs": [{"shape": [1, 1, 1, 10], "layout": "16W1C8B", "radix": 7, "scale": 1.0}],
        "output_mem_len": 1024 - 344 - 4 - 24,
    }])
    g, _ = connected(virtual("KL520"), model=None)
    desc = kp.core.load_model(g, data)
    assert desc.models[0].max_raw_out_size == 1024  # a multiple of the 512-byte packet
    size = read_nef(data).model(7).input_mem_len
    for number in range(3):
        h = bypass(g, 7, number, bytes(size))
        r = kp.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, desc)
        assert r.header.inference_number == number and len(r.raw_result.buffer) == 1024
    kp.core.disconnect_devices(g)


def test_unplugged_dongle_surfaces_as_disconnected(virtual):
    from kp_runtime.errors import DeviceDisconnected

    g, desc = connected(virtual({"chip": "KL520",
                                 "faults": [{"kind": "disconnect", "after_messages": 8}]}))
    data = bytes(npu_input_size(SSD, 5))
    with pytest.raises(kp.ApiKPException) as info:
        for number in range(10):
            h = bypass(g, 5, number, data)
            kp.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, desc)
    assert info.value.api_return_code in (RC.KP_ERROR_USB_NO_DEVICE_N4,
                                          RC.KP_ERROR_SEND_DESC_FAIL_13,
                                          RC.KP_ERROR_SEND_DATA_FAIL_14), info.value.detail
    assert isinstance(info.value.__cause__, DeviceDisconnected)
    kp.core.disconnect_devices(g)


def test_device_layer_api_for_the_provider(virtual):
    import struct

    from kp_backend.device import DeviceGroup, KpDeviceStatus, KpError
    from kp_backend.protocol.constants import ImageFormat, JobId

    group = DeviceGroup.connect([0], virtual("KL520"))
    group.set_timeout(5000)
    parsed = group.load_model(open(nef(SSD), "rb").read())
    assert [m.id for m in parsed.models] == [32, 5] and group.result_size(5) == 588
    size = parsed.model(5).input_mem_len
    group.send_bypass(5, 41, bytes(size), device_index=0)
    raw = group.receive(JobId.GENERIC_RAW_BYPASS_PRE_PROC, group.result_size(5))
    assert len(raw) == 588 and struct.unpack_from("<I", raw, 332)[0] == 41
    group.send_image(32, 42, bytes(100 * 100 * 4), 100, 100, ImageFormat.KP_IMAGE_FORMAT_RGBA8888)
    with pytest.raises(KpDeviceStatus) as info:
        group.receive(JobId.GENERIC_RAW_IMAGE, group.result_size(32))
    assert info.value.kp_code == 22 and struct.unpack_from("<I", info.value.raw, 332)[0] == 42
    with pytest.raises(KpError) as info:
        group.send_bypass(77, 1, b"x")
    assert info.value.kp_code == 12 and "77" in str(info.value)
    group.close()
    with pytest.raises(KpError) as info:
        group.send_bypass(5, 1, b"x")
    assert info.value.kp_code == 10
