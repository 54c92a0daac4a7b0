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

**Data path.** Code running here in a host thread counts as host CPU time, so it costs what
libusb would: one copy at most and no wait when the device is ready. A host write that
finds a receive posted is moved into it by the host's own thread (one copy, as the
controller's DMA would) and returns at once. Otherwise it waits (NAK) and the receive posted
next moves it, copying from the host's buffer (a memoryview) while the host is still blocked.
Nothing references the host's buffer once its call has returned: a lone fake ZLP held early
is replaced by the constant, a timed-out or disconnected transfer is withdrawn under the lock.
Host reads copy straight from the device message into the host's buffer.

Decision: when a host write completes a request *header*, the receive for the rest of the
request is posted at once by the receiver's follow-up rule (``receive(then=...)``), as a
firmware re-arms in its receive-complete callback, so the data write does not wait for the
firmware thread; the firmware is then woken once, when the request is complete.

Decision (FIFO reset, :meth:`OutEndpoint.abort`): a receive a host write completed before the
abort is delivered (the old model's firmware thread had taken it: the write waited for
that); an incomplete one, or one completed by a lone fake ZLP (that write returns before the
firmware takes it, so the abort wins and the ZLP stays in the FIFO as a stray message),
ends with :class:`Aborted` — also when it is the follow-up receive of a request.

**Wake-ups.** All state of a dongle is guarded by the dongle's one lock; each kind of waiter
sleeps on its own :class:`threading.Condition` over that lock and is notified only by the
events that can end its wait (deadlines are honoured by the waits themselves; a missed
notify would be a hang, since a host timeout of 0 waits forever):

* host writer (``OutEndpoint._writers``): its transfer taken by a newly posted receive;
  disconnect (unplug, reboot, shutdown, close: every firmware stop);
* host reader (``InEndpoint._readers``): a message queued; disconnect;
* firmware receive (``OutEndpoint._receiver``): the posted receive completed by a host write
  (for a request header: when its follow-up completes); abort (FIFO reset, FIFO re-post);
  disconnect; ``settle()`` (``nudge``);
