"""Pipelining (submit, run_async, run_many, several dongles) and device errors as typed
exceptions: no device, timeout, unplugged dongle, frame drop, a second NEF."""

from __future__ import annotations

import concurrent.futures
import threading

import numpy as np
import pytest

import kp_runtime as ort
from kp_runtime.errors import (
    DeviceDisconnected, DeviceError, DeviceNotFound, DeviceTimeout, EPFail)
from kp_backend.emulator import FaultPlan
from kp_backend.provider.build_nef import build_nef

from kneron_helpers import DIGITS, dongles, kneron, provider_session


@pytest.fixture(scope="module")
def reference(digits):
    """Outputs of the first 24 test images on one virtual dongle (one run at a time)."""
    from kp_backend import emulator

    spec = "KL520:fast:kn=7E57FFFF"
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KP_VIRTUAL_DEVICES", spec)
            with kneron(digits["nef"], device="virtual:" + spec) as s:
                return [s.run(None, {"input": x})[0] for x in digits["x"][:24]]
    finally:
        emulator.get_shared_virtual_backend(spec).close()


def _feeds(digits, n):
    return [{"input": x} for x in digits["x"][:n]]


def test_submit_run_async_and_run_many_on_two_dongles(digits, virtual, reference):
    device = virtual("2xKL520")
    with kneron(digits["nef"], device=device) as s:
        assert len(provider_session(s).devices) == 2 and provider_session(s).in_flight == [6, 6]
        results = list(s.run_many(_feeds(digits, 24)))
        futures = [s.submit(f) for f in _feeds(digits, 24)]
        done = threading.Event()
        got = {}

        def callback(outputs, user_data, err):
            got.update(outputs=outputs, user_data=user_data, err=err)
            done.set()

        s.run_async(None, {"input": digits["x"][3]}, callback, "tag")
        assert done.wait(10)
        submitted = [f.result(10) for f in futures]
        counts = provider_session(s).completed
    for want, have, other in zip(reference, results, submitted):
        np.testing.assert_array_equal(have[0], want)
        np.testing.assert_array_equal(other[0], want)
    assert got["err"] == "" and got["user_data"] == "tag"
    np.testing.assert_array_equal(got["outputs"][0], reference[3])
    assert sorted(counts.values()) == [24, 25]  # round-robin over both dongles


def test_in_flight_option(digits, virtual, reference):
    with kneron(digits["nef"], device=virtual(), in_flight="2") as s:
        assert provider_session(s).in_flight == [2]
        for want, have in zip(reference, s.run_many(_feeds(digits, 10))):
            np.testing.assert_array_equal(have[0], want)


def test_no_device(digits, virtual, monkeypatch):
    monkeypatch.setenv("KP_VIRTUAL_DEVICES", virtual("KL720").partition(":")[2])
    with pytest.raises(DeviceNotFound, match="no KL520 dongle found"):
        kneron(digits["nef"])  # device auto, only a KL720 on the bus
    with pytest.raises(DeviceNotFound, match="port id 4242"):
        kneron(digits["nef"], device="4242")


def test_auto_uses_the_configured_virtual_dongles(digits, virtual, monkeypatch, reference):
    monkeypatch.setenv("KP_VIRTUAL_DEVICES", virtual().partition(":")[2])
    with ort.InferenceSession(str(digits["nef"])) as s:  # no providers: Kneron for a NEF
        assert s.get_providers() == ["KneronExecutionProvider"]
        np.testing.assert_array_equal(s.run(None, {"input": digits["x"][0]})[0], reference[0])


def test_timeout_fails_the_request_then_the_dongle_recovers(digits, virtual, reference):
    device = virtual()
    with kneron(digits["nef"], device=device, timeout_ms="300") as s:
        dongles(device)[0].faults = FaultPlan([{"kind": "drop_result", "index": 0}])
        with pytest.raises(DeviceTimeout, match="port .* no inference result within 300 ms"):
            s.run(None, {"input": digits["x"][0]})
        np.testing.assert_array_equal(s.run(None, {"input": digits["x"][1]})[0], reference[1])


