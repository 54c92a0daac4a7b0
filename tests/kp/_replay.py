"""Replay of a golden USB transcript as a pyusb backend (used only by the fidelity test).

A :class:`ReplayBackend` presents the recorded dongle (descriptors, bus/ports, speed, serial
string) and answers every bulk transfer and vendor control request with the *recorded*
device answer, while recording what the host offered. Transfers are served from three
queues (bulk OUT, bulk IN, vendor controls) in recorded order; each host transfer must
match its queue head (OUT bytes outside the volatile ranges, IN length, control setup, and
timeout). :meth:`ReplayBackend.verify` then checks that every recorded transfer was made,
and in the recorded order per host thread.

Transcripts are parsed by ``tests/transcripts.py`` (shared with the emulator's tests).
"""

from __future__ import annotations

import errno
import hashlib
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import usb.backend
import usb.core

from transcripts import load_transcript, masked

CONNECT_SYSINFO_TIMEOUT_MS = 5000  # kp_backend.device.group: our only timeout deviation
GET_SYSTEM_INFO_REQUEST = bytes.fromhex("13cd67ab") + b"\0\0\0\0" + bytes.fromhex("040a0000")

_ERRNO = {-1: errno.EIO, -2: errno.EINVAL, -3: errno.EACCES, -4: errno.ENODEV, -5: errno.ENOENT,
          -6: errno.EBUSY, -7: errno.ETIMEDOUT, -8: errno.EOVERFLOW, -9: errno.EPIPE,
          -10: errno.EINTR, -11: errno.ENOMEM, -12: errno.ENOSYS}


class ReplayMismatch(AssertionError):
    """The host did something other than what Kneron's library did."""


# --- transcript --------------------------------------------------------------------------
@dataclass
class Event:
    seq: int
    thread: int
    kind: str  # "out", "in", "ctrl"
    endpoint: int = 0
    length: int = 0
    timeout: int = 0
    status: int = 0
    data: bytes | None = None  # OUT offered / IN returned (None: abbreviated, not rebuilt)
    sha256: str | None = None
    volatile: tuple = ()
    setup: tuple[int, int, int, int, int] | None = None

    def describe(self) -> str:
        if self.kind == "ctrl":
            return f"seq {self.seq}: control {self.setup} timeout {self.timeout}"
        return (f"seq {self.seq}: bulk {self.kind} ep 0x{self.endpoint:02X} {self.length} bytes "
                f"timeout {self.timeout} status {self.status}")


class Transcript:
    """One transcript (parsed by ``tests/transcripts.py``) as the transfers to replay."""

    def __init__(self, path: Path) -> None:
        self.t = load_transcript(path)  # abbreviated model uploads rebuilt from the NEFs
        self.name = self.t.scenario
        self.calls = self.t.calls
        self.events: list[Event] = []
        for c in self.calls:
            if c.fn == "libusb_bulk_transfer":
                self.events.append(Event(c.seq, c.thread, c.direction, c.endpoint, c.length,
                                         c.timeout_ms, c.status, c.data, c.sha256, c.volatile))
            elif c.fn == "libusb_control_transfer" and c.bmRequestType == 0x40:
                self.events.append(Event(
                    c.seq, c.thread, "ctrl", timeout=c.timeout_ms, status=c.status,
                    setup=(c.bmRequestType, c.bRequest, c.wValue, c.wIndex, c.wLength)))

    def latest(self, fn: str, before_seq: int):
        """The last call ``fn`` recorded before ``before_seq`` (else the first one)."""
        found = None
        for c in self.calls:
            if c.fn == fn:
                if c.seq < before_seq or found is None:
                    found = c
                if c.seq >= before_seq:
                    break
        if found is None:
            raise KeyError(f"{self.name}: no {fn} recorded")
        return found

    def firmware_uploads(self) -> list[bytes]:
        return [c.data for c in self.calls if c.fn == "libusb_bulk_transfer"
                and c.kind == "firmware_upload"]


