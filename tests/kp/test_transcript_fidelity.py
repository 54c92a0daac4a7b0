"""Wire fidelity: our host makes the same USB traffic as Kneron's own library.

For every golden transcript (recorded from KneronPLUS 2.2.0), the recorded device answers
are fed to our host through a replay pyusb backend while the test makes the same ``kp``
calls as the recording script; every bulk OUT byte (outside the README's volatile ranges),
IN read length, control setup and timeout must match, in the recorded order.

The inputs of the calls (image bytes, header fields, firmware images) are taken from the
transcript itself; the assertions on the kp results check our parsing of the replies.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from _shared import shared_file, shared_params
from kp_backend import kp
from kp_backend.device import DeviceGroup as LowGroup
from kp_backend.protocol.constants import BYTES_PER_PIXEL, MAGIC_INFERENCE
from kp_backend.protocol.wire import BypassRequestHeader, ImageRequestHeader

from _replay import ReplayBackend, Transcript

SUBDIR = "golden/usb_transcripts"
PORT = 393
KN = 0x1A2B3C4D
RC = kp.ApiReturnCode


@pytest.fixture(autouse=True)
def fast_pauses(monkeypatch):
    # Host pauses (reconnect after reboot, connect search) do not change any byte.
    monkeypatch.setattr(LowGroup, "reconnect_pause_s", 0.0)
    monkeypatch.setattr(LowGroup, "search_interval_s", 0.0)


def nef_path(shared_dir: Path, name: str) -> str:
    return str(shared_dir / "models" / "nef" / name)


class Requests:
    """The recorded inference requests, in order: (header bytes, data bytes)."""

    def __init__(self, t: Transcript) -> None:
        outs = [e for e in t.events if e.kind == "out"]
        self.items = []
        for i, e in enumerate(outs):
            if e.data and len(e.data) in (36, 140) and struct.unpack_from("<I", e.data)[0] == MAGIC_INFERENCE:
                nxt = outs[i + 1] if i + 1 < len(outs) else None
                if e.status == 0 and nxt is not None:
                    data = nxt.data
                else:  # the header write timed out: no data was ever sent
                    size = struct.unpack_from("<I", e.data, 4)[0] - len(e.data)
                    data = bytes(size)
                self.items.append((e.data, data))
        self.pos = 0

    def next(self):
        item = self.items[self.pos]
        self.pos += 1
        return item


def image_call(group, raw_header: bytes, data: bytes, as_array: bool):
    h = ImageRequestHeader.parse(raw_header)
    header = kp.v1.GenericRawImageHeader(
        model_id=h.model_id, resize_mode=kp.ResizeMode(h.resize_mode),
        padding_mode=kp.PaddingMode(h.padding_mode),
        normalize_mode=kp.NormalizeMode(h.normalize_mode), inference_number=h.inference_number,
        inference_crop_box_list=[kp.InferenceCropBox(b.crop_number, b.x1, b.y1, b.width, b.height)
                                 for b in h.crop_boxes])
    fmt = kp.ImageFormat(h.image_format)
    if as_array:
        bpp = int(BYTES_PER_PIXEL[fmt])
        image = np.frombuffer(data, np.uint8).reshape(h.height, h.width, bpp)
    else:
        header.width, header.height, image = h.width, h.height, data
    kp.v1.inference.generic_raw_inference_send(group, header, image, fmt)
    assert (header.width, header.height, header.image_format) == (h.width, h.height, fmt)
    return header


def bypass_call(group, raw_header: bytes, data: bytes):
    h = BypassRequestHeader.parse(raw_header)
    header = kp.v1.GenericRawBypassPreProcImageHeader(
        model_id=h.model_id, inference_number=h.inference_number,
        image_buffer_size=h.image_buffer_size)
    kp.v1.inference.generic_raw_inference_bypass_pre_proc_send(group, header, data)
    return header


def check_nodes(result, product_id: int):
    assert result.header.product_id == product_id
    n = result.header.num_output_node
    assert n > 0
    for i in range(n):
        fixed = kp.inference.generic_inference_retrieve_fixed_node(
            i, result, kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW)
        flt = kp.inference.generic_inference_retrieve_float_node(
            i, result, kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW)
        assert fixed.ndarray.shape == flt.ndarray.shape == (1, fixed.channel, fixed.height,
                                                            fixed.width)
        np.testing.assert_allclose(flt.ndarray, fixed.ndarray / np.float32(fixed.factor),
                                   rtol=1e-6)


def expect_code(code, fn, *args, **kwargs):
    with pytest.raises(kp.ApiKPException) as info:
        fn(*args, **kwargs)
    assert info.value.api_return_code == code, (info.value, info.value.detail)
    return info.value


# --- scenarios -------------------------------------------------------------------------------
def scenario_scan_connect(b, t, shared_dir):
    devices = kp.core.scan_devices(backend=b)
    assert devices.device_descriptor_number == 1
    d = devices.device_descriptor_list[0]
    assert (d.usb_port_id, d.kn_number, d.product_id, d.firmware, d.usb_port_path) == (
        PORT, KN, 0x100, "KDP2 Comp/U", "1-2-3")
    assert d.link_speed == kp.UsbSpeed.KP_USB_SPEED_HIGH and d.is_connectable
    g = kp.core.connect_devices([PORT], backend=b)
    info = kp.core.get_system_info(g, PORT)
    assert info.kn_number == KN
    assert info.get_member_variable_dict()["firmware_version"] == "2.2.0-build.1226"
    kp.core.set_timeout(g, 5000)
    assert kp.core.get_version() == "2.2.0"
    expect_code(RC.KP_FW_GET_MODEL_INFO_FAILED_109, kp.core.get_model_info, g, PORT)
    kp.core.get_system_info(g, PORT)
    kp.core.disconnect_devices(g)
    kp.core.disconnect_devices(g)  # a second disconnect is a no-op
    g = kp.core.connect_devices([0], backend=b)
    kp.core.disconnect_devices(g)


def scenario_load_nef(b, t, shared_dir):
    kp.core.scan_devices(backend=b)
    g = kp.core.connect_devices([PORT], backend=b)
    kp.core.scan_devices(backend=b)
    kp.core.set_timeout(g, 10000)
    for name in ("KL520/mobilenet_hostlib.nef", "KL520/ssd_fd_lm_hostlib.nef",
                 "KL520/ssd_fd_lm_plus.nef"):
        desc = kp.core.load_model_from_file(g, nef_path(shared_dir, name))
        info = kp.core.get_model_info(g, PORT)
        assert [m.id for m in info.models] == [m.id for m in desc.models]
        assert info.crc == desc.crc and desc.magic == 0x5AA55AA5
        assert [m.max_raw_out_size for m in info.models] == [m.max_raw_out_size for m in desc.models]
        assert g.content.loaded_model_nef_descriptor is desc
    data = Path(nef_path(shared_dir, "KL520/mobilenet_hostlib.nef")).read_bytes()
    desc = kp.core.load_model(g, data)
    assert [m.id for m in desc.models] == [18]
    assert g.content.ddr_manage_attributes.input_buffer_count == 3
    kp.core.get_system_info(g, PORT)
    kp.core.disconnect_devices(g)


def _load_ssd(b, shared_dir, timeout=5000):
    g = kp.core.connect_devices([PORT], backend=b)
    kp.core.set_timeout(g, timeout)
    desc = kp.core.load_model_from_file(g, nef_path(shared_dir, "KL520/ssd_fd_lm_plus.nef"))
    return g, desc


def scenario_v1_image_inference(b, t, shared_dir):
    g, desc = _load_ssd(b, shared_dir)
    reqs = Requests(t)
    for i in range(len(reqs.items)):
        raw, data = reqs.next()
        header = image_call(g, raw, data, as_array=bool(i % 2))
        for crop in range(max(1, header.crop_count)):
            r = kp.v1.inference.generic_raw_inference_receive(g, header, desc)
            assert r.header.inference_number == header.inference_number
            assert r.header.crop_number == crop
            assert r.header.hw_pre_proc_info.model_input_width > 0
            check_nodes(r, 0x100)
    kp.core.disconnect_devices(g)


def scenario_bypass_inference(b, t, shared_dir):
    g, desc = _load_ssd(b, shared_dir)
    reqs = Requests(t)
    for _ in range(len(reqs.items)):
        header = bypass_call(g, *reqs.next())
        r = kp.v1.inference.generic_raw_inference_bypass_pre_proc_receive(g, header, desc)
        assert r.header.inference_number == header.inference_number
        check_nodes(r, 0x100)
    kp.core.disconnect_devices(g)


def scenario_inference_config(b, t, shared_dir):
    g, desc = _load_ssd(b, shared_dir)
    kp.core.set_timeout(g, 1000)
    reqs = Requests(t)
    recv = kp.v1.inference.generic_raw_inference_bypass_pre_proc_receive
    cfg = kp.InferenceConfiguration
    kp.inference.set_inference_configuration(g, cfg(enable_frame_drop=False))
    headers = [bypass_call(g, *reqs.next()) for _ in range(6)]
    expect_code(RC.KP_ERROR_USB_TIMEOUT_N7, bypass_call, g, *reqs.next())
    assert [recv(g, headers[0], desc).header.inference_number for _ in range(6)] == list(range(6))
    expect_code(RC.KP_ERROR_USB_TIMEOUT_N7, recv, g, headers[0], desc)
    kp.inference.set_inference_configuration(g, cfg(enable_frame_drop=True))
    headers = [bypass_call(g, *reqs.next()) for _ in range(10)]
    got = [recv(g, headers[0], desc).header.inference_number for _ in range(6)]
    assert got == [10, 11, 12, 13, 18, 19]
    expect_code(RC.KP_ERROR_USB_TIMEOUT_N7, recv, g, headers[0], desc)
    kp.inference.set_inference_configuration(g, cfg(enable_frame_drop=True))
    kp.core.reset_device(g, kp.ResetMode.KP_RESET_INFERENCE)
    for _ in range(6):
        bypass_call(g, *reqs.next())
    expect_code(RC.KP_ERROR_USB_TIMEOUT_N7, bypass_call, g, *reqs.next())
    kp.core.reset_device(g, kp.ResetMode.KP_RESET_INFERENCE)
    expect_code(RC.KP_ERROR_USB_TIMEOUT_N7, recv, g, headers[0], desc)
    kp.inference.set_inference_configuration(g, cfg(enable_frame_drop=False))
    kp.core.disconnect_devices(g)


def scenario_pipelined_threads(b, t, shared_dir):
    g, desc = _load_ssd(b, shared_dir, timeout=10000)
    reqs = Requests(t)
    items = [reqs.next() for _ in range(len(reqs.items))]
    received: list[int] = []
    errors: list[BaseException] = []

    def sender():
        try:
            for raw, data in items:
                image_call(g, raw, data, as_array=False)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def receiver():
        try:
            header = kp.v1.GenericRawImageHeader(model_id=5)
            for _ in items:
                received.append(kp.v1.inference.generic_raw_inference_receive(
                    g, header, desc).header.inference_number)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=receiver), threading.Thread(target=sender)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors, errors
    assert received == list(range(len(items)))
    kp.core.disconnect_devices(g)


def scenario_errors(b, t, shared_dir):
    expect_code(RC.KP_ERROR_CONNECT_FAILED_28, kp.core.connect_devices, [PORT + 4], backend=b)
    expect_code(RC.KP_ERROR_DEVICES_NUMBER_26, kp.core.connect_devices, [], backend=b)
    kp.core.scan_devices(backend=b)
    g = kp.core.connect_devices([PORT], backend=b)
    kp.core.set_timeout(g, 5000)
    expect_code(RC.KP_ERROR_DEVICE_NOT_EXIST_10, kp.core.get_system_info, g, 999)
    header = kp.v1.GenericRawImageHeader(model_id=32)
    image = bytes(200 * 200 * 2)
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, kp.v1.inference.generic_raw_inference_send, g,
                header, np.zeros((200, 200, 2), np.uint8), kp.ImageFormat.KP_IMAGE_FORMAT_RGB565)
    bheader = kp.v1.GenericRawBypassPreProcImageHeader(model_id=32, image_buffer_size=100)
    expect_code(RC.KP_ERROR_INVALID_PARAM_12,
                kp.v1.inference.generic_raw_inference_bypass_pre_proc_send, g, bheader, bytes(100))
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, kp.v1.inference.generic_raw_inference_receive, g,
                header, kp.ModelNefDescriptor())
    expect_code(RC.KP_ERROR_INVALID_MODEL_21, kp.core.load_model_from_file, g,
                nef_path(shared_dir, "KL720/fdfr_hostlib.nef"))
    expect_code(RC.KP_ERROR_FILE_OPEN_FAILED_20, kp.core.load_model_from_file, g,
                str(shared_dir / "no_such_model.nef"))
    expect_code(RC.KP_ERROR_INVALID_MODEL_21, kp.core.load_model, g, b"not a NEF file" * 64)
    desc = kp.core.load_model_from_file(g, nef_path(shared_dir, "KL520/ssd_fd_lm_plus.nef"))
    expect_code(RC.KP_ERROR_USB_BOOT_LOAD_SECOND_MODEL_40, kp.core.load_model_from_file, g,
                nef_path(shared_dir, "KL520/ssd_fd_lm_plus.nef"))
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, kp.v1.inference.generic_raw_inference_send, g,
                kp.v1.GenericRawImageHeader(model_id=99, width=200, height=200), image,
                kp.ImageFormat.KP_IMAGE_FORMAT_RGB565)
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, kp.v1.inference.generic_raw_inference_send, g,
                kp.v1.GenericRawImageHeader(model_id=32, width=200, height=200), image,
                kp.ImageFormat.KP_IMAGE_FORMAT_UNKNOWN)
    big = kp.v1.GenericRawBypassPreProcImageHeader(model_id=32, image_buffer_size=32 << 20)
    expect_code(RC.KP_ERROR_SEND_DATA_TOO_LARGE_15,
                kp.v1.inference.generic_raw_inference_bypass_pre_proc_send, g, big, b"")
    reqs = Requests(t)
    for code in (22, 23, 107, 108, 112):
        h = image_call(g, *reqs.next(), as_array=False)
        err = expect_code(code, kp.v1.inference.generic_raw_inference_receive, g, h, desc)
        assert err.function_name == "generic_raw_inference_receive"
    h = image_call(g, *reqs.next(), as_array=False)
    r = kp.v1.inference.generic_raw_inference_receive(g, h, desc)
    check_nodes(r, 0x100)
    kp.core.set_timeout(g, 300)
    expect_code(RC.KP_ERROR_USB_TIMEOUT_N7, kp.v1.inference.generic_raw_inference_receive, g, h,
                desc)
    kp.core.reset_device(g, kp.ResetMode.KP_RESET_INFERENCE)
    kp.core.disconnect_devices(g)


def scenario_kl720_inference(b, t, shared_dir):
    kp.core.scan_devices(backend=b)
    g = kp.core.connect_devices([PORT], backend=b)
    kp.core.set_timeout(g, 5000)
    path = nef_path(shared_dir, "KL720/fdfr_hostlib.nef")
    desc = kp.core.load_model_from_file(g, path)
    reqs = Requests(t)
    for _ in range(3):
        h = bypass_call(g, *reqs.next())
        check_nodes(kp.v1.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, desc),
                    0x720)
    for i in range(3):
        h = image_call(g, *reqs.next(), as_array=bool(i % 2))
        check_nodes(kp.v1.inference.generic_raw_inference_receive(g, h, desc), 0x720)
    h = image_call(g, *reqs.next(), as_array=False)
    expect_code(RC.KP_ERROR_IMAGE_ODD_WIDTH_23, kp.v1.inference.generic_raw_inference_receive,
                g, h, desc)
    desc = kp.core.load_model_from_file(g, path)
    h = bypass_call(g, *reqs.next())
    check_nodes(kp.v1.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, desc), 0x720)
    expect_code(RC.KP_ERROR_INVALID_PARAM_12, kp.core.reset_device, g,
                kp.ResetMode.KP_RESET_SHUTDOWN)
    kp.core.disconnect_devices(g)


def scenario_load_firmware(b, t, shared_dir):
    devices = kp.core.scan_devices(backend=b)
    assert devices.device_descriptor_list[0].firmware == "KDP2 Loader"
    g = kp.core.connect_devices([PORT], backend=b)
    kp.core.set_timeout(g, 5000)
    scpu, ncpu = t.firmware_uploads()[:2]
    kp.core.load_firmware(g, scpu, ncpu)
    assert kp.core.scan_devices(backend=b).device_descriptor_list[0].firmware == "KDP2 Comp/U"
    kp.core.get_system_info(g, PORT)
    kp.core.load_firmware(g, scpu, ncpu)
    desc = kp.core.load_model_from_file(g, nef_path(shared_dir, "KL520/ssd_fd_lm_plus.nef"))
    h = bypass_call(g, *Requests(t).next())
    check_nodes(kp.v1.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, desc), 0x100)
    kp.core.disconnect_devices(g)


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items()
             if name.startswith("scenario_")}


@pytest.mark.parametrize("path", shared_params(SUBDIR, "*.json"))
def test_transcript_fidelity(path, shared_dir):
    path = shared_file(path, SUBDIR)
    t = Transcript(path)
    script = SCENARIOS.get(t.name)
    assert script is not None, f"no kp script for transcript {t.name!r}; add scenario_{t.name}"
    backend = ReplayBackend(t)
    script(backend, t, shared_dir)
    backend.verify()


def test_every_scenario_has_a_transcript(shared_dir):
    names = {p.stem for p in (shared_dir / SUBDIR).glob("*.json")}
    assert set(SCENARIOS) <= names
