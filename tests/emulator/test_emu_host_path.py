"""The host-thread side of the virtual dongle's endpoints (``kp_backend.emulator.endpoint``):
the caller's buffer is not kept once a transfer returns, blocked transfers are released
promptly by every event that ends them (message, FIFO reset, unplug, reboot), even with no
timeout, and a timed-out write leaves nothing behind."""

from __future__ import annotations

import array
import struct
import threading
import time

import pytest
import usb.core

import _emu_host as host
from _emu_host import KL520_MODEL
from kp_backend.emulator.endpoint import OutEndpoint, TransferError, deadline_after
from kp_backend.protocol.constants import EP_BULK_IN, EP_BULK_OUT, FAKE_ZLP, CommandId
from kp_backend.protocol.wire import BypassRequestHeader, ResultHeader, build_command

KL520_INPUT = 512  # model 7's NPU input bytes
KL520_RESULT = 508
SYSINFO = build_command(CommandId.GET_SYSTEM_INFO)
RELEASE_S = 2.0  # "promptly": far below any timeout involved (there is none)


def ready(emu, nef, inputs=3, results=3, **kw):
    backend, dongle = emu("KL520", **kw)
    dev = host.open_dev(backend)
    assert host.load_model(dev, nef) == 0
    assert host.configure_fifo(dev, inputs=inputs, results=results) == (0, 0)
    return backend, dev, dongle


class Blocked:
    """Run one pyusb call in a thread; its outcome (result or exception) once it ends."""

    def __init__(self, fn, *args) -> None:
        self.outcome: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self.thread.start()

    def _run(self, fn, args) -> None:
        try:
            self.outcome = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def still_blocked(self, seconds: float = 0.05) -> bool:
        self.thread.join(seconds)
        return self.thread.is_alive()

    def ended(self) -> bool:
        self.thread.join(RELEASE_S)
        return not self.thread.is_alive()


def busy_responding(dev) -> None:
    """Leave the firmware answering a command nobody reads: no receive is posted."""
    dev.write(EP_BULK_OUT, SYSINFO, 1000)


def test_callers_buffer_is_free_after_every_kind_of_write(emu):
    backend, dongle = emu("KL520")
    dev = host.open_dev(backend)
    taken_at_once = array.array("B", SYSINFO)  # a receive is posted: moved by the host's thread
    assert dev.write(EP_BULK_OUT, taken_at_once, 1000) == len(SYSINFO)
    taken_at_once.extend(b"more")  # BufferError if the device still held a view of it
    held = array.array("B", FAKE_ZLP)  # the firmware is busy: the endpoint FIFO holds it
    assert dev.write(EP_BULK_OUT, held, 1000) == 4
    held.extend(b"more")
    timed_out = array.array("B", SYSINFO)  # NAKed until the timeout
    with pytest.raises(usb.core.USBTimeoutError) as err:
        dev.write(EP_BULK_OUT, timed_out, 30)
    timed_out.extend(b"more")  # even while the error (and its traceback) is kept
    assert err.value.backend_error_code == -7
    assert len(host.read(dev, 16)) == 16
    # the firmware now takes the held ZLP (a stray message) and the next command
    waiting = array.array("B", SYSINFO)
    late = Blocked(dev.write, EP_BULK_OUT, waiting, 0)
    assert late.ended() and late.outcome == len(SYSINFO)
    waiting.extend(b"more")
    assert len(host.read(dev, 16)) == 16


def test_lone_fake_zlp_is_held_by_value():
    """The early-returning ZLP must not be read from the caller's buffer later."""
    ep = OutEndpoint(threading.RLock(), 512, length_rule=False)
    buf = bytearray(FAKE_ZLP)
    view = memoryview(buf)
    assert ep.host_write(view, deadline_after(1.0)) == 4  # no receive posted: held
    view.release()
    buf[:] = b"\x13\xcd\x67\xab"  # the caller reuses its buffer
    buf.extend(b"grow")
    assert ep.receive(512, deadline_after(1.0)) == b""  # the original ZLP, stripped


def test_timed_out_write_leaves_nothing_behind_in_the_endpoint():
    ep = OutEndpoint(threading.RLock(), 512, length_rule=True)
    with pytest.raises(TransferError) as err:
        ep.host_write(memoryview(b"x" * 100), deadline_after(0.02))
    assert err.value.code == -7 and err.value.transferred == 0
    assert not ep.host_waiting
    assert ep.receive(512, deadline_after(0.02)) is None


