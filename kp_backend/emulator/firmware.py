"""One boot of the KDP2 firmware of a virtual dongle (PROTOCOL.md §3, §7).

A :class:`Firmware` lives from power-on or reboot until the next reboot. It owns the two
bulk endpoints of that enumeration, the model and DDR state, the FIFO queues and three
daemon threads, the firmware's activities of §7.2:

* **receiver**: takes an input buffer (once the queues exist), receives one OUT message,
  runs a command handler inline (:mod:`~kp_backend.emulator.commands`; responses go out on
  IN, in order) or collects inference images (the collector of §7.2 runs inline here, it
  never blocks);
* **worker** (NPU): runs the oldest job (:mod:`~kp_backend.emulator.inference`), one result
  buffer per result, in request order;
* **sender**: sends the oldest result and waits for the host to read it.

Vendor control requests (§2.3) are handled in the host's thread by :meth:`Firmware.control`.

Decisions where the spec leaves room (README of the golden transcripts, "Device-side
choices", which the replay tests hold us to): the DDR heap tail starts at
``DDR_HEAP_TAIL`` and is lowered by the FIFO allocation; with frame dropping on, a waiting
request is discarded only when a new message actually arrives; the KDP2 Loader answers only
the SCPU LOAD_FIRMWARE; images sent before the queues exist wait (holding no input buffer)
until control 0x82 creates them.
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

from kp_backend.emulator.commands import CommandHandlers, LoadedModels, Stopped
from kp_backend.emulator.endpoint import Aborted, InEndpoint, OutEndpoint
from kp_backend.emulator.fifo import Fifo, Job
from kp_backend.emulator.inference import InferenceRunner
from kp_backend.npu_types import Chip
from kp_backend.protocol.constants import (
    BCD_COMPANION_FLASH_BOOT,
    BCD_COMPANION_USB_BOOT,
    BCD_LOADER,
    BYPASS_REQUEST_HEADER_SIZE,
    DDR_BEGIN,
    DDR_HEAP_LOWER_BOUND,
    DDR_HEAP_TAIL,
    IMAGE_REQUEST_HEADER_SIZE,
    MAGIC_COMMAND,
    MAGIC_INFERENCE,
    STAMP_SIZE,
    ControlRequest,
    JobId,
)
from kp_backend.protocol.wire import (
    BypassRequestHeader,
    ImageRequestHeader,
    InferenceStamp,
    WireError,
    first_word,
    parse_fifoq_configure_setup,
    parse_heap_boundary_setup,
)

if TYPE_CHECKING:  # pragma: no cover
    from kp_backend.emulator.dongle import VirtualDongle

__all__ = ["BootState", "BCD_BY_STATE", "Firmware", "LoadedModels", "SYSTEM_RESERVE_BUFFER"]

log = logging.getLogger(__name__)


class BootState(enum.Enum):
    LOADER = "loader"
    USB = "usb"  # companion firmware after a host upload
    FLASH = "flash"


# What firmware threads wait for, one condition each: "rx" the receiver (an input buffer,
# frame dropping), "npu" the worker (a queued job), "results" the worker (a result buffer),
# "tx" the sender (a queued result), "stop" (the worker's NPU sleep, a dead receiver).
WAITS = ("rx", "npu", "results", "tx", "stop")
BCD_BY_STATE = {BootState.LOADER: BCD_LOADER, BootState.USB: BCD_COMPANION_USB_BOOT,
                BootState.FLASH: BCD_COMPANION_FLASH_BOOT}
# Receive buffer before the FIFO queues exist (§3.4 item 5).
SYSTEM_RESERVE_BUFFER = {Chip.KL520: 192_512, Chip.KL720: 24 * 1024}


def _split(parts: list[bytes], head: int, total: int) -> tuple[bytes, bytes]:
    """(header, payload) of an inference message of ``total`` bytes received as ``parts``:
    bytes ``[0, head)`` and ``[head, total)``. When the header came as a message of its own
    (the host's way) the payload is the data message itself, not a copy."""
    if len(parts) > 1 and len(parts[0]) == head <= total:
        body = parts[1] if len(parts) == 2 else b"".join(parts[1:])
        return parts[0], body if len(body) <= total - head else body[:total - head]
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    return data[:min(head, total)], data[head:total]


class Firmware(CommandHandlers, InferenceRunner):
    """The firmware of one boot; see the module docstring."""

    APPLICATION_USB_BOOT = BootState.USB  # where the Loader goes after an SCPU upload

    def __init__(self, dongle: "VirtualDongle", state: BootState, ncpu_loaded: bool) -> None:
        self.dongle = dongle
        self.chip: Chip = dongle.chip
        self.cond: threading.Condition = dongle.cond  # settle() and the lock of everything
        # each thread waits on its own condition: woken only by what it waits for (_wake)
        self._conds = {what: threading.Condition(dongle.lock) for what in WAITS}
        self.state = state
        self.ncpu_loaded = ncpu_loaded
        self.generation = 0  # set by the dongle when this boot enumerates
        packet = dongle.packet_size
        self.out_ep = OutEndpoint(dongle.lock, packet, length_rule=self.chip is Chip.KL520,
                                  on_change=self._out_changed)
        self.in_ep = InEndpoint(dongle.lock, packet)
        pid = dongle.product_id
        self.ddr_begin = DDR_BEGIN[pid]
        self.heap_tail = DDR_HEAP_TAIL[pid]
        self.heap_boundary = DDR_HEAP_LOWER_BOUND[pid]
        self.loaded: LoadedModels | None = None
        self.fifo: Fifo | None = None
        self.frame_drop = False
        self._early_jobs: list[Job] = []
        self._collecting_early: Job | None = None
        self.stopped = False
        self.dead = False  # the receive thread exited (oversized inference, §3.4)
        self.phase = {"rx": "start", "npu": "idle", "tx": "idle"}
        # a receive into the system reserve buffer is posted (no FIFO queues yet)
        self._reserve_posted = False
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        name = self.dongle.thread_prefix
        for role, target in (("rx", self._receiver), ("npu", self._worker), ("tx", self._sender)):
            t = threading.Thread(target=self._run, args=(target,), name=f"{name}-{role}",
                                 daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, join: bool = True) -> None:
        with self.cond:
            self.stopped = True
            self.out_ep.disconnect()
            self.in_ep.disconnect()
            self._wake(*WAITS)
            self.cond.notify_all()
        if join:
            me = threading.current_thread()
            for t in self._threads:
                # a thread whose start() failed (or has not run yet) cannot be joined
                if t is not me and t.ident is not None:
                    t.join(timeout=5)

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except (Stopped, Aborted):
            pass
        except Exception:  # a bug must not kill the interpreter; the dongle just hangs
            log.exception("virtual dongle %s: firmware thread crashed", self.dongle.port_path)

    def _wait(self, what: str, deadline: float | None = None) -> bool:
        """Wait for ``what`` (one of :data:`WAITS`; caller holds the lock); raises Stopped
        once stopped."""
        if self.stopped:
            raise Stopped()
        if deadline is None:
            self._conds[what].wait()
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._conds[what].wait(left)
        if self.stopped:
            raise Stopped()
        return True

    def _wake(self, *whats: str) -> None:
        """Wake the threads waiting for ``whats`` (caller holds the lock), and settle() if
        it watches: every change of the firmware's state goes through here or _set_phase."""
        for what in whats:
            self._conds[what].notify_all()
        if self.dongle.settling:
            self.cond.notify_all()

    def _sleep(self, seconds: float) -> None:
        """Sleep (the worker's NPU time) unless stopped."""
        if seconds <= 0:
            return
        deadline = time.monotonic() + seconds
        with self.cond:
            while self._wait("stop", deadline):
                pass

    def _set_phase(self, role: str, phase: str) -> None:
        self.phase[role] = phase
        if self.dongle.settling:
            # Phases only feed quiescent(); waking every thread of the dongle (and the host
            # threads blocked in transfers) at each change costs more than the work itself
            # (benchmarks: host_overhead_us, pipeline_efficiency).
            self.cond.notify_all()

    def _stopped(self) -> bool:
        return self.stopped

    def _out_changed(self) -> None:
        """The OUT endpoint posted a receive, or a host transfer waits (or gave up) with no
        receive posted (caller holds the lock): only a receiver waiting for an input buffer
        (frame dropping looks at waiting transfers) and settle() care, so the other threads
        are not woken."""
        if self.phase["rx"] == "wait_input":
            self._wake("rx")
        elif self.dongle.settling:
            self.cond.notify_all()

    @property
    def bcd_device(self) -> int:
        return BCD_BY_STATE[self.state]

    @property
    def in_loader(self) -> bool:
        return self.state is BootState.LOADER

    # -- settle predicate (for tests and the replay) ---------------------------------------------
    def quiescent(self) -> bool:
        """True when no activity can progress without the host (caller holds the lock)."""
        if self.stopped:
            return True
        fifo = self.fifo
        rx = self.phase["rx"]
        if rx == "wait_input":
            ok_rx = fifo is not None and fifo.free_inputs == 0 and not (
                fifo.frame_drop and fifo.image_queue and self.out_ep.host_waiting)
        elif rx == "wait_host":
            ok_rx = self.out_ep.armed and not self.out_ep.host_waiting
        else:
            ok_rx = rx in ("respond", "dead")
        npu = self.phase["npu"]
        if npu == "idle":
            ok_npu = fifo is None or not fifo.image_queue
        else:
            ok_npu = npu == "wait_result" and fifo is not None and fifo.free_results == 0
        tx = self.phase["tx"]
        ok_tx = tx == "sending" or (tx == "idle" and (fifo is None or not fifo.result_queue))
        return ok_rx and ok_npu and ok_tx

    # -- receiver --------------------------------------------------------------------------------
    def _receiver(self) -> None:
        while True:
            with self.cond:
                if self.dead:
                    self._set_phase("rx", "dead")
                    while True:
                        self._wait("stop")
                size, owned = self._take_input_buffer()
                self._set_phase("rx", "wait_host")
                self._reserve_posted = not owned
            try:
                try:
                    msg = self.out_ep.receive(size, stopped=self._stopped,
                                              then=functools.partial(self._follow_up, size))
                finally:
                    with self.cond:
                        self._reserve_posted = False
                if msg is None:
                    continue
                with self.cond:
                    self._set_phase("rx", "busy")
                if self.dongle.faults.on_message():
                    self.dongle.disconnect_from_firmware()
                    raise Stopped()
                if first_word(msg) == MAGIC_INFERENCE:
                    collected = self._receive_inference(msg, size, owned)
                    owned = owned and not collected
                else:
                    self._dispatch_command(msg)
            except Aborted:
                log.debug("virtual dongle %s: receive aborted", self.dongle.port_path)
                if self.stopped:
                    raise Stopped() from None
            finally:
                if owned:
                    with self.cond:
                        self.fifo.release_inputs(1)

    def _follow_up(self, size: int, head: bytes, length: int) -> int | None:
        """The receive the receiver posts next after a message of ``length`` bytes starting
        with ``head`` arrived in a ``size``-byte buffer: the rest of an inference request
        (exactly what :meth:`_receive_inference` asks for first), else None. Called by the
        OUT endpoint in the host's thread, lock held, so the host's data write finds the
        receive posted (and the receiver is woken once, for the whole request). Not when a
        fault rule counts messages (that rule may disconnect first), nor while settle()
        watches (it must see the header processed)."""
        if (self.stopped or length < STAMP_SIZE or len(head) < STAMP_SIZE
                or first_word(head) != MAGIC_INFERENCE or self.dongle.faults.counts_messages
                or self.dongle.settling):
            return None
        total = InferenceStamp.parse(head).total_size
        return size - length if length < total <= size else None

    def _take_input_buffer(self) -> tuple[int, bool]:
        """Caller holds the lock. Returns the receive buffer size and whether it is one of
        the FIFO's input buffers (False: the system reserve buffer)."""
        while True:
            if self.fifo is None:
                return SYSTEM_RESERVE_BUFFER[self.chip], False
            if self.fifo.try_take_input(self.out_ep.host_waiting):
                return self.fifo.input_size, True
            self._set_phase("rx", "wait_input")
            self._wait("rx")

    def _send(self, data: bytes, deadline: float | None = None) -> bool:
        with self.cond:
            self._set_phase("rx", "respond")
        return self.in_ep.send(data, deadline, stopped=self._stopped)

    def _receive_inference(self, first: bytes, size: int, owned: bool) -> bool:
        """Collect one inference message; True when its input buffer now belongs to a job.
        ``owned`` is False when it was received into the system reserve buffer (no FIFO
        queues yet when the receive was posted)."""
        if len(first) < STAMP_SIZE:
            return False
        stamp = InferenceStamp.parse(first)
        if stamp.total_size > size:
            log.error("virtual dongle %s: inference of %d bytes exceeds the %d-byte buffer; "
                      "receive thread exits (reboot needed)", self.dongle.port_path,
                      stamp.total_size, size)
            with self.cond:
                self.dead = True
            return False
        parts = [first]
        got = len(first)
        corrupt = False
        while got < stamp.total_size:
            with self.cond:
                self._set_phase("rx", "wait_host")
            more = self.out_ep.receive(size - got, stopped=self._stopped)
            if more is None:
                continue
            if first_word(more) == MAGIC_COMMAND:
                corrupt = True
            parts.append(more)
            got += len(more)
        with self.cond:
            self._set_phase("rx", "busy")
        if corrupt:
            log.warning("virtual dongle %s: command inside inference data, message discarded",
                        self.dongle.port_path)
            return False
        try:
            if stamp.job_id == JobId.GENERIC_RAW_IMAGE:
                head, payload = _split(parts, IMAGE_REQUEST_HEADER_SIZE, stamp.total_size)
                header = ImageRequestHeader.parse(head)
                inf_no, model_id = header.inference_number, header.model_id
            elif stamp.job_id == JobId.GENERIC_RAW_BYPASS_PRE_PROC:
                head, payload = _split(parts, BYPASS_REQUEST_HEADER_SIZE, stamp.total_size)
                header = BypassRequestHeader.parse(head)
                inf_no, model_id = header.inference_number, header.model_id
            else:
                _, payload = _split(parts, STAMP_SIZE, stamp.total_size)
                header, inf_no, model_id = stamp, 0, 0
        except WireError:
            return False
        with self.cond:
            if not owned:  # holds no input buffer: waits for (or joins) the queues as is
                job = self._collecting_early or Job(stamp.job_id, inf_no, model_id)
                job.images[stamp.image_index] = (header, payload)
                self._collecting_early = job
                if len(job.images) >= max(stamp.total_image, 1):
                    self._collecting_early = None
                    if self.fifo is None:
                        self._early_jobs.append(job)
                    else:
                        self.fifo.image_queue.append(job)
                        self._wake("npu")
                return False
            self.fifo.collect(stamp.job_id, header, payload, stamp.total_image,
                              stamp.image_index, inf_no, model_id)
        return True

    # -- vendor control requests (host thread, §2.3) -----------------------------------------------
    def control(self, request: int, value: int, index: int) -> str:
        """Handle a vendor request: ``"ack"``, ``"stall"``, ``"reboot"`` or ``"shutdown"``."""
        with self.cond:
            if request in (ControlRequest.REBOOT, ControlRequest.REBOOT_SYSTEM):
                return "reboot"
            if request == ControlRequest.SHUTDOWN:
                return "shutdown" if self.chip is Chip.KL520 else "stall"
            if request == ControlRequest.FIFOQ_RESET:
                if self.fifo is not None:
                    self.fifo.reset()
                    self.frame_drop = False
                    self.out_ep.abort()
                    self.in_ep.abort()
                return "ack"
            if self.state is BootState.LOADER:
                return "stall"
            if request == ControlRequest.FIFOQ_ENABLE_DROPPABLE:
                self.frame_drop = value == 1
                if self.fifo is not None:
                    self.fifo.frame_drop = self.frame_drop
                self._wake("rx")
                return "ack"
            if request == ControlRequest.DDR_HEAP_BOUNDARY_ADJUST:
                address = parse_heap_boundary_setup(value, index)
                if address >= self.heap_tail:
                    return "stall"
                self.heap_boundary = address
                return "ack"
            if request == ControlRequest.FIFOQ_CONFIGURE:
                return self._configure_fifo(value, index)
            return "stall"  # 0x81, 0x86 and anything else

    def _configure_fifo(self, value: int, index: int) -> str:
        if self.fifo is not None or self.dongle.faults.refuse_fifo():
            return "stall"
        in_count, in_size, res_count, res_size = parse_fifoq_configure_setup(value, index)
        need = in_count * in_size + res_count * res_size
        if self.heap_boundary + need > self.heap_tail:
            return "stall"
        self.heap_tail -= need
        self.fifo = Fifo(self._wake, in_count, in_size, res_count, res_size)
        self.fifo.frame_drop = self.frame_drop
        self.fifo.image_queue.extend(self._early_jobs)
        self._early_jobs.clear()
        if self._reserve_posted and not self.out_ep.host_waiting:
            # Decision: the receive posted into the system reserve buffer before the queues
            # existed is re-posted with an input buffer (nothing has arrived in it), as the
            # hardware must do: Kneron's host sends a first 224x224 RGBA image (200,704 B,
            # more than the KL520's 192,512-B reserve buffer) right after this control.
            self.out_ep.abort()
        self._wake(*WAITS)
        return "ack"

    # -- worker (NPU) ------------------------------------------------------------------------------
    def _next(self, role: str, queue: str, busy: str):
        """Wait until the FIFO exists and its ``queue`` has an item; pop it (phase ``busy``)."""
        with self.cond:
            while self.fifo is None or not getattr(self.fifo, queue):
                self._set_phase(role, "idle")
                self._wait(role)
            self._set_phase(role, busy)
            return self.fifo, getattr(self.fifo, queue).popleft()

    def _worker(self) -> None:
        while True:
            fifo, job = self._next("npu", "image_queue", "busy")
            for result in self._job_results(job):
                with self.cond:
                    while not fifo.take_result_buffer():
                        self._set_phase("npu", "wait_result")
                        self._wait("results")
                    self._set_phase("npu", "busy")
                message = self.dongle.faults.on_result(result())
                with self.cond:
                    if message is None:
                        fifo.release_result(1)
                    else:
                        fifo.push_result(message)
            with self.cond:
                fifo.release_inputs(job.held)

    # -- sender --------------------------------------------------------------------------------------
    def _sender(self) -> None:
        while True:
            with self.cond:
                while self.fifo is None or not self.fifo.result_queue:
                    self._set_phase("tx", "idle")
                    self._wait("tx")
                self._set_phase("tx", "sending")
            # The previous result is transmitted before the next one is taken (so that a
            # FIFO reset meanwhile discards the next one with the rest of the queue). It is
            # waited for only now that there is a next one: a host read that completes a
            # result wakes nobody (benchmarks: host_overhead_us).
            self.in_ep.wait_sent(self._stopped)
            with self.cond:
                fifo = self.fifo
                if fifo is None or not fifo.result_queue:
                    continue  # a FIFO reset emptied the queue meanwhile
                message = fifo.result_queue.popleft()
            # the result buffer is free again once the host has read the message (or it
            # was abandoned); that completion runs in the host's reading thread
            release = functools.partial(fifo.release_result, 1)
            if not self.in_ep.send(message, None, stopped=self._stopped, on_done=release):
                with self.cond:
                    fifo.release_result(1)
