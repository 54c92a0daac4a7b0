"""Bulk endpoints of a virtual dongle: where host transfers meet the firmware (PROTOCOL.md §2).

:class:`OutEndpoint` is a rendezvous: a host ``write`` completes only while the firmware has
a receive posted (otherwise the device NAKs and the write waits, then times out), and the
firmware's :meth:`OutEndpoint.receive` assembles one message by the short-packet rule and
strips the fake ZLP (§2.1). :class:`InEndpoint` holds the messages the firmware sends,
delivers them to host reads packet by packet, appends the zero-length packet after a
message whose length is a multiple of the packet size, and reports OVERFLOW when a packet
does not fit the host's request (§2.2).

Any other transfer waits for a posted receive (the device NAKs it): a full device blocks the
request *header*, as the golden transcripts show (PROTOCOL.md open question 3). The one
exception is a lone fake ZLP, which the endpoint FIFO holds until the firmware reads it.

Both sides share the dongle's one condition variable, so waits are woken by any state
change (reset, reboot, disconnect, close). Host-side failures raise :class:`TransferError`
with the libusb code; device-side waits end with :class:`Aborted`.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

from kp_backend.protocol.constants import FAKE_ZLP, PACKET_SIZE_HIGH_SPEED

__all__ = [
    "LIBUSB_ERROR_IO",
    "LIBUSB_ERROR_NO_DEVICE",
    "LIBUSB_ERROR_TIMEOUT",
    "LIBUSB_ERROR_OVERFLOW",
    "LIBUSB_ERROR_PIPE",
    "TransferError",
    "Aborted",
    "strip_fake_zlp",
    "OutEndpoint",
    "InEndpoint",
    "deadline_after",
]

LIBUSB_ERROR_IO = -1
LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_TIMEOUT = -7
LIBUSB_ERROR_OVERFLOW = -8
LIBUSB_ERROR_PIPE = -9


class TransferError(Exception):
    """A host transfer failed with libusb ``code``; ``transferred`` bytes moved before."""

    def __init__(self, code: int, transferred: int = 0, data: bytes = b"") -> None:
        super().__init__(f"libusb error {code} after {transferred} bytes")
        self.code = code
        self.transferred = transferred
        self.data = data


class Aborted(Exception):
    """A firmware-side endpoint wait ended: FIFO reset, reboot, disconnect or close."""


def deadline_after(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


def _wait(cond: threading.Condition, deadline: float | None) -> bool:
    """One wait on ``cond`` until ``deadline``; False once the deadline has passed."""
    if deadline is None:
        cond.wait()
        return True
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    cond.wait(left)
    return True


def strip_fake_zlp(message: bytes, length_rule: bool, packet: int = PACKET_SIZE_HIGH_SPEED) -> bytes:
    """Drop a trailing fake ZLP the way the device's USB driver does (§2.1).

    KL520 (``length_rule``): only when ``(L - 4)`` is a multiple of the packet size; KL720:
    whenever the message ends in ``44 33 22 11`` (so it also eats those 4 bytes from a payload
    that happens to end in them, as its driver does)."""
    if len(message) < 4 or message[-4:] != FAKE_ZLP:
        return message
    if length_rule and (len(message) - 4) % packet:
        return message
    return message[:-4]


@dataclass
class _OutTransfer:
    data: bytes
    offset: int = 0
    done: bool = False


class OutEndpoint:
    """Bulk OUT 0x02 as seen from both sides."""

    def __init__(self, cond: threading.Condition, packet: int, length_rule: bool) -> None:
        self._cond = cond
        self.packet = packet
        self._length_rule = length_rule
        self._pending: collections.deque[_OutTransfer] = collections.deque()
        self.armed = False  # the firmware has a receive posted
        self._abort_epoch = 0
        self.gone = False

    # -- host side -----------------------------------------------------------------------
    def host_write(self, data: bytes, deadline: float | None) -> int:
        """Offer one bulk transfer; returns the byte count once the firmware took it all."""
        with self._cond:
            if self.gone:
                raise TransferError(LIBUSB_ERROR_NO_DEVICE)
            transfer = _OutTransfer(bytes(data))
            self._pending.append(transfer)
            self._cond.notify_all()
            if transfer.data == FAKE_ZLP and len(self._pending) == 1:
                # the controller's FIFO takes this one short packet even while the firmware
                # is busy (e.g. answering a command whose data ended on a packet boundary),
                # so the host can go on to read the answer; it is received (and dropped as a
                # stray message, §3.4) later
                return len(transfer.data)
            while not transfer.done:
                if self.gone:
                    self._withdraw(transfer)
                    raise TransferError(LIBUSB_ERROR_NO_DEVICE, transfer.offset)
                if not _wait(self._cond, deadline):
                    self._withdraw(transfer)
                    raise TransferError(LIBUSB_ERROR_TIMEOUT, transfer.offset)
            return len(transfer.data)

    def _withdraw(self, transfer: _OutTransfer) -> None:
        if transfer in self._pending:
            self._pending.remove(transfer)
        self._cond.notify_all()

    # -- firmware side -------------------------------------------------------------------
    def receive(self, max_len: int, deadline: float | None = None,
                stopped=lambda: False) -> bytes | None:
        """Post a receive of up to ``max_len`` bytes; return the assembled message (fake
        ZLP stripped), or None at the deadline. Raises :class:`Aborted` on abort/stop."""
        buf = bytearray()
        with self._cond:
            epoch = self._abort_epoch
            self.armed = True
            self._cond.notify_all()
            try:
                while True:
                    while True:
                        # an abort wins over data that arrived while we were asleep
                        if stopped() or self.gone or epoch != self._abort_epoch:
                            raise Aborted()
                        if self._pending:
                            break
                        if not _wait(self._cond, deadline):
                            return bytes(buf) if buf else None
                    transfer = self._pending[0]
                    room = max_len - len(buf)
                    chunk = transfer.data[transfer.offset:transfer.offset + room]
                    transfer.offset += len(chunk)
                    buf += chunk
                    whole = len(transfer.data)
                    if transfer.offset >= whole:
                        transfer.done = True
                        self._pending.popleft()
                        self._cond.notify_all()
                        if whole % self.packet or whole == 0:
                            break  # short (or zero-length) packet ends the receive
                    if len(buf) >= max_len:
                        break  # buffer full
            finally:
                self.armed = False
                self._cond.notify_all()
        return strip_fake_zlp(bytes(buf), self._length_rule, self.packet)

    def abort(self) -> None:
        """Abort the posted receive (FIFO reset): the receiver starts over."""
        with self._cond:
            self._abort_epoch += 1
            self._cond.notify_all()

    def disconnect(self) -> None:
        with self._cond:
            self.gone = True
            self._cond.notify_all()

    @property
    def host_waiting(self) -> bool:
        return bool(self._pending)


@dataclass
class _InMessage:
    data: bytes
    offset: int = 0
    zlp_only: bool = False
    done: bool = False
    abandoned: bool = False
    started: bool = field(default=False)


class InEndpoint:
    """Bulk IN 0x81: a queue of device messages read by the host packet by packet."""

    def __init__(self, cond: threading.Condition, packet: int) -> None:
        self._cond = cond
        self.packet = packet
        self._queue: collections.deque[_InMessage] = collections.deque()
        self.gone = False

    # -- firmware side -------------------------------------------------------------------
    def send(self, data: bytes, deadline: float | None = None, stopped=lambda: False) -> bool:
        """Queue one message and wait until the host has read all of it. Returns False when
        it was abandoned: not started before ``deadline``, aborted, or the device stopped."""
        message = _InMessage(bytes(data))
        with self._cond:
            self._queue.append(message)
            self._cond.notify_all()
            while not message.done:
                if message.abandoned:
                    return False
                if stopped() or self.gone:
                    self._drop(message)
                    return False
                # once the host has started reading, the rest is not abandoned
                if not _wait(self._cond, None if message.started else deadline):
                    self._drop(message)
                    return False
            return True

    def _drop(self, message: _InMessage) -> None:
        message.abandoned = True
        if message in self._queue:
            self._queue.remove(message)
        self._cond.notify_all()

    def abort(self) -> None:
        """FIFO reset: abandon everything queued or in transmission."""
        with self._cond:
            for message in list(self._queue):
                message.abandoned = True
            self._queue.clear()
            self._cond.notify_all()

    def disconnect(self) -> None:
        with self._cond:
            self.gone = True
            self.abort()

    @property
    def queued(self) -> int:
        return sum(1 for m in self._queue if not m.zlp_only)

    # -- host side -----------------------------------------------------------------------
    def host_read(self, size: int, deadline: float | None) -> bytes:
        """One bulk IN transfer of up to ``size`` bytes."""
        with self._cond:
            while not self._queue:
                if self.gone:
                    raise TransferError(LIBUSB_ERROR_NO_DEVICE)
                if not _wait(self._cond, deadline):
                    raise TransferError(LIBUSB_ERROR_TIMEOUT)
            if self.gone:
                raise TransferError(LIBUSB_ERROR_NO_DEVICE)
            message = self._queue[0]
            message.started = True
            if message.zlp_only:
                self._queue.popleft()
                self._cond.notify_all()
                return b""
            rest = len(message.data) - message.offset
            exact = len(message.data) % self.packet == 0
            if rest > size:
                whole_packets = size - size % self.packet
                if size % self.packet:
                    # the packet that straddles the end of the request does not fit
                    lost = min(rest, whole_packets + self.packet)
                    out = message.data[message.offset:message.offset + whole_packets]
                    message.offset += lost
                    self._finish_if_empty(message, exact)
                    raise TransferError(LIBUSB_ERROR_OVERFLOW, len(out), out)
                out = message.data[message.offset:message.offset + size]
                message.offset += size
                return out
            out = message.data[message.offset:]
            message.offset = len(message.data)
            self._queue.popleft()
            message.done = True
            if exact and rest == size:
                # request filled exactly: the terminating ZLP waits for the next read
                self._queue.appendleft(_InMessage(b"", zlp_only=True))
            self._cond.notify_all()
            return out

    def _finish_if_empty(self, message: _InMessage, exact: bool) -> None:
        if message.offset >= len(message.data):
            self._queue.popleft()
            message.done = True
            if exact:
                self._queue.appendleft(_InMessage(b"", zlp_only=True))
            self._cond.notify_all()
