"""The pipelining engine: one :class:`DeviceWorker` per dongle, shared by every session on it.

Each worker runs two threads over the device group layer:

* the **sender** takes requests in submission order, waits for a free slot of the request's
  session (``in_flight``), tags the request with a fresh ``inference_number`` (unique on
  this dongle while it is outstanding), registers it as pending and sends it (job 17, or
  job 10 for images);
* the **receiver** reads results whenever something is pending and hands each to the
  request whose ``inference_number`` it carries. A result is never given to another
  request: unknown numbers (a late result of a request that already failed) are dropped.

**Inline exchanges.** A caller that wants one result now (``KneronSession.run``) may do the
whole exchange in its own thread when the dongle is idle (:meth:`DeviceWorker.run_inline`):
nothing queued, nothing pending. It then holds the dongle exclusively until its result is in:
the sender does not take queued requests and the receiver does not read meanwhile (requests
submitted meanwhile wait in the queue and go as soon as the exchange ends). This saves the
two thread hand-offs of a request (caller -> sender, receiver -> caller), about a third of the
host CPU of a small inference (benchmarks: ``host_overhead_us``); the wire traffic, the
inference numbering and every failure rule are the same as on the threaded path.

Failures stay with their dongle: a timeout fails that dongle's pending requests with
``DeviceTimeout``; an unplugged dongle fails its pending and queued requests with its
``DeviceDisconnected`` and refuses new ones; a firmware status fails the one request it
names, and an unreadable result (bad magic or job id, a stalled read) fails only the
request it belongs to (the oldest pending one). With frame drop on, a result for number
*k* means the dongle discarded the requests sent before *k* that are still pending: they
fail with ``DeviceError`` "... dropped by the device (frame_drop)".
"""

from __future__ import annotations

import array
import collections
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Union

from kp_runtime.errors import DeviceError, DeviceProtocolError, DeviceTimeout

from kp_backend.device import DeviceGroup
from kp_backend.protocol.constants import JobId, RESULT_HEADER_SIZE
from kp_backend.protocol.wire import RESULT_TAIL_OFFSET
from kp_backend.usb.errors import KpDeviceStatus, KpDisconnected, KpError, KpTimeout

#: A request payload: anything ``memoryview`` takes (``bytes``, or the ``array.array``
#: the float encoder fills, which goes to pyusb without a copy).
Buffer = Union[bytes, bytearray, memoryview, array.array]

__all__ = ["Buffer", "InferenceRequest", "ImageParams", "DeviceWorker", "FrameDropped",
           "INF_NUMBER_OFFSET"]

log = logging.getLogger(__name__)

#: Byte offset of ``inf_number`` in a result header (PROTOCOL.md §6.1): after ``product_id``.
INF_NUMBER_OFFSET = RESULT_TAIL_OFFSET + 4
_U32 = 2**32
_POLL_S = 0.05


class FrameDropped(DeviceError):
    """The dongle discarded this request because frame drop is on and its queue was full."""


@dataclass(frozen=True)
class ImageParams:
    """What a job-10 request needs besides the pixels (PROTOCOL.md §5.1)."""

    width: int
    height: int
    image_format: int
    resize_mode: int
    padding_mode: int
    normalize_mode: int


@dataclass(eq=False)
class InferenceRequest:
    """One inference on one dongle. ``future`` resolves to the raw result message."""

    model_id: int
    payloads: tuple[Buffer, ...]  # one per input node (an image request has one)
    image: ImageParams | None = None  # None: bypass pre-processing (job 17)
    slot: threading.Semaphore | None = None
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    number: int | None = None
    holds_slot: bool = False

    @property
    def job(self) -> int:
        if self.image is not None:
            return JobId.GENERIC_RAW_IMAGE
        return JobId.GENERIC_RAW_BYPASS_PRE_PROC

    def release(self) -> None:
        if self.holds_slot:
            self.holds_slot = False
            self.slot.release()  # type: ignore[union-attr]

    def fail(self, error: BaseException) -> None:
        self.release()
        if not self.future.done():
            self.future.set_exception(error)

    def finish(self, raw: bytes) -> None:
        self.release()
        if not self.future.done():
            self.future.set_result(raw)