def test_unplugged_dongle_fails_its_requests_only(digits, virtual, reference):
    device = virtual("2xKL520")
    with kneron(digits["nef"], device=device) as s:
        first, second = dongles(device)
        second.faults = FaultPlan([{"kind": "slow_npu", "seconds": 0.05}])
        futures = [s.submit(f) for f in _feeds(digits, 16)]  # even -> first, odd -> second
        futures[0].result(10)
        second.unplug()
        outcomes = [f.exception(10) for f in futures]
        after = s.run(None, {"input": digits["x"][2]})  # the live dongle keeps serving
    for i, (fut, error) in enumerate(zip(futures, outcomes)):
        if i % 2 == 0:
            assert error is None
            np.testing.assert_array_equal(fut.result()[0], reference[i])
        elif error is not None:
            assert isinstance(error, DeviceDisconnected)
    assert any(isinstance(e, DeviceDisconnected) for e in outcomes[1::2])
    np.testing.assert_array_equal(after[0], reference[2])


def test_frame_drop_fails_dropped_requests_and_never_mixes_results(digits, virtual, reference):
    device = virtual()
    with kneron(digits["nef"], device=device, frame_drop="true", in_flight="24") as s:
        dongles(device)[0].faults = FaultPlan([{"kind": "slow_npu", "seconds": 0.02,
                                                "count": 1000}])
        futures = [s.submit(f) for f in _feeds(digits, 24)]
        concurrent.futures.wait(futures, timeout=20)
    dropped = [f for f in futures if f.exception() is not None]
    assert dropped, "with 24 requests against 3 input buffers some must be dropped"
    for fut in dropped:
        assert isinstance(fut.exception(), DeviceError)
        assert "dropped by the device (frame_drop)" in str(fut.exception())
    for i, fut in enumerate(futures):
        if fut.exception() is None:
            np.testing.assert_array_equal(fut.result()[0], reference[i])


def test_second_nef_needs_allow_reload(digits, virtual, tmp_path, reference):
    other = tmp_path / "digits_id7.nef"
    other.write_bytes(build_nef(digits["onnx"], "KL520", DIGITS / "calibration.npz",
                                model_id=7))
    (tmp_path / "digits_id7.onnx").write_bytes(digits["onnx"].read_bytes())
    device = virtual()
    with kneron(digits["nef"], device=device) as first:
        with pytest.raises(EPFail, match="allow_reload=True"):
            kneron(other, device=device)
        with kneron(other, device=device, allow_reload="true") as second:
            np.testing.assert_array_equal(second.run(None, {"input": digits["x"][4]})[0],
                                          reference[4])
            with pytest.raises(EPFail, match="replaced"):
                first.run(None, {"input": digits["x"][4]})
    # all closed: the dongle is free for either NEF again
    with kneron(digits["nef"], device=device) as again:
        np.testing.assert_array_equal(again.run(None, {"input": digits["x"][5]})[0],
                                      reference[5])


def test_device_as_a_list_of_port_ids(digits, virtual, monkeypatch, reference):
    spec = virtual("2xKL520").partition(":")[2]
    monkeypatch.setenv("KP_VIRTUAL_DEVICES", spec)
    ports = [d.port_id for d in dongles("virtual:" + spec)]
    with kneron(digits["nef"], device=str(ports)) as s:
        assert len(provider_session(s).devices) == 2
        for want, have in zip(reference, s.run_many(_feeds(digits, 8))):
            np.testing.assert_array_equal(have[0], want)
        assert sorted(provider_session(s).completed.values()) == [4, 4]
    with kneron(digits["nef"], device=str(ports[1])) as s:
        (name,) = provider_session(s).devices
        assert f"(id {ports[1]})" in name


def test_close_waits_for_outstanding_requests(digits, virtual, reference):
    with kneron(digits["nef"], device=virtual()) as s:
        futures = [s.submit(f) for f in _feeds(digits, 12)]
    for want, fut in zip(reference, futures):
        np.testing.assert_array_equal(fut.result(0)[0], want)
