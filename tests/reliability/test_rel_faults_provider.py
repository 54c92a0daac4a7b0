"""Fault matrix for the Kneron execution provider (``kp_runtime.InferenceSession`` with
``providers=[("kneron", {"device": "virtual:..."})]``), digits model with its ONNX twin.

Each case: a typed ``DeviceError`` subclass whose message names the dongle and the cause,
within ``timeout_ms``; every submitted request resolves (never a hang) with its own outputs
(bit-equal to a clean run of its own input) or its own error; the session (or a new one
after the dongle is back) works afterwards. See ``docs/reliability.md``.
"""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np
import pytest

import kp_runtime as ort
from kp_backend.emulator import FaultPlan
from kp_runtime.errors import (DeviceDisconnected, DeviceError, DeviceProtocolError,
                               DeviceTimeout)

from rel_helpers import DIGITS, digits_data, wait_until

NEF = DIGITS / "digits_cnn.nef"
TIMEOUT_MS = 1000
N = 12


def kneron(device, **options):
    return ort.InferenceSession(str(NEF), providers=[("kneron", {"device": device, **options})])


def dongles(device):
    from kp_backend import emulator

    return emulator.get_shared_virtual_backend(device.partition(":")[2]).dongles


@pytest.fixture(scope="module")
def x():
    images, _ = digits_data.load_test_set()
    return digits_data.to_model_input(images)[:N + 8]


@pytest.fixture(scope="module")
def reference(x):
    from kp_backend import emulator

    spec = "KL520:fast:kn=5E1FFFFF"
    try:
        with kneron("virtual:" + spec) as s:
            return [s.run(None, {"input": v})[0] for v in x]
    finally:
        emulator.get_shared_virtual_backend(spec).close()


@pytest.fixture
def session(virtual):
    """``(session, dongle)``: a fresh dongle, timeout 1 s."""
    device = virtual()
    with kneron(device, timeout_ms=str(TIMEOUT_MS)) as s:
        yield s, dongles(device)[0]


def submit_all(s, x, n=N):
    return [s._psess.submit({"input": x[i]}, None) for i in range(n)]


def outcomes(futures, reference, budget_s=TIMEOUT_MS / 1000 * 3 + 2):
    """Wait (bounded) for every future; each is its own result or a named DeviceError."""
    done, not_done = concurrent.futures.wait(futures, timeout=budget_s)
    assert not not_done, f"{len(not_done)} requests never completed (lost)"
    errors = {}
    for i, f in enumerate(futures):
        exc = f.exception()
        if exc is None:
            np.testing.assert_array_equal(f.result()[0], reference[i])
        else:
            assert isinstance(exc, DeviceError), repr(exc)
            assert "port 1-2-3 (id 393)" in str(exc) or "port" in str(exc), str(exc)
            errors[i] = exc
    return errors


def still_works(s, x, reference, indices=(N, N + 1, N + 2)):
    for i in indices:
        np.testing.assert_array_equal(s.run(None, {"input": x[i]})[0], reference[i])


def install(dongle, *rules):
    dongle.faults = FaultPlan(list(rules))


# -- timeouts ---------------------------------------------------------------------------------
# A digits request is three OUT transfers: 36-byte header, 512-byte data, fake ZLP.
def test_send_timeout_header(session, x, reference):
    s, dongle = session
    install(dongle, {"kind": "timeout", "transfer": "out", "index": 3})  # 2nd request's header
    errors = outcomes(submit_all(s, x), reference)
    assert list(errors) == [1] and isinstance(errors[1], DeviceTimeout)
    assert "header" in str(errors[1]) and "port 1-2-3" in str(errors[1])
    still_works(s, x, reference)


def test_send_timeout_data(session, x, reference):
    s, dongle = session
    install(dongle, {"kind": "timeout", "transfer": "out", "index": 4})  # 2nd request's data
    errors = outcomes(submit_all(s, x), reference)
    assert isinstance(errors[1], DeviceTimeout) and "data" in str(errors[1])
    # The dongle holds a header without its data: the next request is eaten by the resync
    # and fails with its own error; none gets another's result (checked by outcomes).
    assert set(errors) <= {1, 2}
    still_works(s, x, reference)


def test_receive_timeout_injected(session, x, reference):
    s, dongle = session
    install(dongle, {"kind": "timeout", "transfer": "in", "index": 0})
    errors = outcomes(submit_all(s, x), reference)
    assert errors and all(isinstance(e, DeviceTimeout) for e in errors.values())
    still_works(s, x, reference)