class DeviceWorker:
    """Sender + receiver threads of one single-device :class:`DeviceGroup`."""

    def __init__(self, group: DeviceGroup, name: str, receive_size: int,
                 frame_drop: Callable[[], bool] = lambda: False) -> None:
        self.group = group
        self.name = name
        self.receive_size = int(receive_size)
        self._frame_drop = frame_drop
        self._cond = threading.Condition()
        self._queue: collections.deque[InferenceRequest] = collections.deque()
        self._pending: collections.OrderedDict[int, InferenceRequest] = collections.OrderedDict()
        self._next_number = 1
        self._stopping = False
        self._inline = False  # a caller's thread is doing an exchange (run_inline)
        self.completed = 0  # results delivered (statistics)
        self.dead: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._guarded, args=(self._sender,),
                             name=f"kneron-send-{name}", daemon=True),
            threading.Thread(target=self._guarded, args=(self._receiver,),
                             name=f"kneron-recv-{name}", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # -- public ---------------------------------------------------------------------------
    def submit(self, request: InferenceRequest) -> concurrent.futures.Future:
        """Queue ``request``; its future fails at once when the dongle is gone."""
        with self._cond:
            if self.dead is not None:
                request.fail(self.dead)
            elif self._stopping:
                request.fail(self._released())
            else:
                self._queue.append(request)
                self._cond.notify_all()
        return request.future

    def run_inline(self, request: InferenceRequest) -> bool:
        """Do the whole exchange of ``request`` in the calling thread if the dongle is idle
        (nothing queued or pending, a free slot): send it, read results until its own is in.
        Returns False, having touched nothing, when the dongle is busy (then ``submit``
        it); True when ``request.future`` is resolved (result or error)."""
        with self._cond:
            if (self._inline or self._queue or self._pending or self._stopping
                    or self.dead is not None):
                return False
            if request.slot is not None:
                if not request.slot.acquire(blocking=False):
                    return False
                request.holds_slot = True
            if not request.future.set_running_or_notify_cancel():
                request.release()
                return True
            self._inline = True
            request.number = self._number()
            self._pending[request.number] = request
        try:
            if self._send_registered(request):
                while not request.future.done():
                    if not self._receive_once(request.job):
                        break
        finally:
            with self._cond:
                self._inline = False
                # only the sender can be waiting for the exchange to end (the receiver has
                # nothing pending by now); waking idle threads would cost the host CPU
                if self._queue:
                    self._cond.notify_all()
        if not request.future.done():  # the worker stopped under us without failing it
            request.fail(self.dead or self._released())
        return True

    @property
    def outstanding(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._pending)

    def stop(self, error: BaseException | None = None, join_s: float = 2.0) -> None:
        """Stop both threads; queued and pending requests fail with ``error``."""
        with self._cond:
            self._stopping = True
            victims = list(self._queue) + list(self._pending.values())
            self._queue.clear()
            self._pending.clear()
            self._cond.notify_all()
        failure = error or self._released()
        for req in victims:
            req.fail(failure)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(join_s)

    def _released(self) -> DeviceError:
        return DeviceError(f"{self.name}: the device was released (its last session closed)",
                           device=self.name)

    def _guarded(self, loop: Callable[[], None]) -> None:
        """Run a thread loop; a bug in it fails this dongle's requests instead of leaving
        them waiting forever."""
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - reported through the requests
            log.exception("%s: %s crashed", self.name, loop.__name__)
            self._die(DeviceError(f"{self.name}: internal error in the {loop.__name__.strip('_')}"
                                  f" thread: {type(exc).__name__}: {exc}", device=self.name))

    def _await(self, items) -> bool:
        """Wait (lock held) until ``items`` (the queue or the pending requests) has one and no
        inline exchange holds the dongle; False once the worker stops or the dongle died."""
        while (not items or self._inline) and not self._stopping and self.dead is None:
            self._cond.wait()
        return not self._stopping and self.dead is None

    # -- sender ----------------------------------------------------------------------------
    def _take(self) -> InferenceRequest | None:
        """The oldest queued request, left at the head of the queue until it is registered
        (so that the dongle is not idle for :meth:`run_inline` meanwhile)."""
        with self._cond:
            return self._queue[0] if self._await(self._queue) else None

    def _wait_slot(self, request: InferenceRequest) -> bool:
        if request.slot is not None:
            while not request.slot.acquire(timeout=_POLL_S):
                if self._stopping:
                    return False
            request.holds_slot = True
        return True

    def _number(self) -> int:
        while True:
            number = self._next_number
            self._next_number = number % (_U32 - 1) + 1  # 1 .. 2**32-1, 0 never used
            if number not in self._pending:
                return number

    def _sender(self) -> None:
        # Only this thread pops the queue; stop() and _die() clear it (and fail what it held)
        while True:
            request = self._take()
            if request is None:
                return
            if not request.future.set_running_or_notify_cancel():
                with self._cond:
                    if self._queue and self._queue[0] is request:
                        self._queue.popleft()
                continue
            if not self._wait_slot(request):
                request.fail(self._released())
                return
            with self._cond:
                if self._stopping or self.dead is not None:
                    request.fail(self.dead or self._released())
                    continue
                self._queue.popleft()
                request.number = self._number()
                self._pending[request.number] = request
                self._cond.notify_all()
            if not self._send_registered(request):
                return

    def _send_registered(self, request: InferenceRequest) -> bool:
        """Send a request already registered as pending; on failure fail it (and the
        dongle, when it is gone). False when the dongle is gone."""
        try:
            self._send(request)
        except Exception as exc:  # noqa: BLE001 - the request's own failure
            with self._cond:
                self._pending.pop(request.number, None)
            request.fail(exc if isinstance(exc, KpError) else DeviceError(
                f"{self.name}: sending failed: {type(exc).__name__}: {exc}",
                device=self.name))
            if isinstance(exc, KpDisconnected):
                self._die(exc)
                return False
        return True

    def _send(self, request: InferenceRequest) -> None:
        number = request.number
        assert number is not None
        if request.image is None:
            if len(request.payloads) == 1:
                self.group.send_bypass(request.model_id, number, request.payloads[0],
                                       device_index=0)
            else:
                self.group.send_bypass_inputs(request.model_id, number, request.payloads,
                                              device_index=0)
            return
        p = request.image
        self.group.send_image(request.model_id, number, request.payloads[0], p.width, p.height,
                              p.image_format, resize_mode=p.resize_mode,
                              padding_mode=p.padding_mode, normalize_mode=p.normalize_mode,
                              device_index=0)

    # -- receiver ----------------------------------------------------------------------------
    def _oldest_job(self) -> int | None:
        with self._cond:
            if not self._await(self._pending):
                return None
            return next(iter(self._pending.values())).job

    def _receiver(self) -> None:
        while True:
            job = self._oldest_job()
            if job is None or not self._receive_once(job):
                return

    def _receive_once(self, job: int) -> bool:
        """Read one result and hand it (or the failure) to its request. False when the
        dongle is gone or the worker is stopping (nothing more to read)."""
        try:
            raw = self.group.receive(job, self.receive_size, device_index=0)
        except KpDeviceStatus as exc:
            self._deliver(getattr(exc, "raw", b""), exc)
        except KpTimeout as exc:
            self._fail_pending(DeviceTimeout(
                f"{self.name}: no inference result within {self.group.timeout_ms} ms "
                f"({exc.message})", device=self.name))
        except KpDisconnected as exc:
            self._die(exc)
            return False
        except KpError as exc:
            if self._stopping:
                return False
            self._fail_one(exc)
        else:
            self._deliver(raw, None)
        return True

    def _deliver(self, raw: bytes, error: KpError | None) -> None:
        """Give a result (or a firmware error) to the request whose number it carries."""
        if len(raw) < RESULT_HEADER_SIZE:
            # A bare 24-byte stamp names no request: it belongs to the oldest one.
            with self._cond:
                victim = self._pending.popitem(last=False)[1] if self._pending else None
            if victim is not None:
                victim.fail(error or DeviceProtocolError(
                    f"{self.name}: result of {len(raw)} bytes has no result header",
                    device=self.name))
            return
        number = int.from_bytes(raw[INF_NUMBER_OFFSET:INF_NUMBER_OFFSET + 4], "little")
        with self._cond:
            if number not in self._pending:
                log.warning("%s: dropping a result for inference number %d, which no request "
                            "is waiting for (a late result of a failed request)",
                            self.name, number)
                return
            skipped = []
            while True:
                key, request = self._pending.popitem(last=False)
                if key == number:
                    break
                skipped.append(request)
        for lost in skipped:
            if self._frame_drop():
                lost.fail(FrameDropped(f"{self.name}: inference {lost.number} was dropped by "
                                       "the device (frame_drop): its input queue was full",
                                       device=self.name))
            else:
                lost.fail(DeviceProtocolError(
                    f"{self.name}: the result of inference {number} arrived before that of "
                    f"{lost.number} although frame drop is off", device=self.name))
        if error is not None:
            request.fail(error)
        else:
            self.completed += 1
            request.finish(raw)

    def _fail_one(self, error: KpError) -> None:
        """One unreadable result (bad magic or job id, a stalled or failed read): it is the
        result of the request its header names when the error carries the message
        (``.raw``), else of the oldest pending one (results come in request order). The
        other requests keep waiting for their own results."""
        raw = getattr(error, "raw", b"") or b""
        if len(raw) >= RESULT_HEADER_SIZE:
            number = int.from_bytes(raw[INF_NUMBER_OFFSET:INF_NUMBER_OFFSET + 4], "little")
            with self._cond:
                victim = self._pending.pop(number, None)
            if victim is not None:
                victim.fail(error)
                return
        with self._cond:
            victim = self._pending.popitem(last=False)[1] if self._pending else None
        if victim is not None:
            victim.fail(error)

    def _fail_pending(self, error: BaseException) -> None:
        with self._cond:
            victims = list(self._pending.values())
            self._pending.clear()
        for req in victims:
            req.fail(error)

    def _die(self, error: BaseException) -> None:
        """The dongle is gone: fail everything now and later."""
        with self._cond:
            if self.dead is None:
                self.dead = error
            victims = list(self._queue) + list(self._pending.values())
            self._queue.clear()
            self._pending.clear()
            self._cond.notify_all()
        log.error("%s failed: %s", self.name, error)
        for req in victims:
            req.fail(error)

    def __repr__(self) -> str:
        state = "dead" if self.dead else ("stopping" if self._stopping else "running")
        return f"<DeviceWorker {self.name} {state} outstanding={self.outstanding}>"