* firmware send (``InEndpoint._senders``): its message read to the end; abort (FIFO reset
  abandons it); disconnect. The result sender sends asynchronously (``on_done``, run by
  the host's read that completes the message, frees the result buffer) and waits here
  only when it has the next result while the previous one is still unread
  (``wait_sent``), so in a serial exchange a completed read wakes no device thread.

The firmware's other waits (input and result buffers, queues, NPU sleep; one condition each,
see ``firmware.WAITS``) and ``VirtualDongle.settle`` (the dongle's main condition) hear from
:class:`OutEndpoint` only through ``on_change``: called when a receive is posted and when a
host transfer is left waiting (NAK), held or withdrawn with no receive able to take it, since
a receiver waiting for an input buffer with frame dropping on must see a waiting transfer;
the firmware's callback wakes only that receiver, and settle() while it watches. Host-side
failures raise :class:`TransferError` with the libusb code; device-side waits end with
:class:`Aborted`.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Union

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

Buffer = Union[bytes, memoryview]


class TransferError(Exception):
    """A host transfer failed with libusb ``code``; ``transferred`` bytes moved before."""

    def __init__(self, code: int, transferred: int = 0) -> None:
        super().__init__(f"libusb error {code} after {transferred} bytes")
        self.code = code
        self.transferred = transferred


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


def _never() -> bool:
    return False


def _nothing() -> None:
    return None


def _strips(length: int, length_rule: bool, packet: int) -> bool:
    """Whether a message of ``length`` bytes ending in the fake ZLP loses it (§2.1)."""
    return length >= 4 and not (length_rule and (length - 4) % packet)


def strip_fake_zlp(message: bytes, length_rule: bool, packet: int = PACKET_SIZE_HIGH_SPEED) -> bytes:
    """Drop a trailing fake ZLP the way the device's USB driver does (§2.1).

    KL520 (``length_rule``): only when ``(L - 4)`` is a multiple of the packet size; KL720:
    whenever the message ends in ``44 33 22 11`` (so it also eats those 4 bytes from a payload
    that happens to end in them, as its driver does)."""
    if message[-4:] == FAKE_ZLP and _strips(len(message), length_rule, packet):
        return message[:-4]
    return message


class _OutTransfer:
    """One host bulk OUT transfer; ``data`` may be a view of the host's own buffer."""

    __slots__ = ("data", "length", "offset", "done")

    def __init__(self, data: Buffer) -> None:
        self.data = data
        self.length = len(data)
        self.offset = 0
        self.done = False


FollowUp = Callable[[bytes, int], "int | None"]


class _Receive:
    """The receive the firmware has posted: what arrived so far, as immutable pieces."""

    __slots__ = ("max_len", "got", "parts", "complete", "early", "epoch", "then", "chained")

    def __init__(self, max_len: int, epoch: int, then: FollowUp | None = None,
                 chained: bool = False) -> None:
        self.max_len = max_len
        self.got = 0
        self.parts: list[bytes] = []
        self.complete = False
        self.early = False  # completed by a lone fake ZLP (a write that returns early)
        self.epoch = epoch  # the abort epoch it was posted in
        self.then = then  # the follow-up rule (see OutEndpoint.receive)
        self.chained = chained  # posted by a follow-up rule, not yet taken by receive()


class OutEndpoint:
    """Bulk OUT 0x02 as seen from both sides. ``lock`` is the dongle's lock; ``on_change``
    is called (lock held) on the events the module docstring lists."""

    def __init__(self, lock, packet: int, length_rule: bool,
                 on_change: Callable[[], None] = _nothing) -> None:
        self._lock = lock
        self._writers = threading.Condition(lock)
        self._receiver = threading.Condition(lock)
        self._on_change = on_change
        self.packet = packet
        self._length_rule = length_rule
        self._pending: collections.deque[_OutTransfer] = collections.deque()
        self._rx: _Receive | None = None  # the posted receive (until receive() returns)
        self._ready = 0  # completed receives the firmware thread has not returned yet
        self._abort_epoch = 0
        self.gone = False

    def _live(self) -> _Receive | None:
        """The posted receive if it can take data (caller holds the lock)."""
        rx = self._rx
        if rx is None or rx.complete or rx.epoch != self._abort_epoch:
            return None
        return rx

    def _aborted(self, rx: _Receive) -> bool:
        """Whether an abort ends ``rx`` (see the class docstring)."""
        return rx.epoch != self._abort_epoch and (rx.early or not rx.complete)

    # -- host side -----------------------------------------------------------------------
    def host_write(self, data: Buffer, deadline: float | None) -> int:
        """Offer one bulk transfer; returns the byte count once the firmware took it all.
        ``data`` is not referenced after the call returns (or raises)."""
        with self._lock:
            if self.gone:
                raise TransferError(LIBUSB_ERROR_NO_DEVICE)
            transfer = _OutTransfer(data)
            pending = self._pending
            pending.append(transfer)
            lone_zlp = len(pending) == 1 and transfer.length == 4 and data == FAKE_ZLP
            if len(pending) == 1:
                rx = self._live()
                if rx is not None:
                    self._pump(rx)
                    if lone_zlp and rx.complete:
                        rx.early = True
                    while rx is not None and rx.complete:
                        follow = self._follow_up(rx)
                        if follow is None:
                            self._receiver.notify()
                        # else the firmware is woken when the follow-up completes (or on
                        # abort, disconnect, settle): one wake-up for the whole request
                        rx = follow
                        if rx is not None:
                            self._pump(rx)
                    if transfer.done:
                        return transfer.length
                elif lone_zlp:
                    # the controller's FIFO takes this one short packet even while the firmware
                    # is busy (e.g. answering a command whose data ended on a packet boundary),
                    # so the host can go on to read the answer; it is received (and dropped as
                    # a stray message, §3.4) later. Held as the constant: the host may reuse
                    # its buffer.
                    transfer.data = FAKE_ZLP
                    self._on_change()
                    return 4
            if self._live() is None:
                self._on_change()
            try:
                while not transfer.done:
                    if self.gone:
                        raise TransferError(LIBUSB_ERROR_NO_DEVICE, transfer.offset)
                    if not _wait(self._writers, deadline):
                        raise TransferError(LIBUSB_ERROR_TIMEOUT, transfer.offset)
            except BaseException:
                self._withdraw(transfer)
                raise
            return transfer.length

    def _withdraw(self, transfer: _OutTransfer) -> None:
        if not transfer.done:
            self._pending.remove(transfer)
            self._on_change()

    def _pump(self, rx: _Receive) -> bool:
        """Move waiting host transfers into the live receive ``rx`` (caller holds the lock)
        by the short-packet and buffer-full rules. True when a transfer was finished."""
        pending = self._pending
        finished = False
        while pending and not rx.complete:
            transfer = pending[0]
            start = transfer.offset
            end = min(transfer.length, start + rx.max_len - rx.got)
            if end > start:
                chunk = transfer.data[start:end]
                rx.parts.append(chunk if type(chunk) is bytes else bytes(chunk))
                rx.got += end - start
                transfer.offset = end
            if end >= transfer.length:
                transfer.done = True
                pending.popleft()
                finished = True
                if transfer.length % self.packet or transfer.length == 0:
                    rx.complete = True  # short (or zero-length) packet ends the receive
            if rx.got >= rx.max_len:
                rx.complete = True  # buffer full
        if rx.complete:
            self._ready += 1
        return finished

    def _follow_up(self, rx: _Receive) -> _Receive | None:
        """``rx`` was just completed by a host write: post the receive its follow-up rule
        asks for, if any (caller holds the lock)."""
        if rx.then is None or rx.early:
            return None
        length = self._message_length(rx)
        size = None if length is None else rx.then(rx.parts[0], length)
        if size is None:
            return None
        follow = self._rx = _Receive(size, self._abort_epoch, chained=True)
        self._on_change()
        return follow

    def _message_length(self, rx: _Receive) -> int | None:
        """Length of ``rx``'s message once the fake ZLP is stripped; None when that needs
        the pieces joined (never for the host's usual transfers)."""
        if not rx.parts:
            return 0
        last = rx.parts[-1]
        if len(last) < 4 and rx.got >= 4:
            return None
        strip = last[-4:] == FAKE_ZLP and _strips(rx.got, self._length_rule, self.packet)
        return rx.got - 4 if strip else rx.got

    # -- firmware side -------------------------------------------------------------------
    def receive(self, max_len: int, deadline: float | None = None,
                stopped: Callable[[], bool] = _never,
                then: FollowUp | None = None) -> bytes | None:
        """Post a receive of up to ``max_len`` bytes; return the assembled message (fake
        ZLP stripped), or None at the deadline. Raises :class:`Aborted` on abort/stop.

        ``then(first_piece, length)`` is the receiver's follow-up rule: when a host write
        completes this receive, it is called in the host's thread (lock held) with the
        message's first piece and length, and returns the size of the receive the firmware
        will post next, or None. That receive is posted at once, the way a firmware re-arms
        in its receive-complete callback, so the host's next write need not wait for the
        firmware thread; the firmware's next call of this method takes it over (``max_len``
        must be what the rule said), and an abort in between ends it as if it had been
        posted by that call."""
        with self._lock:
            if stopped() or self.gone:
                raise Aborted()
            rx = self._rx
            if rx is not None and rx.chained:
                if rx.max_len != max_len:
                    raise RuntimeError(f"receive of {max_len} bytes posted, but the follow-up "
                                       f"rule posted {rx.max_len}")
                rx.chained = False
                rx.then = then
            else:
                rx = self._rx = _Receive(max_len, self._abort_epoch, then)
                self._on_change()
            try:
                if self._pending and self._live() is rx and self._pump(rx):
                    self._writers.notify_all()
                while True:
                    if stopped() or self.gone:
                        raise Aborted()
                    if self._aborted(rx):
                        if rx.early:  # still in the controller's FIFO: a stray message next
                            self._pending.appendleft(_OutTransfer(FAKE_ZLP))
                        raise Aborted()
                    if rx.complete:
                        break
                    if not _wait(self._receiver, deadline):
                        return _join(rx.parts) if rx.parts else None
            finally:
                if self._rx is rx:
                    self._rx = None
                if rx.complete:
                    self._ready -= 1
        return self._message(rx.parts, rx.got)

    def _message(self, parts: list[bytes], length: int) -> bytes:
        """Join a completed receive, stripping the fake ZLP without copying the payload
        when it came as a transfer of its own (the host's usual way)."""
        if len(parts) > 1 and len(parts[-1]) == 4:
            if parts[-1] == FAKE_ZLP and _strips(length, self._length_rule, self.packet):
                return _join(parts[:-1])
            return _join(parts)
        return strip_fake_zlp(_join(parts), self._length_rule, self.packet)

    def nudge(self) -> None:
        """Wake the firmware's receive (caller holds the lock): settle() does, so that a
        completed receive whose wake-up was deferred to its follow-up is processed."""
        self._receiver.notify_all()

    def abort(self) -> None:
        """Abort the posted receive (FIFO reset): the receiver starts over; host writes
        wait for its next receive."""
        with self._lock:
            self._abort_epoch += 1
            self._receiver.notify_all()

    def disconnect(self) -> None:
        with self._lock:
            self.gone = True
            self._receiver.notify_all()
            self._writers.notify_all()

    @property
    def armed(self) -> bool:
        """The firmware has a receive posted that can still take data."""
        return self._live() is not None

    @property
    def host_waiting(self) -> bool:
        """Host data the firmware has not picked up: a transfer waiting, or a completed
        receive its thread has not returned yet."""
        return bool(self._pending) or self._ready > 0


def _join(parts: list[bytes]) -> bytes:
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _InMessage:
    __slots__ = ("data", "offset", "zlp_only", "done", "abandoned", "started", "on_done")

    def __init__(self, data: bytes, zlp_only: bool = False,
                 on_done: Callable[[], None] | None = None) -> None:
        self.data = data
        self.offset = 0
        self.zlp_only = zlp_only
        self.done = False
        self.abandoned = False
        self.started = False
        self.on_done = on_done

    def settle(self) -> None:
        """Report the end of an asynchronous send (read or abandoned) once; lock held."""
        callback, self.on_done = self.on_done, None
        if callback is not None:
            callback()


class InEndpoint:
    """Bulk IN 0x81: a queue of device messages read by the host packet by packet.
    ``lock`` is the dongle's lock."""

    def __init__(self, lock, packet: int) -> None:
        self._lock = lock
        self._readers = threading.Condition(lock)
        self._senders = threading.Condition(lock)
        self.packet = packet
        self._queue: collections.deque[_InMessage] = collections.deque()
        self._in_flight: _InMessage | None = None  # the last asynchronous send
        self.gone = False

    # -- firmware side -------------------------------------------------------------------
    def send(self, data: bytes, deadline: float | None = None,
             stopped: Callable[[], bool] = _never,
             on_done: Callable[[], None] | None = None) -> bool:
        """Queue one message and wait until the host has read all of it. Returns False when
        it was abandoned: not started before ``deadline``, aborted, or the device stopped.

        With ``on_done`` the send is asynchronous: it queues the message and returns True
        (after :meth:`wait_sent`, as the firmware transmits one result at a time);
        ``on_done()`` is called once, under the dongle's lock, when the host has read the
        message or it was abandoned (FIFO reset, disconnect). The result sender uses this
        so that a host read that completes a result does not have to wake the firmware's
        sender thread (which would then compete with the host's thread for the GIL;
        benchmarks: ``host_overhead_us``)."""
        with self._lock:
            if on_done is not None:
                if not self.wait_sent(stopped):
                    return False
                message = _InMessage(bytes(data), on_done=on_done)
                self._in_flight = message
                self._queue.append(message)
                self._readers.notify_all()
                return True
            message = _InMessage(bytes(data))
            self._queue.append(message)
            self._readers.notify_all()
            while not message.done:
                if message.abandoned:
                    return False
                if stopped() or self.gone:
                    self._drop(message)
                    return False
                # once the host has started reading, the rest is not abandoned
                if not _wait(self._senders, None if message.started else deadline):
                    self._drop(message)
                    return False
            return True

    def wait_sent(self, stopped: Callable[[], bool] = _never) -> bool:
        """Wait until the last asynchronous message has been read or abandoned. False when
        the device stopped or left the bus first."""
        with self._lock:
            previous = self._in_flight
            while previous is not None and not (previous.done or previous.abandoned):
                if stopped() or self.gone:
                    return False
                _wait(self._senders, None)
            return True

    def _drop(self, message: _InMessage) -> None:
        message.abandoned = True
        if message in self._queue:
            self._queue.remove(message)
        message.settle()

    def abort(self) -> None:
        """FIFO reset: abandon everything queued or in transmission."""
        with self._lock:
            for message in self._queue:
                message.abandoned = True
                message.settle()
            self._queue.clear()
            self._senders.notify_all()

    def disconnect(self) -> None:
        with self._lock:
            self.gone = True
            self.abort()
            self._readers.notify_all()

    @property
    def queued(self) -> int:
        return sum(1 for m in self._queue if not m.zlp_only)

    # -- host side -----------------------------------------------------------------------
    def host_read(self, target: memoryview, deadline: float | None) -> int:
        """One bulk IN transfer into ``target`` (a writable byte view, its length the
        request size); returns the byte count. OVERFLOW raises after the whole packets that
        fit were copied (``transferred``)."""
        size = len(target)
        packet = self.packet
        with self._lock:
            queue = self._queue
            while not queue:
                if self.gone:
                    raise TransferError(LIBUSB_ERROR_NO_DEVICE)
                if not _wait(self._readers, deadline):
                    raise TransferError(LIBUSB_ERROR_TIMEOUT)
            if self.gone:
                raise TransferError(LIBUSB_ERROR_NO_DEVICE)
            message = queue[0]
            message.started = True
            if message.zlp_only:
                queue.popleft()
                return 0
            data, offset = message.data, message.offset
            rest = len(data) - offset
            if rest > size:
                whole_packets = size - size % packet
                if size % packet:
                    # the packet that straddles the end of the request does not fit
                    target[:whole_packets] = memoryview(data)[offset:offset + whole_packets]
                    message.offset += min(rest, whole_packets + packet)
                    if message.offset >= len(data):
                        self._finish(message, zlp=not len(data) % packet)
                    raise TransferError(LIBUSB_ERROR_OVERFLOW, whole_packets)
                target[:size] = memoryview(data)[offset:offset + size]
                message.offset += size
                return size
            target[:rest] = memoryview(data)[offset:] if offset else data
            message.offset = len(data)
            # request filled exactly by a packet-multiple message: its terminating ZLP
            # waits for the next read
            self._finish(message, zlp=rest == size and not len(data) % packet)
            return rest

    def _finish(self, message: _InMessage, zlp: bool) -> None:
        """``message`` (the head) is read to its end; ``zlp``: its zero-length packet is
        still to be read."""
        self._queue.popleft()
        message.done = True
        if zlp:
            self._queue.appendleft(_InMessage(b"", zlp_only=True))
        message.settle()
        self._senders.notify_all()  # no system call unless a synchronous sender waits
