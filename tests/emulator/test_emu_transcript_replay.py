"""Replay the host side of every golden USB transcript into a fresh virtual dongle and
require the device side to match byte for byte.

The host's calls go through real pyusb (``usb.core.find``, ``dev.write``, ``dev.read``,
``dev.ctrl_transfer``, ``usb.util.get_string``) on a :class:`VirtualUsbBackend`; the dongle
is configured like the transcript's (chip, boot state, KN 0x1A2B3C4D, bus 1 ports 2-3) and
computes outputs with the transcripts' documented test pattern. Compared: every descriptor
and string, the status and byte count of every transfer, and every IN byte. OUT bytes are
the transcript's own (volatile ranges are the host's business, not compared here).

After each call the replay waits until the dongle has settled (nothing can progress without
the host), which makes frame dropping and queue blocking deterministic; calls the transcript
records as timing out are replayed with a short timeout, since only their outcome matters.
"""

from __future__ import annotations

import threading
import time

import pytest
import usb.core
import usb.util

from _shared import shared_file
from transcripts import TRANSCRIPT_DIR, Call, load_transcript, transcript_params

from kp_backend.emulator import VirtualDongle, VirtualUsbBackend
from kp_backend.protocol.constants import VENDOR_ID

TIMEOUT_CAP_MS = 10_000  # replaces "infinite" (0) so a regression fails instead of hanging
EXPECTED_TIMEOUT_MS = 60
SETTLE_S = 5.0


def dongle_for(options: dict) -> VirtualDongle:
    chip = options.get("chip", "kl520").upper()
    boot = options.get("boot")
    kwargs = {"boot": "usb", "firmware_loaded": True}  # the README's default: KL520 USB boot, 0x00B0
    if boot == "flash":
        kwargs = {"boot": "flash"}
    elif boot == "loader":
        kwargs = {"boot": "usb"}
    return VirtualDongle(chip, port=(1, (2, 3)), kn_number=0x1A2B3C4D, timing="fast",
                         compute="transcript_pattern", **kwargs)