def test_result_never_comes(session, x, reference):
    s, dongle = session
    install(dongle, {"kind": "drop_result", "index": 0})
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"port 1-2-3 \(id 393\): no inference result "
                                            r"within 1000 ms"):
        s.run(None, {"input": x[0]})
    assert time.monotonic() - t0 < TIMEOUT_MS / 1000 + 1.0
    still_works(s, x, reference)


def test_npu_timeout_status(session, x, reference):
    s, dongle = session
    install(dongle, {"kind": "npu_timeout", "index": 3})
    errors = outcomes(submit_all(s, x), reference)
    assert list(errors) == [3] and "103" in str(errors[3])


# -- the dongle leaves the bus ----------------------------------------------------------------
@pytest.mark.parametrize("when", ["send", "receive", "between"])
def test_unplug(virtual, x, reference, when):
    device = virtual()
    with kneron(device, timeout_ms="5000") as s:
        (dongle,) = dongles(device)
        if when == "between":
            still_works(s, x, reference, (0, 1))
            dongle.unplug()
            t0 = time.monotonic()
            with pytest.raises(DeviceDisconnected, match=r"port 1-2-3 \(id 393\)"):
                s.run(None, {"input": x[2]})
            assert time.monotonic() - t0 < 2
            futures = []
        else:
            # "send": the dongle is full (slow NPU) so a send is blocked when it goes;
            # "receive": requests wait for results in the NPU when it goes.
            install(dongle, {"kind": "slow_npu", "seconds": 0.2 if when == "send" else 0.5})
            futures = submit_all(s, x)
            time.sleep(0.3)
            t0 = time.monotonic()
            dongle.unplug()
            errors = outcomes(futures, reference, budget_s=3)
            assert time.monotonic() - t0 < 3
            assert errors and all(isinstance(e, DeviceDisconnected) for e in errors.values())
            with pytest.raises(DeviceDisconnected):
                s.run(None, {"input": x[2]})
        dongle.faults = FaultPlan()
        dongle.reboot()  # plugged in again
        assert wait_until(lambda: dongle.state != "absent", 5)
    with kneron(device, timeout_ms="5000") as again:  # a new session reopens the dongle
        still_works(again, x, reference)


def test_dongle_reboots_by_itself(virtual, x, reference):
    device = virtual()
    with kneron(device, timeout_ms="5000") as s:
        (dongle,) = dongles(device)
        install(dongle, {"kind": "slow_npu", "seconds": 0.1})
        futures = submit_all(s, x)
        time.sleep(0.15)
        dongle.reboot(join=False)
        errors = outcomes(futures, reference, budget_s=3)
        assert errors and all(isinstance(e, DeviceDisconnected) for e in errors.values())
        dongle.faults = FaultPlan()
        assert wait_until(lambda: dongle.state != "absent", 5)
    with kneron(device, timeout_ms="5000") as again:
        still_works(again, x, reference)


def test_same_session_after_the_dongle_is_back(virtual, x, reference):
    device = virtual()
    with kneron(device, timeout_ms="5000") as s:
        (dongle,) = dongles(device)
        dongle.unplug()
        with pytest.raises(DeviceDisconnected):
            s.run(None, {"input": x[0]})
        with pytest.raises(DeviceDisconnected):  # still off the bus: fails at once
            s.run(None, {"input": x[0]})
        dongle.reboot()  # plugged in again: the session reconnects and reloads by itself
        assert wait_until(lambda: dongle.state != "absent", 5)
        still_works(s, x, reference)


def test_two_sessions_share_the_reopened_dongle(virtual, x, reference):
    device = virtual()
    with kneron(device, timeout_ms="5000") as a, kneron(device, timeout_ms="5000") as b:
        (dongle,) = dongles(device)
        still_works(a, x, reference, (0,))
        dongle.unplug()
        dongle.reboot()
        assert wait_until(lambda: dongle.state != "absent", 5)
        # Nothing ran while it was away: the first request finds the old handle gone
        # (its own DeviceDisconnected); the next one reopens the dongle for both sessions.
        with pytest.raises(DeviceDisconnected):
            a.run(None, {"input": x[0]})
        still_works(a, x, reference)
        still_works(b, x, reference)
        assert a._psess._handles[0][0] is b._psess._handles[0][0]


