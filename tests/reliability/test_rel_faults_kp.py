"""Fault matrix for the seed API (``from kp_backend import kp``) on the virtual dongle.

Each case: a typed ``ApiKPException`` with Kneron's code whose ``detail`` names the device
(``port 1-2-3 (id 393)``) and the cause, raised within the group timeout; every result a
receive returns is the one of its own inference number (checked against a clean dongle);
and the group works again (directly, after ``reset_device(KP_RESET_INFERENCE)``, or after a
reconnect when the device left the bus). See ``docs/reliability.md``.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kp_backend import kp
from kp_backend.emulator import FaultPlan
from kp_runtime.errors import DeviceDisconnected, DeviceProtocolError, DeviceTimeout

from rel_helpers import (SMALL_ID, bypass_receive, bypass_send, input_size, kp_connect,
                         payload, small_nef, wait_until)

RC = kp.ApiReturnCode
TIMEOUT_MS = 1000
N_REF = 16


@pytest.fixture(scope="module")
def nef():
    return small_nef("KL520")


@pytest.fixture(scope="module")
def reference(nef):
    """Outputs of payload(i), i = 1..N_REF, on a clean dongle, one request at a time."""
    from kp_backend.emulator import VirtualDongle, VirtualUsbBackend

    with VirtualUsbBackend([VirtualDongle("KL520", timing="fast")]) as backend:
        g, desc = kp_connect(backend, nef)
        size = input_size(nef)
        ref = {}
        for i in range(1, N_REF + 1):
            bypass_send(g, i, payload(i, size))
            number, nodes = bypass_receive(g, desc)
            assert number == i
            ref[i] = nodes
        kp.core.disconnect_devices(g)
    return ref


@pytest.fixture
def setup(emu, nef):
    """``(group, descriptor, dongle, data(i))`` on a fresh dongle, faults reset."""
    backend, (dongle,) = emu("KL520")
    g, desc = kp_connect(backend, nef, TIMEOUT_MS)
    size = input_size(nef)
    yield g, desc, dongle, (lambda i: payload(i, size))
    kp.core.disconnect_devices(g)


def faults(dongle, *rules):
    """Install fault rules with counters starting now (after connect and model load)."""
    dongle.faults = FaultPlan(list(rules))


def expect(code, fn, *args, within_s: float = TIMEOUT_MS / 1000 + 1.0, named: bool = True):
    t0 = time.monotonic()
    with pytest.raises(kp.ApiKPException) as info:
        fn(*args)
    elapsed = time.monotonic() - t0
    err = info.value
    assert err.api_return_code == code, (err, err.detail)
    if named:  # device errors name it; node retrieval (no I/O) names the bad field instead
        assert "port 1-2-3 (id 393)" in err.detail, err.detail
    assert elapsed < within_s, f"{fn.__name__} took {elapsed:.2f} s"
    return err


def check_own(reference, number, nodes):
    """A result is the one of its own inference number, bit for bit."""
    for want, have in zip(reference[number], nodes, strict=True):
        np.testing.assert_array_equal(have, want)


def send(g, i, data):
    bypass_send(g, i, data(i))


def roundtrip(g, desc, data, reference, numbers):
    for i in numbers:
        send(g, i, data)
    for i in numbers:
        number, nodes = bypass_receive(g, desc)
        assert number == i
        check_own(reference, number, nodes)


# -- timeouts ------------------------------------------------------------------------------
def test_send_timeout_on_the_header(setup, reference):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "timeout", "transfer": "out", "index": 0})
    err = expect(RC.KP_ERROR_USB_TIMEOUT_N7, send, g, 1, data)
    assert "header" in err.detail and isinstance(err.__cause__, DeviceTimeout)
    roundtrip(g, desc, data, reference, [2, 3])  # nothing reached the device: no resync


def test_send_timeout_on_the_data_then_inference_reset(setup, reference):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "timeout", "transfer": "out", "index": 1})
    err = expect(RC.KP_ERROR_USB_TIMEOUT_N7, send, g, 1, data)
    assert "data" in err.detail
    # The device holds a header without its data: resynchronise as Kneron's examples do.
    kp.core.reset_device(g, kp.ResetMode.KP_RESET_INFERENCE)
    roundtrip(g, desc, data, reference, [2, 3, 4])


def test_receive_timeout_injected_loses_no_result(setup, reference):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "timeout", "transfer": "in", "index": 0})
    send(g, 1, data)
    send(g, 2, data)
    expect(RC.KP_ERROR_USB_TIMEOUT_N7, bypass_receive, g, desc)
    for i in (1, 2):  # the results stayed in the device
        number, nodes = bypass_receive(g, desc)
        assert number == i
        check_own(reference, number, nodes)


def test_receive_timeout_when_the_result_never_comes(setup, reference):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "drop_result", "index": 0})
    send(g, 1, data)
    t0 = time.monotonic()
    err = expect(RC.KP_ERROR_USB_TIMEOUT_N7, bypass_receive, g, desc)
    assert time.monotonic() - t0 >= TIMEOUT_MS / 1000 * 0.9  # it did wait the timeout
    assert f"within {TIMEOUT_MS} ms" in err.detail
    roundtrip(g, desc, data, reference, [2])


def test_npu_timeout_status_is_that_requests_error(setup, reference):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "npu_timeout", "index": 1})
    for i in (1, 2, 3):
        send(g, i, data)
    check_own(reference, *bypass_receive(g, desc))
    err = expect(RC.KP_FW_INFERENCE_TIMEOUT_103, bypass_receive, g, desc)
    assert "status 103" in err.detail
    number, nodes = bypass_receive(g, desc)
    assert number == 3
    check_own(reference, number, nodes)


# -- the device leaves the bus -----------------------------------------------------------------
def _in_thread(fn, *args):
    box: dict = {}

    def body():
        t0 = time.monotonic()
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            box["error"] = exc
        box["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, box


def _reconnect_and_run(dongle, backend_of, nef, data, reference):
    dongle.reboot()  # plugging it back in: a fresh boot at the same port
    assert wait_until(lambda: dongle.state != "absent", 5)
    g2, desc2 = kp_connect(backend_of, nef, TIMEOUT_MS)
    try:
        roundtrip(g2, desc2, data, reference, [7, 8])
    finally:
        kp.core.disconnect_devices(g2)


@pytest.fixture
def setup_long(emu, nef):
    """As ``setup`` with a 5 s timeout, so that "well within the timeout" is visible."""
    backend, (dongle,) = emu("KL520")
    g, desc = kp_connect(backend, nef, 5000)
    size = input_size(nef)
    yield g, desc, dongle, (lambda i: payload(i, size)), backend
    kp.core.disconnect_devices(g)


def test_unplug_during_a_blocked_send(setup_long, nef, reference):
    g, desc, dongle, data, backend = setup_long
    fifo = g.group.fifo
    depth = fifo.input_buffer_count + fifo.result_buffer_count
    for i in range(1, depth + 1):  # fills every input and result buffer
        send(g, i, data)
    t, box = _in_thread(send, g, depth + 1, data)
    time.sleep(0.2)
    assert t.is_alive(), "the send should block: the device is full"
    dongle.unplug()
    t.join(5)
    assert not t.is_alive()
    err = box["error"]
    assert isinstance(err, kp.ApiKPException) and box["elapsed"] < 2.0
    assert err.api_return_code in (RC.KP_ERROR_SEND_DESC_FAIL_13, RC.KP_ERROR_SEND_DATA_FAIL_14)
    assert isinstance(err.__cause__, DeviceDisconnected) and "port 1-2-3" in err.detail
    expect(RC.KP_ERROR_USB_NO_DEVICE_N4, bypass_receive, g, desc)
    _reconnect_and_run(dongle, backend, nef, data, reference)


def test_unplug_during_a_blocked_receive(setup_long, nef, reference):
    g, desc, dongle, data, backend = setup_long
    t, box = _in_thread(bypass_receive, g, desc)  # nothing was sent: it waits
    time.sleep(0.2)
    dongle.unplug()
    t.join(5)
    assert not t.is_alive()
    err = box["error"]
    assert isinstance(err, kp.ApiKPException) and box["elapsed"] < 2.0
    assert err.api_return_code == RC.KP_ERROR_USB_NO_DEVICE_N4
    assert isinstance(err.__cause__, DeviceDisconnected)
    _reconnect_and_run(dongle, backend, nef, data, reference)


def test_unplug_between_requests(setup_long, nef, reference):
    g, desc, dongle, data, backend = setup_long
    roundtrip(g, desc, data, reference, [1])
    dongle.unplug()
    err = expect(RC.KP_ERROR_SEND_DESC_FAIL_13, send, g, 2, data)
    assert isinstance(err.__cause__, DeviceDisconnected)
    expect(RC.KP_ERROR_USB_NO_DEVICE_N4, bypass_receive, g, desc)
    _reconnect_and_run(dongle, backend, nef, data, reference)


def test_disconnect_fault_mid_stream(setup_long, nef, reference):
    g, desc, dongle, data, backend = setup_long
    faults(dongle, {"kind": "disconnect", "after_messages": 5})  # header+data of 2, then 1 more
    send(g, 1, data)
    send(g, 2, data)
    with pytest.raises(kp.ApiKPException) as info:
        for i in range(3, 10):
            send(g, i, data)
    assert isinstance(info.value.__cause__, DeviceDisconnected)
    _reconnect_and_run(dongle, backend, nef, data, reference)


def test_device_reboots_by_itself(setup_long, nef, reference):
    g, desc, dongle, data, backend = setup_long
    faults(dongle, {"kind": "slow_npu", "seconds": 0.3})
    send(g, 1, data)
    t, box = _in_thread(bypass_receive, g, desc)
    time.sleep(0.1)
    dongle.reboot(join=False)  # watchdog reset, power glitch
    t.join(5)
    assert not t.is_alive()
    err = box["error"]
    assert err.api_return_code == RC.KP_ERROR_USB_NO_DEVICE_N4 and box["elapsed"] < 2.0
    dongle.faults = FaultPlan()
    assert wait_until(lambda: dongle.state != "absent", 5)
    g2, desc2 = kp_connect(backend, nef, TIMEOUT_MS)  # it came back: reconnect + reload
    try:
        roundtrip(g2, desc2, data, reference, [3, 4])
    finally:
        kp.core.disconnect_devices(g2)


# -- FIFO reset and frame drop ------------------------------------------------------------------
def test_fifo_reset_with_requests_in_flight(setup, reference):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "slow_npu", "seconds": 0.05})
    for i in (1, 2, 3, 4):
        send(g, i, data)
    check_own(reference, *bypass_receive(g, desc))
    kp.core.reset_device(g, kp.ResetMode.KP_RESET_INFERENCE)
    for i in (5, 6, 7):
        send(g, i, data)
    fresh = []
    for _ in range(8):  # a job that was inside the NPU during the reset may still report
        number, nodes = bypass_receive(g, desc)
        assert number in (2, 3, 4, 5, 6, 7)
        check_own(reference, number, nodes)
        if number >= 5:
            fresh.append(number)
        if fresh == [5, 6, 7]:
            break
    assert fresh == [5, 6, 7]


def test_frame_drop_under_load_never_mixes_results(setup, reference):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "slow_npu", "seconds": 0.02})
    kp.inference.set_inference_configuration(g, kp.InferenceConfiguration(enable_frame_drop=True))
    kp.core.set_timeout(g, 500)
    for i in range(1, N_REF + 1):
        send(g, i, data)  # never blocks: the device drops the oldest waiting request
    got = []
    while True:
        try:
            number, nodes = bypass_receive(g, desc)
        except kp.ApiKPException as exc:
            assert exc.api_return_code == RC.KP_ERROR_USB_TIMEOUT_N7
            break
        check_own(reference, number, nodes)
        got.append(number)
    assert got == sorted(set(got)) and got[-1] == N_REF
    assert len(got) < N_REF, "16 requests against 3 input buffers: some are dropped"


# -- malformed results ----------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, code", [
    ("magic", 0x12345678, RC.KP_ERROR_RECEIVE_INCORRECT_HEADER_STAMP_30),
    ("job_id", 10, RC.KP_ERROR_RECEIVE_JOB_ID_MISMATCH_32),
])
def test_corrupt_header_fails_that_receive_only(setup, reference, field, value, code):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "corrupt_result", "field": field, "value": value, "index": 1})
    for i in (1, 2, 3):
        send(g, i, data)
    check_own(reference, *bypass_receive(g, desc))
    err = expect(code, bypass_receive, g, desc)
    assert isinstance(err.__cause__, DeviceProtocolError)
    number, nodes = bypass_receive(g, desc)
    assert number == 3
    check_own(reference, number, nodes)


@pytest.mark.parametrize("keep", [0, 4, 24, 100, 344, 348, 360, 400])
def test_short_result_never_reads_past_it(setup, reference, keep):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "truncate_result", "value": keep, "index": 0})
    send(g, 1, data)
    send(g, 2, data)
    with pytest.raises(kp.ApiKPException) as info:
        bypass_receive(g, desc)  # receive, or retrieving a node, refuses the short message
    assert info.value.api_return_code in (RC.KP_ERROR_RECEIVE_INCORRECT_HEADER_STAMP_30,
                                          RC.KP_ERROR_OTHER_99,
                                          RC.KP_ERROR_INVALID_PARAM_12), info.value.detail
    number, nodes = bypass_receive(g, desc)
    assert number == 2
    check_own(reference, number, nodes)


# KL520 payload: u32 node count at 344, then per node H, C, W, radix, f32 scale, layout.
@pytest.mark.parametrize("offset, value", [
    (344, 0), (344, 3), (344, 0xFFFFFFFF),            # node count
    (348, 0xFFFF), (348, 0x7FFFFFFF), (348, 0),        # node 0 height
    (352, 1000), (356, 0xFFFFFFFF),                    # node 0 channel, width
    (372 + 4, 0xFFFFFFFF),                             # node 1 channel
])
def test_bad_node_table_is_refused(setup, reference, offset, value):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "corrupt_result", "offset": offset, "value": value, "index": 0})
    send(g, 1, data)
    send(g, 2, data)
    with pytest.raises(kp.ApiKPException) as info:
        bypass_receive(g, desc)
    assert info.value.api_return_code == RC.KP_ERROR_INVALID_PARAM_12, info.value.detail
    number, nodes = bypass_receive(g, desc)
    assert number == 2
    check_own(reference, number, nodes)


@pytest.mark.parametrize("value", [99, 0xFFFFFFFF])
def test_unknown_node_layout_code_decodes_as_kneron_does(setup, reference, value):
    """An undefined layout code goes through Kneron's generic 16W1C8B branch (what these
    nodes are), so the values are still right; nothing is read past the message."""
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "corrupt_result", "offset": 368, "value": value, "index": 0})
    send(g, 1, data)
    send(g, 2, data)
    for i in (1, 2):
        number, nodes = bypass_receive(g, desc)
        assert number == i
        check_own(reference, number, nodes)


@pytest.mark.parametrize("keep", [24, 100, 344])
def test_short_result_is_refused_at_receive(setup, keep):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "truncate_result", "value": keep, "index": 0})
    send(g, 1, data)
    h = kp.GenericRawBypassPreProcImageHeader(model_id=SMALL_ID)
    with pytest.raises(kp.ApiKPException) as info:
        kp.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, desc)
    assert int(info.value.api_return_code) == 99


def test_result_larger_than_the_receive_buffer(emu, nef, reference):
    """The caller's descriptor says a smaller max_raw_out_size than the device sends: the
    read stops at the buffer (or overflows) and never writes past it."""
    from kp_backend.nef import build_simple_nef

    backend, (dongle,) = emu("KL520")
    g, desc = kp_connect(backend, nef, TIMEOUT_MS)
    try:
        smaller = build_simple_nef("KL520", [{
            "id": SMALL_ID, "inputs": [{"shape": [1, 3, 8, 8], "layout": "4W4C8B", "radix": 7}],
            "outputs": [{"shape": [1, 2, 1, 1], "layout": "16W1C8B", "radix": 4}]}])
        from kp_backend.kp._convert import nef_descriptor
        from kp_backend.nef import read_nef

        small_desc = nef_descriptor(read_nef(smaller))
        assert small_desc.models[0].max_raw_out_size < desc.models[0].max_raw_out_size
        bypass_send(g, 1, payload(1, input_size(nef)))
        h = kp.GenericRawBypassPreProcImageHeader(model_id=SMALL_ID)
        try:
            r = kp.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, small_desc)
        except kp.ApiKPException as exc:
            assert exc.api_return_code == RC.KP_ERROR_USB_OVERFLOW_N8, exc.detail
        else:
            assert len(bytes(r.raw_result)) <= small_desc.models[0].max_raw_out_size
    finally:
        kp.core.disconnect_devices(g)


# -- stalls ---------------------------------------------------------------------------------------
def test_out_endpoint_stall(setup, reference):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "stall", "transfer": "out", "index": 0})
    err = expect(RC.KP_ERROR_SEND_DESC_FAIL_13, send, g, 1, data)
    assert "PIPE" in err.detail or "-9" in err.detail or "pipe" in err.detail.lower()
    roundtrip(g, desc, data, reference, [2, 3])


def test_in_endpoint_stall(setup, reference):
    g, desc, dongle, data = setup
    faults(dongle, {"kind": "stall", "transfer": "in", "index": 0})
    send(g, 1, data)
    expect(RC.KP_ERROR_USB_PIPE_N9, bypass_receive, g, desc)
    number, nodes = bypass_receive(g, desc)
    assert number == 1
    check_own(reference, number, nodes)


# -- KL720 (other result layout: 2248-byte node table) ------------------------------------------
@pytest.fixture(scope="module")
def nef720():
    return small_nef("KL720")


@pytest.fixture
def setup720(emu, nef720):
    backend, (dongle,) = emu("KL720")
    g, desc = kp_connect(backend, nef720, TIMEOUT_MS)
    size = input_size(nef720)
    yield g, desc, dongle, (lambda i: payload(i, size)), backend
    kp.core.disconnect_devices(g)


@pytest.mark.parametrize("rule, code", [
    ({"kind": "corrupt_result", "field": "magic", "value": 0},
     RC.KP_ERROR_RECEIVE_INCORRECT_HEADER_STAMP_30),
    ({"kind": "truncate_result", "value": 1000}, RC.KP_ERROR_OTHER_99),
    ({"kind": "corrupt_result", "offset": 348, "value": 41}, RC.KP_ERROR_INVALID_PARAM_12),
    ({"kind": "corrupt_result", "offset": 348, "value": 0xFFFFFFFF}, RC.KP_ERROR_INVALID_PARAM_12),
    # node 0 entry at 352: start offset, buffer length, ..., H at +32, W at +36, C at +40
    ({"kind": "corrupt_result", "offset": 352, "value": 0x7FFFFFFF}, RC.KP_ERROR_INVALID_PARAM_12),
    ({"kind": "corrupt_result", "offset": 352 + 32, "value": 0x7FFFFFFF},
     RC.KP_ERROR_INVALID_PARAM_12),
    ({"kind": "corrupt_result", "offset": 352 + 36, "value": 0xFFFFFFFF},
     RC.KP_ERROR_INVALID_PARAM_12),
], ids=["magic", "short", "count_41", "count_neg", "start", "height", "width"])
def test_kl720_malformed_result(setup720, rule, code):
    g, desc, dongle, data, _ = setup720
    clean = []
    for i in (1, 2):
        send(g, i, data)
        clean.append(bypass_receive(g, desc))
    faults(dongle, dict(rule, index=0))
    send(g, 3, data)
    send(g, 2, data)  # the same input as request 2: the same outputs
    err = expect(code, bypass_receive, g, desc, named=code != RC.KP_ERROR_INVALID_PARAM_12)
    assert "node" in err.detail or "magic" in err.detail
    number, nodes = bypass_receive(g, desc)
    assert number == 2
    for want, have in zip(clean[1][1], nodes, strict=True):
        np.testing.assert_array_equal(have, want)


def test_kl720_unplug_and_back(setup720, nef720):
    g, desc, dongle, data, backend = setup720
    send(g, 1, data)
    assert bypass_receive(g, desc)[0] == 1
    dongle.unplug()
    expect(RC.KP_ERROR_SEND_DESC_FAIL_13, send, g, 2, data)
    expect(RC.KP_ERROR_USB_NO_DEVICE_N4, bypass_receive, g, desc)
    dongle.reboot()
    assert wait_until(lambda: dongle.state != "absent", 5)
    g2, desc2 = kp_connect(backend, nef720, TIMEOUT_MS)
    try:
        send(g2, 5, data)
        assert bypass_receive(g2, desc2)[0] == 5
    finally:
        kp.core.disconnect_devices(g2)