class Replayer:
    def __init__(self, backend: VirtualUsbBackend, dongle: VirtualDongle) -> None:
        self.backend = backend
        self.dongle = dongle
        self.handles: dict[int, usb.core.Device] = {}
        self.errors: list[str] = []

    def fail(self, call: Call, text: str) -> None:
        self.errors.append(f"seq {call.seq} ({call.fn}, thread {call.thread}): {text}")

    def find(self, wait_s: float = 3.0) -> usb.core.Device | None:
        deadline = time.monotonic() + wait_s
        while True:
            dev = usb.core.find(idVendor=VENDOR_ID, backend=self.backend)
            if dev is not None or time.monotonic() > deadline:
                return dev
            time.sleep(0.005)

    def expect_status(self, call: Call, status: int, transferred: int | None = None) -> None:
        if status != call.status:
            self.fail(call, f"status {status}, transcript {call.status}")
        if transferred is not None and call.transferred is not None and transferred != call.transferred:
            self.fail(call, f"transferred {transferred}, transcript {call.transferred}")

    def timeout(self, call: Call) -> int:
        if call.status == -7:
            return min(call.timeout_ms or EXPECTED_TIMEOUT_MS, EXPECTED_TIMEOUT_MS)
        return call.timeout_ms or TIMEOUT_CAP_MS

    def run(self, call: Call) -> None:
        fn = call.fn.removeprefix("libusb_")
        getattr(self, f"do_{fn}", self.do_nothing)(call)

    def do_nothing(self, call: Call) -> None:
        pass

    def do_get_device_list(self, call: Call) -> None:
        if call.devices:
            if self.find() is None:
                self.fail(call, "the dongle is not on the bus")

    def do_get_device_descriptor(self, call: Call) -> None:
        if self.dongle.device_descriptor() != call.data:
            self.fail(call, f"device descriptor {self.dongle.device_descriptor().hex()}, "
                            f"transcript {call.data.hex()}")

    def do_get_config_descriptor(self, call: Call) -> None:
        if self.dongle.config_descriptor() != call.data:
            self.fail(call, "configuration descriptor differs")

    def do_get_device_speed(self, call: Call) -> None:
        dev = self.find()
        if dev is None or dev.speed != call.status:
            self.fail(call, f"speed {getattr(dev, 'speed', None)}, transcript {call.status}")

    def do_get_bus_number(self, call: Call) -> None:
        dev = self.find()
        if dev is None or dev.bus != call.status:
            self.fail(call, "bus number differs")

    def do_get_port_numbers(self, call: Call) -> None:
        dev = self.find()
        if dev is None or list(dev.port_numbers) != call.ports:
            self.fail(call, f"ports {getattr(dev, 'port_numbers', None)}, transcript {call.ports}")

    def do_open(self, call: Call) -> None:
        dev = self.find()
        if dev is None:
            self.fail(call, "nothing to open")
            return
        dev._ctx.managed_open()
        self.handles[call.handle] = dev

    def do_close(self, call: Call) -> None:
        dev = self.handles.pop(call.handle, None)
        if dev is not None:
            usb.util.dispose_resources(dev)

    def do_attach_kernel_driver(self, call: Call) -> None:
        try:
            self.handles[call.handle].attach_kernel_driver(call.interface)
            status = 0
        except usb.core.USBError as exc:
            status = exc.backend_error_code
        self.expect_status(call, status)

    def do_get_string_descriptor_ascii(self, call: Call) -> None:
        text = usb.util.get_string(self.handles[call.handle], call.index)
        got = text.encode("ascii")[: call.length - 1]
        if got != call.data or len(got) != call.status:
            self.fail(call, f"string {got!r}, transcript {call.data!r}")

    def do_get_configuration(self, call: Call) -> None:
        value = self.handles[call.handle].ctrl_transfer(0x80, 0x08, 0, 0, 1)
        if list(value) != [call.value]:
            self.fail(call, f"configuration {list(value)}, transcript {call.value}")

    def do_set_configuration(self, call: Call) -> None:
        self.handles[call.handle].set_configuration(call.value)

    def do_claim_interface(self, call: Call) -> None:
        usb.util.claim_interface(self.handles[call.handle], call.interface)

    def do_control_transfer(self, call: Call) -> None:
        dev = self.handles[call.handle]
        try:
            dev.ctrl_transfer(call.bmRequestType, call.bRequest, call.wValue, call.wIndex,
                              None, self.timeout(call))
            status = 0
        except usb.core.USBError as exc:
            status = exc.backend_error_code
        self.expect_status(call, status)

    def do_bulk_transfer(self, call: Call) -> None:
        dev = self.handles[call.handle]
        try:
            if call.direction == "out":
                if call.data is None:
                    pytest.skip(f"seq {call.seq}: abbreviated upload {call.sha256} has no "
                                "matching NEF piece in ../shared/models/nef")
                n = dev.write(call.endpoint, call.data, self.timeout(call))
                self.expect_status(call, 0, n)
                return
            data = bytes(dev.read(call.endpoint, call.length, self.timeout(call)))
            self.expect_status(call, 0, len(data))
            if call.data is not None and data != call.data:
                diff = next((i for i, (a, b) in enumerate(zip(data, call.data)) if a != b),
                            min(len(data), len(call.data)))
                self.fail(call, f"IN bytes differ from byte {diff} (len {len(data)} vs "
                                f"{len(call.data)}): got {data[diff:diff + 16].hex()}, "
                                f"transcript {call.data[diff:diff + 16].hex()}")
        except usb.core.USBError as exc:
            self.expect_status(call, exc.backend_error_code, 0)


def replay(path) -> list[str]:
    transcript = load_transcript(path)
    dongle = dongle_for(transcript.device_options)
    backend = VirtualUsbBackend([dongle])
    replayer = Replayer(backend, dongle)
    try:
        calls = list(transcript.calls)
        i = 0
        while i < len(calls):
            if calls[i].thread == 0:
                replayer.run(calls[i])
                dongle.settle(SETTLE_S)
                i += 1
                continue
            j = i
            while j < len(calls) and calls[j].thread != 0:
                j += 1
            by_thread: dict[int, list[Call]] = {}
            for call in sorted(calls[i:j], key=lambda c: c.issued):
                by_thread.setdefault(call.thread, []).append(call)
            workers = [threading.Thread(target=lambda cs=cs: [replayer.run(c) for c in cs])
                       for cs in by_thread.values()]
            for w in workers:
                w.start()
            for w in workers:
                w.join(60)
            dongle.settle(SETTLE_S)
            i = j
    finally:
        for dev in replayer.handles.values():
            usb.util.dispose_resources(dev)
        backend.close()
    return replayer.errors


@pytest.mark.parametrize("path", transcript_params())
def test_replay_matches_transcript(path):
    path = shared_file(path, "/".join(TRANSCRIPT_DIR))
    errors = replay(path)
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors[:20])
