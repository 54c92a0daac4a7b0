"""ONNX twins, output generators, fault injection and the timing model."""

from __future__ import annotations

import struct

import numpy as np
import onnx
import pytest
import usb.core
from onnx import TensorProto, helper, numpy_helper

import _emu_host as host
from _emu_host import KL520_MODEL, TWIN_MODEL
from kp_backend.emulator import Fault, FaultPlan, VirtualDongle
from kp_backend.emulator.timing import LINK_PROFILES, make_timing
from kp_backend.layouts import decode_node, encode_node, parse_result_nodes
from kp_backend.npu_types import Chip
from kp_backend.protocol.constants import EP_BULK_IN, EP_BULK_OUT, NormalizeMode, UsbSpeed
from kp_backend.protocol.wire import build_command

TWIN_RESULT = 344 + 4 + 24 + 3 * 4 * 16


def twin_model(scale: float = 2.0, bias: float = -0.25) -> onnx.ModelProto:
    """y = scale·x + bias on a (1, 3, 4, 4) tensor."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])],
        "twin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        [numpy_helper.from_array(np.array(scale, np.float32), "s"),
         numpy_helper.from_array(np.array(bias, np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def ready(emu, nef, **kw):
    backend, dongle = emu("KL520", **kw)
    dev = host.open_dev(backend)
    assert host.load_model(dev, nef) == 0
    assert host.configure_fifo(dev) == (0, 0)
    return dev, dongle


def twin_output(raw: bytes) -> np.ndarray:
    node = parse_result_nodes(raw)[0]
    return decode_node(node.data, chip="KL520", layout=node.layout, shape=node.shape,
                       radix=node.radix, scale=node.scale, ordering="CHW")


def test_twin_computes_bypass_outputs(emu, kl520_nef):
    dev, dongle = ready(emu, kl520_nef)
    dongle.set_twin(TWIN_MODEL, twin_model())  # after the load: checked against the model
    x = np.linspace(-0.9, 0.9, 48, dtype=np.float32).reshape(1, 3, 4, 4)
    data = encode_node(x, chip="KL520", layout="4W4C8B", shape=(1, 3, 4, 4), radix=7, scale=1.0)
    host.send_bypass(dev, 1, TWIN_MODEL, data)
    raw = bytes(dev.read(EP_BULK_IN, TWIN_RESULT, 2000))
    y = twin_output(raw)
    expected = 2 * np.round(x * 128) / 128 - 0.25
    np.testing.assert_allclose(y, np.clip(expected, -4, 127 / 32), atol=1 / 64)


def test_twin_set_before_loading_and_image_preprocessing(emu, kl520_nef):
    backend, dongle = emu("KL520")
    dongle.set_twin(TWIN_MODEL, twin_model(1.0, 0.0).SerializeToString())
    dev = host.open_dev(backend)
    assert host.load_model(dev, kl520_nef) == 0
    assert host.configure_fifo(dev) == (0, 0)
    image = bytes([200, 100, 40, 0]) * 16  # RGBA 4x4
    host.send_image(dev, host.image_header(1, TWIN_MODEL, 4, 4, 64,
                                           norm=NormalizeMode.KP_NORMALIZE_KNERON), image)
    y = twin_output(bytes(dev.read(EP_BULK_IN, TWIN_RESULT, 2000)))
    # Kneron normalisation: p - 128 read with the model's input radix 7
    expected = (np.array([200, 100, 40]) - 128) / 128
    np.testing.assert_allclose(y[0, :, 0, 0], expected, atol=1 / 32)
    assert np.ptp(y, axis=(2, 3)).max() == 0  # a uniform image stays uniform


def test_twin_with_wrong_signature_is_refused(emu, kl520_nef):
    dev, dongle = ready(emu, kl520_nef)
    with pytest.raises(ValueError, match="outputs"):
        dongle.set_twin(KL520_MODEL, twin_model())  # model 7 has two outputs


def test_compute_callable_replaces_the_npu(emu, kl520_nef):
    def constant(req):
        return [bytes([7]) * 96, bytes([1]) * 16]

    dev, _ = ready(emu, kl520_nef, compute=constant)
    host.send_bypass(dev, 1, KL520_MODEL, bytes(512))
    raw = bytes(dev.read(EP_BULK_IN, 508, 2000))
    assert raw[344 + 4 + 48:344 + 4 + 48 + 96] == bytes([7]) * 96


def test_fault_rules_are_validated():
    with pytest.raises(ValueError, match="kind"):
        Fault.from_data({"kind": "explode"})
    with pytest.raises(ValueError, match="keys"):
        Fault.from_data({"kind": "stall", "when": 3})
    with pytest.raises(ValueError, match="field"):
        Fault("corrupt_result", field="colour")
    with pytest.raises(TypeError):
        FaultPlan(["stall"])
    plan = FaultPlan([{"kind": "stall", "transfer": "out", "index": 1, "count": 2}])
    assert [plan.on_transfer("out") for _ in range(4)] == [None, "stall", "stall", None]


def test_stall_and_timeout_faults(emu):
    backend, _ = emu("KL520", faults=[{"kind": "stall", "transfer": "out", "index": 1},
                                      {"kind": "timeout", "transfer": "control", "request": 0x80}])
    dev = host.open_dev(backend)
    sysinfo = build_command(0x0A04)
    dev.write(EP_BULK_OUT, sysinfo, 500)
    host.read(dev, 16)
    with pytest.raises(usb.core.USBError) as err:
        dev.write(EP_BULK_OUT, sysinfo, 500)
    assert err.value.backend_error_code == -9
    assert host.ctrl(dev, 0x80) == -7
    assert host.ctrl(dev, 0x83) == 0


def test_result_faults(emu, kl520_nef):
    dev, _ = ready(emu, kl520_nef, faults=[
        {"kind": "drop_result", "index": 0},
        {"kind": "corrupt_result", "field": "magic", "value": 0xDEADBEEF, "index": 1}])
    for n in (1, 2, 3):
        host.send_bypass(dev, n, KL520_MODEL, bytes(512))
    first = bytes(dev.read(EP_BULK_IN, 508, 2000))
    second = bytes(dev.read(EP_BULK_IN, 508, 2000))
    assert struct.unpack_from("<I", first, 0)[0] == 0xDEADBEEF
    assert struct.unpack_from("<I", first, 332)[0] == 2  # result 1 was dropped
    assert struct.unpack_from("<I", second, 332)[0] == 3


def test_disconnect_after_k_messages(emu):
    backend, dongle = emu("KL520", faults=[{"kind": "disconnect", "after_messages": 2}])
    dev = host.open_dev(backend)
    host.command(dev, 0x0A04, reply=16)
    dev.write(EP_BULK_OUT, build_command(0x0A04), 500)
    assert dongle.settle()
    with pytest.raises(usb.core.USBError) as err:
        dev.read(EP_BULK_IN, 16, 500)
    assert err.value.backend_error_code == -4
    assert dongle.state == "absent" and host.find(backend, wait=False) is None


def test_refuse_fifo_fault(emu, kl520_nef):
    backend, _ = emu("KL520", faults=[{"kind": "refuse_fifo"}])
    dev = host.open_dev(backend)
    assert host.load_model(dev, kl520_nef) == 0
    assert host.configure_fifo(dev) == (0, -9)


def test_timing_model_numbers():
    fast = make_timing(Chip.KL520, UsbSpeed.KP_USB_SPEED_HIGH, "fast")
    assert fast.transfer_time(10**6) == 0 and fast.npu_time(3) == 0
    real = make_timing(Chip.KL520, UsbSpeed.KP_USB_SPEED_HIGH)
    assert real.transfer_time(35_000_000) == pytest.approx(1.0, rel=1e-3)
    assert real.npu_time(3) == 0.015
    ss = make_timing(Chip.KL720, UsbSpeed.KP_USB_SPEED_SUPER, npu_time={5: 0.002, None: 0.01})
    assert (ss.npu_time(5), ss.npu_time(6)) == (0.002, 0.01)
    assert ss.link is LINK_PROFILES[UsbSpeed.KP_USB_SPEED_SUPER] and ss.link.full_duplex
    assert make_timing(Chip.KL520, UsbSpeed.KP_USB_SPEED_HIGH, "fast", npu_time=0.5).npu_time(1) == 0.5
    with pytest.raises(ValueError):
        make_timing(Chip.KL520, UsbSpeed.KP_USB_SPEED_HIGH, npu_time=-1)


def test_realistic_dongle_uses_the_realistic_model():
    d = VirtualDongle("KL720", link_speed="high")
    assert d.packet_size == 512 and d.timing.link is LINK_PROFILES[UsbSpeed.KP_USB_SPEED_HIGH]
    assert d.timing.npu_time(1) == 0.004