def test_timed_out_write_is_not_received_later(emu):
    backend, dongle = emu("KL520")
    dev = host.open_dev(backend)
    busy_responding(dev)
    with pytest.raises(usb.core.USBTimeoutError):
        dev.write(EP_BULK_OUT, SYSINFO, 30)
    assert len(host.read(dev, 16)) == 16
    assert dongle.settle()
    with pytest.raises(usb.core.USBTimeoutError):  # no answer to the withdrawn command
        dev.read(EP_BULK_IN, 16, 50)
    assert len(host.command(dev, CommandId.GET_SYSTEM_INFO, reply=16)) == 16


def test_blocked_write_without_timeout_ends_at_unplug(emu):
    backend, dongle = emu("KL520")
    dev = host.open_dev(backend)
    busy_responding(dev)
    write = Blocked(dev.write, EP_BULK_OUT, SYSINFO, 0)
    assert write.still_blocked()  # NAKed: the firmware has no receive posted
    dongle.unplug()
    assert write.ended()
    assert isinstance(write.error, usb.core.USBError) and write.error.backend_error_code == -4


@pytest.mark.parametrize("how", ["unplug", "reboot", "close"])
def test_blocked_read_without_timeout_ends_when_the_device_goes(emu, how):
    backend, dongle = emu("KL520")
    dev = host.open_dev(backend)
    read = Blocked(dev.read, EP_BULK_IN, 16, 0)
    assert read.still_blocked()
    if how == "unplug":
        dongle.unplug()
    elif how == "reboot":
        assert host.ctrl(dev, 0xFF) == 0
    else:
        backend.close()
    assert read.ended()
    assert isinstance(read.error, usb.core.USBError) and read.error.backend_error_code == -4


def test_read_without_timeout_is_woken_by_the_result(emu, kl520_nef):
    _, dev, _ = ready(emu, kl520_nef, npu_time=0.05)
    read = Blocked(dev.read, EP_BULK_IN, KL520_RESULT, 0)
    assert read.still_blocked()
    host.send_bypass(dev, 5, KL520_MODEL, bytes(KL520_INPUT))
    assert read.ended() and read.error is None
    assert ResultHeader.parse(bytes(read.outcome)).inf_number == 5


def test_write_blocked_on_a_full_device_is_released_by_fifo_reset(emu, kl520_nef):
    _, dev, dongle = ready(emu, kl520_nef, inputs=1, results=1)
    for n in (1, 2):  # 1: its result waits to be read; 2: waits for that result buffer
        host.send_bypass(dev, n, KL520_MODEL, bytes(KL520_INPUT))
    assert dongle.settle()
    header = BypassRequestHeader(3, KL520_MODEL, KL520_INPUT).pack()
    write = Blocked(dev.write, EP_BULK_OUT, header, 0)
    assert write.still_blocked()  # no free input buffer: the header is NAKed
    assert host.ctrl(dev, 0x80) == 0  # frees the result buffer, so an input buffer too
    assert write.ended() and write.error is None and write.outcome == len(header)


def test_fifo_reset_between_request_data_and_its_zlp_discards_the_request(emu, kl520_nef):
    _, dev, dongle = ready(emu, kl520_nef)
    dev.write(EP_BULK_OUT, BypassRequestHeader(1, KL520_MODEL, KL520_INPUT).pack(), 1000)
    dev.write(EP_BULK_OUT, bytes(KL520_INPUT), 1000)  # a packet multiple: the request is open
    assert dongle.settle()
    assert host.ctrl(dev, 0x80) == 0
    assert host.command(dev, CommandId.GET_SYSTEM_INFO, reply=16)[:4] == bytes(4)
    with pytest.raises(usb.core.USBTimeoutError):  # no result for the aborted request
        dev.read(EP_BULK_IN, KL520_RESULT, 50)


def test_pipelined_threads_without_timeouts_never_hang(emu, kl520_nef):
    """A sender and a receiver thread with infinite timeouts: a missed wake-up anywhere on
    either side would stop them."""
    _, dev, dongle = ready(emu, kl520_nef, inputs=2, results=2)
    count = 150
    seen: list[int] = []

    def send() -> None:
        for n in range(count):
            dev.write(EP_BULK_OUT, BypassRequestHeader(n, KL520_MODEL, KL520_INPUT).pack(), 0)
            dev.write(EP_BULK_OUT, array.array("B", bytes([n % 256]) * KL520_INPUT), 0)
            dev.write(EP_BULK_OUT, FAKE_ZLP, 0)

    def receive() -> None:
        for _ in range(count):
            raw = bytes(dev.read(EP_BULK_IN, KL520_RESULT, 0))
            seen.append(struct.unpack_from("<I", raw, 332)[0])

    threads = [threading.Thread(target=f, daemon=True) for f in (send, receive)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, 20 - (time.monotonic() - start)))
    alive = [t for t in threads if t.is_alive()]
    if alive:
        dongle.unplug()  # release them so the test can report instead of hanging
    assert not alive, f"transfers hung after {len(seen)} of {count} results"
    assert seen == list(range(count))
