"""Inference on the virtual dongle (PROTOCOL.md §5–§7): results per chip, every status code in
the firmware's order, crops, the I + R blocking rule, frame dropping and FIFO reset."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import usb.core

import _emu_host as host
from _emu_host import KL520_MODEL, KL720_MODEL
from kp_backend.layouts import parse_result_nodes
from kp_backend.nef import read_nef
from kp_backend.protocol.constants import EP_BULK_IN, CommandId, ImageFormat, PaddingMode, ResizeMode
from kp_backend.protocol.wire import (
    BypassRequestHeader,
    CropBox,
    InferenceStamp,
    LoadModelRequest,
    ResultHeader,
    build_command,
)

F = ImageFormat
KL520_RESULT = 508  # 344 + 4 + 2·24 + output_mem_len 112
KL520_INPUT = 512   # 8 rows · 1 channel block · 16 columns · 4


def ready(emu, nef, chip="KL520", inputs=3, results=3, **kw):
    backend, dongle = emu(chip, **kw)
    dev = host.open_dev(backend)
    assert host.load_model(dev, nef) == 0
    assert host.configure_fifo(dev, inputs=inputs, results=results) == (0, 0)
    return dev, dongle


def result(dev, size=KL520_RESULT, timeout=2000) -> tuple[ResultHeader, bytes]:
    raw = bytes(dev.read(EP_BULK_IN, size, timeout))
    return ResultHeader.parse(raw), raw


def rgba(w, h, value=200):
    return bytes([value, value, value, 0]) * (w * h)


def test_kl520_bypass_result_layout(emu, kl520_nef):
    dev, _ = ready(emu, kl520_nef)
    host.send_bypass(dev, 41, KL520_MODEL, bytes(KL520_INPUT))
    head, raw = result(dev)
    assert (head.total_size, head.job_id, head.status_code, head.product_id, head.inf_number,
            head.crop_number, head.is_last_crop, head.pre_proc_info) == (
        KL520_RESULT, 17, 0, 0x100, 41, 0, 1, ())
    nodes = parse_result_nodes(raw)
    assert [(n.channel, n.height, n.width, n.radix, n.scale, n.code) for n in nodes] == [
        (2, 3, 5, 5, 1.0, 8), (1, 1, 10, 4, 0.5, 8)]


def test_kl720_image_result_layout(emu, kl720_nef):
    dev, _ = ready(emu, kl720_nef, chip="KL720")
    out_len = read_nef(kl720_nef).model(KL720_MODEL).output_mem_len
    size = 344 + 2248 + out_len
    host.send_image(dev, host.image_header(3, KL720_MODEL, 8, 8, 256), rgba(8, 8))
    head, raw = result(dev, size)
    assert (head.total_size, head.status_code, head.product_id, len(head.pre_proc_info)) == (
        size, 0, 0x720, 1)
    info = head.pre_proc_info[0]
    assert (info.img_width, info.resized_img_width, info.model_input_height) == (8, 8, 8)
    total_raw, n = struct.unpack_from("<Ii", raw, 344)
    entry = struct.unpack_from("<12Iif", raw, 352)
    assert (total_raw, n) == (out_len, 1)
    assert entry[:11] == (0, 4 * 2 * 16, 0, 1, 5, 0, 0, 0, 2, 3, 4) and entry[12] == 6


def _status(dev, size=KL520_RESULT) -> int:
    raw = bytes(dev.read(EP_BULK_IN, size, 2000))
    return struct.unpack_from("<I", raw, 12)[0]


@pytest.mark.parametrize("case, expected", [
    (dict(model=99), 35),
    (dict(w=4, h=4), 22),
    (dict(w=9, h=8, fmt=F.KP_IMAGE_FORMAT_RGB565), 23),
    (dict(w=16, h=16, crops=(CropBox(0, 10, 0, 8, 8),)), 112),
    (dict(w=16, h=16, resize=ResizeMode.KP_RESIZE_DISABLE, padding=PaddingMode.KP_PADDING_DISABLE), 107),
    (dict(w=8, h=8, resize=ResizeMode.KP_RESIZE_DISABLE), 108),
    (dict(w=8, h=8, fmt=F.KP_IMAGE_FORMAT_YUV420), 201),
    (dict(w=8, h=8, fmt=0x55), 201),
])
def test_kl520_image_status_codes(emu, kl520_nef, case, expected):
    dev, _ = ready(emu, kl520_nef)
    w, h = case.get("w", 8), case.get("h", 8)
    fmt = case.get("fmt", F.KP_IMAGE_FORMAT_RGBA8888)
    nbytes = {F.KP_IMAGE_FORMAT_RGB565: 2 * w * h, F.KP_IMAGE_FORMAT_YUV420: w * h * 3 // 2,
              0x55: 4 * w * h}.get(fmt, 4 * w * h)
    hdr = host.image_header(1, case.get("model", KL520_MODEL), w, h, nbytes, fmt=fmt,
                            resize=case.get("resize", ResizeMode.KP_RESIZE_ENABLE),
                            padding=case.get("padding", PaddingMode.KP_PADDING_CORNER),
                            crops=case.get("crops", ()))
    host.send_image(dev, hdr, bytes(nbytes))
    raw = bytes(dev.read(EP_BULK_IN, KL520_RESULT, 2000))
    head = ResultHeader.parse(raw)
    assert (head.status_code, head.total_size, len(raw), head.is_last_crop) == (expected, 344, 344, 1)


def test_status_order_width_check_before_size_check(emu, kl520_nef):
    """A 4x4 RGB565 image of odd width fails 22 first (check 4 before check 5)."""
    dev, _ = ready(emu, kl520_nef)
    host.send_image(dev, host.image_header(1, KL520_MODEL, 5, 4, 40, fmt=F.KP_IMAGE_FORMAT_RGB565), bytes(40))
    assert _status(dev) == 22


def test_kl520_two_images_give_110(emu, kl520_nef):
    dev, _ = ready(emu, kl520_nef)
    for index in (0, 1):
        host.send_bypass(dev, 5, KL520_MODEL, bytes(KL520_INPUT), total_image=2, image_index=index)
    assert _status(dev) == 110


@pytest.mark.parametrize("model, w, fmt, expected", [
    (KL720_MODEL, 9, F.KP_IMAGE_FORMAT_RGBA8888, 23),
    (11, 8, F.KP_IMAGE_FORMAT_RGBA8888, 111),
    (KL720_MODEL, 8, F.KP_IMAGE_FORMAT_YUV420, 101),
])
def test_kl720_status_codes(emu, kl720_nef, model, w, fmt, expected):
    dev, _ = ready(emu, kl720_nef, chip="KL720")
    nbytes = w * 8 * (4 if fmt == F.KP_IMAGE_FORMAT_RGBA8888 else 1) * (1 if fmt != F.KP_IMAGE_FORMAT_YUV420 else 1.5)
    nbytes = int(nbytes)
    host.send_image(dev, host.image_header(1, model, w, 8, nbytes, fmt=fmt), bytes(nbytes))
    assert _status(dev, 4096) == expected


def test_kl720_unreadable_model_gives_21(emu, kl720_nef):
    backend, _ = emu("KL720")
    dev = host.open_dev(backend)
    nef = read_nef(kl720_nef)
    models = bytearray(nef.all_models)
    recs = nef.fw_info_table.records
    start = recs[0].setup_mem_addr - recs[0].cmd_mem_addr
    models[start:start + 4] = b"\xff\xff\xff\xff"  # destroy the setup.bin magic
    host.write(dev, LoadModelRequest(len(models), bytes(nef.fw_info)).pack())
    assert host.read(dev, 4) == bytes(4)
    host.write(dev, bytes(models))
    assert host.configure_fifo(dev) == (0, 0)
    host.send_bypass(dev, 1, KL720_MODEL, bytes(256))
    assert _status(dev, 4096) == 21


def test_unknown_job_gives_a_stamp_with_100(emu, kl520_nef):
    dev, _ = ready(emu, kl520_nef)
    host.write(dev, InferenceStamp(0x11FF22AA, 24 + 8, 1000, 0, 1, 0).pack())
    host.write(dev, bytes(8))
    raw = bytes(dev.read(EP_BULK_IN, 4096, 2000))
    assert InferenceStamp.parse(raw) == InferenceStamp(0x11FF22AA, 24, 1000, 100, 0, 0)
    assert len(raw) == 24


def test_npu_timeout_fault_gives_103(emu, kl520_nef):
    dev, _ = ready(emu, kl520_nef, faults=[{"kind": "npu_timeout", "index": 1}])
    for n in (1, 2, 3):
        host.send_bypass(dev, n, KL520_MODEL, bytes(KL520_INPUT))
    assert [_status(dev) for _ in range(3)] == [0, 103, 0]


def test_crop_boxes_give_one_result_each(emu, kl520_nef):
    dev, _ = ready(emu, kl520_nef)
    crops = (CropBox(5, 0, 0, 8, 8), CropBox(6, 4, 2, 12, 10))
    host.send_image(dev, host.image_header(9, KL520_MODEL, 16, 16, 1024, crops=crops), rgba(16, 16))
    first, _ = result(dev)
    second, _ = result(dev)
    assert [(r.status_code, r.crop_number, r.is_last_crop, r.inf_number) for r in (first, second)] == [
        (0, 5, 0, 9), (0, 6, 1, 9)]
    info = second.pre_proc_info[0]
    assert (info.img_width, info.img_height, info.resized_img_width, info.resized_img_height,
            info.pad_bottom, info.crop_area) == (12, 10, 8, 6, 2, crops[1])


def test_symmetric_padding_info(emu, kl520_nef):
    dev, _ = ready(emu, kl520_nef)
    host.send_image(dev, host.image_header(1, KL520_MODEL, 16, 10, 640,
                                           padding=PaddingMode.KP_PADDING_SYMMETRIC), rgba(16, 10))
    info = result(dev)[0].pre_proc_info[0]
    assert (info.resized_img_width, info.resized_img_height, info.pad_top, info.pad_bottom) == (8, 5, 1, 2)


def test_queue_depth_is_inputs_plus_results(emu, kl520_nef):
    """Without reads exactly I + R sends complete; the next write times out (-7), and so does
    a command; one read frees a buffer."""
    dev, dongle = ready(emu, kl520_nef, inputs=2, results=2)
    for n in range(4):
        host.send_bypass(dev, n, KL520_MODEL, bytes(KL520_INPUT), timeout=500)
    assert dongle.settle()
    header = BypassRequestHeader(4, KL520_MODEL, KL520_INPUT).pack()
    with pytest.raises(usb.core.USBTimeoutError):
        dev.write(0x02, header, 50)
    with pytest.raises(usb.core.USBTimeoutError):
        dev.write(0x02, build_command(CommandId.GET_SYSTEM_INFO), 50)
    assert result(dev)[0].inf_number == 0
    host.send_bypass(dev, 4, KL520_MODEL, bytes(KL520_INPUT), timeout=500)
    assert [result(dev)[0].inf_number for _ in range(4)] == [1, 2, 3, 4]


def test_frame_drop_discards_the_oldest_waiting_request(emu, kl520_nef):
    dev, dongle = ready(emu, kl520_nef, inputs=2, results=2)
    assert host.ctrl(dev, 0x83, 1) == 0
    for n in range(1, 7):
        host.send_bypass(dev, n, KL520_MODEL, bytes(KL520_INPUT), timeout=500)
        assert dongle.settle()
    got = [result(dev)[0].inf_number for _ in range(4)]
    assert got == [1, 2, 3, 6]
    with pytest.raises(usb.core.USBTimeoutError):
        dev.read(EP_BULK_IN, KL520_RESULT, 50)
    assert dongle.firmware.fifo.dropped == 2


def test_fifo_reset_discards_queued_results_and_clears_frame_drop(emu, kl520_nef):
    dev, dongle = ready(emu, kl520_nef)
    assert host.ctrl(dev, 0x83, 1) == 0
    for n in range(1, 5):
        host.send_bypass(dev, n, KL520_MODEL, bytes(KL520_INPUT))
        assert dongle.settle()  # let the NPU keep up, or frame dropping would discard some
    assert host.ctrl(dev, 0x80) == 0
    assert dongle.firmware.fifo.frame_drop is False
    # the job that was inside the NPU completes and its (stale) result comes next
    assert result(dev)[0].inf_number == 4
    with pytest.raises(usb.core.USBTimeoutError):
        dev.read(EP_BULK_IN, KL520_RESULT, 50)
    host.send_bypass(dev, 5, KL520_MODEL, bytes(KL520_INPUT))
    assert result(dev)[0].inf_number == 5


def test_fifo_reset_aborts_a_half_received_request(emu, kl520_nef):
    dev, dongle = ready(emu, kl520_nef)
    host.write(dev, BypassRequestHeader(1, KL520_MODEL, KL520_INPUT).pack())
    assert dongle.settle()
    assert host.ctrl(dev, 0x80) == 0
    assert host.command(dev, CommandId.GET_SYSTEM_INFO, reply=16)[:4] == bytes(4)


def test_oversized_request_kills_the_receiver(emu, kl520_nef):
    dev, dongle = ready(emu, kl520_nef)
    huge = BypassRequestHeader(1, KL520_MODEL, 64 * 1024 * 1024).pack()
    host.write(dev, huge)
    assert dongle.settle()
    with pytest.raises(usb.core.USBTimeoutError):
        dev.write(0x02, build_command(CommandId.GET_SYSTEM_INFO), 50)


def test_pseudo_random_outputs_are_deterministic(emu, kl520_nef):
    dev, _ = ready(emu, kl520_nef)
    data = bytes(range(256)) * 2
    for n, payload in enumerate((data, data, bytes(512))):
        host.send_bypass(dev, n, KL520_MODEL, payload)
    a, b, c = (result(dev)[1] for _ in range(3))
    assert a[344:] == b[344:] and a[344:] != c[344:]
    node = parse_result_nodes(a)[0]
    values = np.frombuffer(node.data, dtype=np.int8).reshape(3, 2, 16)[:, :, :5]
    assert values.std() > 20  # not constant data
    assert not np.frombuffer(node.data, dtype=np.int8).reshape(3, 2, 16)[:, :, 5:].any()


def test_request_sent_before_the_queues_exist_runs_once_they_do(emu, kl520_nef):
    """Received into the system reserve buffer, it waits for control 0x82 (§3.4 item 5)."""
    backend, dongle = emu("KL520")
    dev = host.open_dev(backend)
    assert host.load_model(dev, kl520_nef) == 0
    host.send_bypass(dev, 77, KL520_MODEL, bytes(KL520_INPUT))
    assert dongle.settle()
    with pytest.raises(usb.core.USBTimeoutError):
        dev.read(EP_BULK_IN, KL520_RESULT, 50)
    assert host.configure_fifo(dev) == (0, 0)
    head, _ = result(dev)
    assert (head.inf_number, head.status_code) == (77, 0)
    assert dongle.settle()
    # the early job held no input buffer; the receiver may hold one, depending on whether
    # its receive was posted before or after the queues appeared
    assert dongle.firmware.fifo.free_inputs in (2, 3)


@pytest.fixture(scope="module")
def kl720_two_inputs() -> bytes:
    from kp_backend.nef import build_simple_nef

    return build_simple_nef("KL720", [{
        "id": 20,
        "inputs": [{"shape": [1, 3, 4, 4], "layout": "4W4C8B", "radix": 7},
                   {"shape": [1, 3, 4, 4], "layout": "4W4C8B", "radix": 7}],
        "outputs": [{"shape": [1, 1, 1, 2], "layout": "16W1C8B", "radix": 0}]}])


def test_kl720_collects_images_by_index(emu, kl720_two_inputs):
    dev, _ = ready(emu, kl720_two_inputs, chip="KL720")
    size = 344 + 2248 + read_nef(kl720_two_inputs).models[0].output_mem_len
    host.send_bypass(dev, 1, 20, bytes(64), total_image=1)  # one image for a two-input model
    assert _status(dev, size) == 110
    image = rgba(4, 4)
    for index in (1, 1, 0):  # a repeated index replaces (and frees) the earlier image
        host.send_image(dev, host.image_header(2, 20, 4, 4, 64, total_image=2, image_index=index), image)
    head, raw = result(dev, size)
    assert (head.status_code, head.inf_number, len(head.pre_proc_info), len(raw)) == (0, 2, 2, size)
    with pytest.raises(usb.core.USBTimeoutError):  # exactly one result for the three sends
        dev.read(EP_BULK_IN, size, 50)


def test_reading_a_result_frees_its_buffer_in_the_read_itself(emu, kl520_nef):
    # the firmware's sender thread is not needed to release it: the host read does
    dev, dongle = ready(emu, kl520_nef, results=1)
    fifo = dongle.firmware.fifo
    for n in range(1, 6):
        host.send_bypass(dev, n, KL520_MODEL, bytes(KL520_INPUT))
        header, _ = result(dev)
        with dongle.lock:
            assert fifo.free_results == 1, "the buffer of a read result is still busy"
        assert header.inf_number == n


def test_a_fifo_reset_drops_an_unread_result_and_frees_its_buffer(emu, kl520_nef):
    dev, dongle = ready(emu, kl520_nef, results=1)
    host.send_bypass(dev, 1, KL520_MODEL, bytes(KL520_INPUT))
    assert dongle.settle()  # its result waits on the IN endpoint
    assert host.ctrl(dev, 0x80) == 0
    with dongle.lock:
        assert dongle.firmware.fifo.free_results == 1
    with pytest.raises(usb.core.USBTimeoutError):
        dev.read(EP_BULK_IN, KL520_RESULT, 50)
    host.send_bypass(dev, 2, KL520_MODEL, bytes(KL520_INPUT))
    assert result(dev)[0].inf_number == 2