# --- descriptors --------------------------------------------------------------------------
class _Desc:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)
        self.extra_descriptors = kw.get("extra_descriptors", [])


def _device_desc(raw: bytes, bus: int, ports: tuple, speed: int) -> _Desc:
    f = struct.unpack_from("<BBHBBBBHHHBBBB", raw)
    names = ("bLength", "bDescriptorType", "bcdUSB", "bDeviceClass", "bDeviceSubClass",
             "bDeviceProtocol", "bMaxPacketSize0", "idVendor", "idProduct", "bcdDevice",
             "iManufacturer", "iProduct", "iSerialNumber", "bNumConfigurations")
    return _Desc(**dict(zip(names, f)), bus=bus, address=ports[-1] if ports else 1,
                 port_number=ports[-1] if ports else None, port_numbers=tuple(ports),
                 speed=speed)


def _config_descs(raw: bytes) -> tuple[_Desc, list[_Desc], dict]:
    """(configuration, interfaces, {interface index: [endpoints]}) of a config descriptor."""
    cfg = None
    intfs: list[_Desc] = []
    eps: dict[int, list[_Desc]] = {}
    pos = 0
    while pos + 2 <= len(raw):
        length, kind = raw[pos], raw[pos + 1]
        if length == 0:
            break
        body = raw[pos:pos + length]
        if kind == 2:
            _, _, total, n, value, icfg, attrs, power = struct.unpack_from("<BBHBBBBB", body)
            cfg = _Desc(bLength=length, bDescriptorType=2, wTotalLength=total, bNumInterfaces=n,
                        bConfigurationValue=value, iConfiguration=icfg, bmAttributes=attrs,
                        bMaxPower=power)
        elif kind == 4:
            f = struct.unpack_from("<BBBBBBBBB", body)
            intfs.append(_Desc(bLength=f[0], bDescriptorType=4, bInterfaceNumber=f[2],
                               bAlternateSetting=f[3], bNumEndpoints=f[4], bInterfaceClass=f[5],
                               bInterfaceSubClass=f[6], bInterfaceProtocol=f[7], iInterface=f[8]))
            eps[len(intfs) - 1] = []
        elif kind == 5:
            f = struct.unpack_from("<BBBBHB", body)
            eps[len(intfs) - 1].append(_Desc(bLength=f[0], bDescriptorType=5,
                                             bEndpointAddress=f[2], bmAttributes=f[3],
                                             wMaxPacketSize=f[4], bInterval=f[5], bRefresh=0,
                                             bSynchAddress=0))
        pos += length
    assert cfg is not None, "no configuration descriptor"
    return cfg, intfs, eps


# --- the backend ------------------------------------------------------------------------------
@dataclass
class HostCall:
    thread: threading.Thread  # the object, not its ident (idents are reused)
    event: Event