# -- FIFO reset, frame drop -------------------------------------------------------------------
def test_fifo_reset_while_requests_are_in_flight(session, x, reference):
    """Another process (or a firmware hiccup) resets the dongle's queues: the requests whose
    results were discarded time out with their own DeviceTimeout, the rest complete."""
    s, dongle = session
    install(dongle, {"kind": "slow_npu", "seconds": 0.05})
    futures = submit_all(s, x)
    time.sleep(0.08)
    assert dongle.firmware.control(0x80, 0, 0) == "ack"
    errors = outcomes(futures, reference)
    assert errors
    # discarded results: DeviceTimeout, or DeviceProtocolError as soon as a later one arrives
    assert all(isinstance(e, (DeviceTimeout, DeviceProtocolError)) for e in errors.values())
    dongle.faults = FaultPlan()
    still_works(s, x, reference)


def test_frame_drop_under_load(virtual, x, reference):
    device = virtual()
    with kneron(device, timeout_ms="2000", frame_drop="true", in_flight=str(N)) as s:
        (dongle,) = dongles(device)
        install(dongle, {"kind": "slow_npu", "seconds": 0.02, "count": 1000})
        errors = outcomes(submit_all(s, x), reference, budget_s=10)
        assert errors, "12 requests against 3 input buffers: some are dropped"
        assert all("dropped by the device (frame_drop)" in str(e) for e in errors.values())


# -- malformed results --------------------------------------------------------------------------
@pytest.mark.parametrize("rule", [
    {"kind": "corrupt_result", "field": "magic", "value": 0x12345678, "index": 4},
    {"kind": "corrupt_result", "field": "job_id", "value": 10, "index": 4},
    {"kind": "truncate_result", "value": 400, "index": 4},
    {"kind": "truncate_result", "value": 100, "index": 4},
    {"kind": "corrupt_result", "offset": 344, "value": 0xFFFFFFFF, "index": 4},
    {"kind": "corrupt_result", "offset": 348, "value": 0x7FFFFFFF, "index": 4},
    {"kind": "corrupt_result", "field": "product_id", "value": 0x999, "index": 4},
], ids=["magic", "job_id", "short_400", "short_100", "node_count", "node_height", "product"])
def test_malformed_result_fails_that_request_only(session, x, reference, rule):
    s, dongle = session
    install(dongle, rule)
    errors = outcomes(submit_all(s, x), reference)
    assert list(errors) == [4], errors
    assert isinstance(errors[4], DeviceProtocolError) or "DeviceProtocolError" in repr(errors[4])
    still_works(s, x, reference)


# -- stalls -------------------------------------------------------------------------------------
@pytest.mark.parametrize("transfer, index, allowed", [
    ("out", 3, {1}),        # 2nd request's header: nothing reached the dongle
    ("out", 4, {1, 2}),     # its data: the dongle resynchronises on the next request
    ("out", 2, {0, 1}),     # 1st request's fake ZLP
    ("in", 2, {2}),
])
def test_endpoint_stall(session, x, reference, transfer, index, allowed):
    s, dongle = session
    install(dongle, {"kind": "stall", "transfer": transfer, "index": index})
    errors = outcomes(submit_all(s, x), reference)
    assert errors and set(errors) <= allowed, errors
    first = errors[min(errors)]
    assert "Pipe" in str(first) or "PIPE" in str(first), str(first)
    still_works(s, x, reference)


def test_stuck_npu_every_request_resolves_within_its_timeout(virtual, x, reference):
    """The NPU stops for 1.5 s (three jobs of 0.5 s) while 12 requests are submitted with a
    300 ms timeout: the dongle fills up, sends block and time out, pending results time
    out; every future resolves in bounded time, and the dongle serves again afterwards."""
    device = virtual()
    with kneron(device, timeout_ms="300") as s:
        (dongle,) = dongles(device)
        install(dongle, {"kind": "slow_npu", "seconds": 0.5})
        t0 = time.monotonic()
        errors = outcomes(submit_all(s, x), reference, budget_s=12 * 0.3 + 3)
        assert time.monotonic() - t0 < 12 * 0.3 + 3
        assert errors and all(isinstance(e, DeviceTimeout) for e in errors.values())
        dongle.faults = FaultPlan()
        assert dongle.settle(5)
        time.sleep(0.3)
        still_works(s, x, reference)
