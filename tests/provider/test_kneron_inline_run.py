"""``run`` on an idle dongle exchanges in the calling thread (``DeviceWorker.run_inline``):
same results and failures as the threaded path, exclusive while it lasts, and requests
submitted meanwhile go right after it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kp_runtime.errors import DeviceTimeout
from kp_backend.emulator import FaultPlan
from kp_backend.usb.transport import UsbTransport

from kneron_helpers import dongles, kneron, provider_session


@pytest.fixture
def transfer_threads(monkeypatch):
    """Names of the threads that made each bulk write and read (the calls go through)."""
    seen: list[tuple[str, str]] = []
    write, read = UsbTransport.write, UsbTransport.read

    def spy_write(self, data, timeout_ms):
        seen.append(("write", threading.current_thread().name))
        return write(self, data, timeout_ms)

    def spy_read(self, size, timeout_ms):
        seen.append(("read", threading.current_thread().name))
        return read(self, size, timeout_ms)

    monkeypatch.setattr(UsbTransport, "write", spy_write)
    monkeypatch.setattr(UsbTransport, "read", spy_read)
    return seen


def _reference(digits, virtual, n):
    with kneron(digits["nef"], device=virtual()) as s:
        return [f.result(10)[0] for f in [s.submit({"input": x}) for x in digits["x"][:n]]]


def test_run_on_an_idle_dongle_uses_the_calling_thread(digits, virtual, transfer_threads):
    want = _reference(digits, virtual, 4)
    with kneron(digits["nef"], device=virtual()) as s:
        transfer_threads.clear()
        got = [s.run(None, {"input": x})[0] for x in digits["x"][:4]]
        inline = list(transfer_threads)
        transfer_threads.clear()
        queued = s.submit({"input": digits["x"][0]}).result(10)[0]
        threaded = list(transfer_threads)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(queued, want[0])
    me = threading.current_thread().name
    assert inline and {name for _, name in inline} == {me}
    assert {kind for kind, _ in inline} == {"write", "read"}
    assert all(name.startswith(("kneron-send-", "kneron-recv-")) for _, name in threaded)


def test_requests_submitted_during_an_inline_run_go_after_it(digits, virtual):
    want = _reference(digits, virtual, 6)
    device = virtual()
    with kneron(digits["nef"], device=device) as s:
        dongles(device)[0].faults = FaultPlan([{"kind": "slow_npu", "seconds": 0.2}])
        out: dict[str, object] = {}
        runner = threading.Thread(target=lambda: out.update(run=s.run(None, {
            "input": digits["x"][0]})))
        runner.start()
        worker = provider_session(s)._handles[0][0].worker
        deadline = time.monotonic() + 5
        while not worker._inline and time.monotonic() < deadline:
            time.sleep(0.001)
        assert worker._inline, "the run did not start inline"
        futures = [s.submit({"input": x}) for x in digits["x"][1:6]]  # wait behind it
        runner.join(10)
        results = [f.result(10)[0] for f in futures]
    np.testing.assert_array_equal(out["run"][0], want[0])
    for got, expected in zip(results, want[1:]):
        np.testing.assert_array_equal(got, expected)


def test_runs_from_many_threads_each_get_their_own_result(digits, virtual):
    n = 12
    want = _reference(digits, virtual, n)
    errors: list[BaseException] = []

    def worker(session, offset):
        try:
            for k in range(30):
                i = (offset + k) % n
                if k % 5 == 4:
                    got = session.submit({"input": digits["x"][i]}).result(10)[0]
                else:
                    got = session.run(None, {"input": digits["x"][i]})[0]
                np.testing.assert_array_equal(got, want[i])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    with kneron(digits["nef"], device=virtual()) as s:
        threads = [threading.Thread(target=worker, args=(s, t)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors[0]


def test_close_waits_for_an_inline_run(digits, virtual):
    want = _reference(digits, virtual, 1)
    device = virtual()
    s = kneron(digits["nef"], device=device)
    dongles(device)[0].faults = FaultPlan([{"kind": "slow_npu", "seconds": 0.2}])
    out: dict[str, object] = {}

    def run():
        try:
            out["run"] = s.run(None, {"input": digits["x"][0]})
        except BaseException as exc:  # noqa: BLE001 - checked below
            out["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    worker = provider_session(s)._handles[0][0].worker
    deadline = time.monotonic() + 5
    while not worker._inline and time.monotonic() < deadline:
        time.sleep(0.001)
    s.close()
    runner.join(10)
    assert "error" not in out, out.get("error")
    np.testing.assert_array_equal(out["run"][0], want[0])


def test_an_inline_timeout_fails_that_run_only_and_the_late_result_is_dropped(digits, virtual):
    want = _reference(digits, virtual, 3)
    device = virtual()
    # the late result comes 0.5 s into the next run's wait: far inside its timeout
    with kneron(digits["nef"], device=device, timeout_ms="1000") as s:
        dongle = dongles(device)[0]
        dongle.faults = FaultPlan([{"kind": "slow_npu", "seconds": 1.5}])
        with pytest.raises(DeviceTimeout, match="no inference result within 1000 ms"):
            s.run(None, {"input": digits["x"][0]})
        dongle.faults = FaultPlan()  # the first NPU run is still slow
        # the first result arrives late and names a failed request: it must not be taken
        # for the next one's
        for i in (1, 2):
            np.testing.assert_array_equal(s.run(None, {"input": digits["x"][i]})[0], want[i])