class ReplayBackend(usb.backend.IBackend):
    """Answers the host with the transcript's device side; records the host side."""

    def __init__(self, transcript: Transcript) -> None:
        self.t = transcript
        self.queues = {k: [e for e in transcript.events if e.kind == k]
                       for k in ("out", "in", "ctrl")}
        self.pos = {k: 0 for k in self.queues}
        self.log: list[HostCall] = []
        self.errors: list[str] = []
        self.lock = threading.RLock()
        self._config: dict[int, int] = {}
        self._handles = 0

    # -- state --------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        heads = [q[self.pos[k]].seq for k, q in self.queues.items() if self.pos[k] < len(q)]
        return min(heads) if heads else 1 << 30

    def _device(self) -> _Desc:
        seq = self._next_seq()
        raw = self.t.latest("libusb_get_device_descriptor", seq).data
        bus = self.t.latest("libusb_get_bus_number", seq).status
        ports = tuple(self.t.latest("libusb_get_port_numbers", seq).ports)
        speed = self.t.latest("libusb_get_device_speed", seq).status
        return _device_desc(raw, bus, ports, speed)

    def _configuration(self):
        rec = self.t.latest("libusb_get_config_descriptor", self._next_seq())
        return _config_descs(rec.data)

    def _serial(self) -> str:
        rec = self.t.latest("libusb_get_string_descriptor_ascii", self._next_seq())
        return rec.data.decode("ascii")

    # -- enumeration and descriptors ----------------------------------------------------------------
    def enumerate_devices(self):
        yield "dongle"

    def get_device_descriptor(self, dev):
        return self._device()

    def get_configuration_descriptor(self, dev, config):
        return self._configuration()[0]

    def get_interface_descriptor(self, dev, intf, alt, config):
        _, intfs, _ = self._configuration()
        for d in intfs:
            if d.bInterfaceNumber == intf and d.bAlternateSetting == alt:
                return d
        raise IndexError(f"no interface {intf}/{alt}")

    def get_endpoint_descriptor(self, dev, ep, intf, alt, config):
        _, intfs, eps = self._configuration()
        for i, d in enumerate(intfs):
            if d.bInterfaceNumber == intf and d.bAlternateSetting == alt:
                return eps[i][ep]
        raise IndexError(f"no endpoint {ep}")

    def get_parent(self, dev):
        return None

    # -- handles --------------------------------------------------------------------------------------
    def open_device(self, dev):
        with self.lock:
            self._handles += 1
            self._config[self._handles] = 0
            return self._handles

    def close_device(self, handle):
        pass

    def set_configuration(self, handle, config_value):
        self._config[handle] = config_value

    def get_configuration(self, handle):
        return self._config.get(handle, 0)

    def set_interface_altsetting(self, handle, intf, altsetting):
        pass

    def claim_interface(self, handle, intf):
        pass

    def release_interface(self, handle, intf):
        pass

    def attach_kernel_driver(self, handle, intf):
        raise usb.core.USBError("Entity not found", -5, errno.ENOENT)

    def detach_kernel_driver(self, handle, intf):
        raise usb.core.USBError("Entity not found", -5, errno.ENOENT)

    def is_kernel_driver_active(self, handle, intf):
        return False

    def clear_halt(self, handle, ep):
        pass

    def reset_device(self, handle):
        pass

    # -- transfers --------------------------------------------------------------------------------------
    def _take(self, kind: str, what: str) -> Event:
        q = self.queues[kind]
        if self.pos[kind] >= len(q):
            self._fail(f"host made an extra {what}; the transcript has no more {kind} transfers")
        event = q[self.pos[kind]]
        self.pos[kind] += 1
        self.log.append(HostCall(threading.current_thread(), event))
        return event

    def _fail(self, message: str) -> None:
        self.errors.append(message)
        raise ReplayMismatch(f"{self.t.name}: {message}")

    def _check_timeout(self, event: Event, timeout: int, sysinfo: bool) -> None:
        if timeout == event.timeout:
            return
        if sysinfo and event.timeout == 0 and timeout == CONNECT_SYSINFO_TIMEOUT_MS:
            return  # documented deviation: connect never waits forever for system info
        self._fail(f"{event.describe()}: host used timeout {timeout}")

    @staticmethod
    def _raise_status(status: int) -> None:
        if status == -7:
            raise usb.core.USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT)
        raise usb.core.USBError(f"libusb error {status}", status, _ERRNO.get(status))

    def bulk_write(self, handle, ep, intf, data, timeout):
        with self.lock:
            payload = bytes(data)
            e = self._take("out", f"bulk write of {len(payload)} bytes")
            if ep != e.endpoint or len(payload) != e.length:
                self._fail(f"{e.describe()}: host wrote {len(payload)} bytes to ep 0x{ep:02X}")
            self._compare_out(e, payload)
            self._check_timeout(e, timeout, payload[:4] == GET_SYSTEM_INFO_REQUEST[:4]
                                and payload[8:12] == GET_SYSTEM_INFO_REQUEST[8:12])
            self._last_out = payload
        if e.status:
            self._raise_status(e.status)
        return len(payload)

    def _compare_out(self, e: Event, payload: bytes) -> None:
        if e.data is None:  # an abbreviated upload whose NEF piece is not at hand
            if hashlib.sha256(payload).hexdigest() != e.sha256:
                self._fail(f"{e.describe()}: abbreviated upload differs (sha256)")
            return
        expected, got = masked(e.data, e.volatile), masked(payload, e.volatile)
        if expected != got:
            first = next(i for i in range(len(got)) if got[i] != expected[i])
            self._fail(f"{e.describe()}: OUT bytes differ at offset {first}: host "
                       f"{got[first:first + 16].hex()} vs Kneron "
                       f"{expected[first:first + 16].hex()}")

    def bulk_read(self, handle, ep, intf, buff, timeout):
        with self.lock:
            e = self._take("in", f"bulk read of {len(buff)} bytes")
            if ep != e.endpoint or len(buff) != e.length:
                self._fail(f"{e.describe()}: host read {len(buff)} bytes from ep 0x{ep:02X}")
            reply = (e.data or b"")
            sysinfo_reply = e.length == 16 and getattr(self, "_last_out", b"")[8:12] \
                == GET_SYSTEM_INFO_REQUEST[8:12]
            self._check_timeout(e, timeout, sysinfo_reply)
        if e.status:
            self._raise_status(e.status)
        buff[:len(reply)] = type(buff)("B", reply)
        return len(reply)

    def ctrl_transfer(self, handle, bmRequestType, bRequest, wValue, wIndex, data, timeout):
        if bmRequestType == 0x80 and bRequest == 6:  # standard GET_DESCRIPTOR (strings)
            kind, index = wValue >> 8, wValue & 0xFF
            if kind != 3:
                raise usb.core.USBError("Pipe error", -9, errno.EPIPE)
            if index == 0:
                blob = bytes([4, 3, 0x09, 0x04])
            else:
                text = self._serial().encode("utf-16-le")
                blob = bytes([2 + len(text), 3]) + text
            n = min(len(data), len(blob))
            data[:n] = type(data)("B", blob[:n])
            return n
        with self.lock:
            setup = (bmRequestType, bRequest, wValue, wIndex, len(data) if data else 0)
            e = self._take("ctrl", f"control {setup}")
            if setup != e.setup:
                self._fail(f"{e.describe()}: host sent control {setup}")
            self._check_timeout(e, timeout, False)
        if e.status < 0:
            self._raise_status(e.status)
        return 0

    # -- verdict ----------------------------------------------------------------------------------------
    def verify(self) -> None:
        """Every recorded transfer made, matching, in the recorded order per host thread."""
        assert not self.errors, self.errors[0]
        for kind, q in self.queues.items():
            if self.pos[kind] != len(q):
                missing = q[self.pos[kind]]
                raise ReplayMismatch(f"{self.t.name}: host never made {missing.describe()} "
                                     f"({len(q) - self.pos[kind]} {kind} transfers left)")
        by_thread: dict[threading.Thread, list[Event]] = {}
        for call in self.log:
            by_thread.setdefault(call.thread, []).append(call.event)
        for events in by_thread.values():
            seqs = [e.seq for e in events]
            if seqs != sorted(seqs):
                bad = next(i for i in range(1, len(seqs)) if seqs[i] < seqs[i - 1])
                raise ReplayMismatch(f"{self.t.name}: host order differs: {events[bad].describe()}"
                                     f" came after {events[bad - 1].describe()}")
            recorded = {e.thread for e in events}
            if len(recorded) != 1 and len(by_thread) > 1:
                raise ReplayMismatch(f"{self.t.name}: one host thread made the transfers of "
                                     f"recorded threads {sorted(recorded)}")
