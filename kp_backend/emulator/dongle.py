"""``VirtualDongle``: one virtual KL520 / KL720 with its identity, boot state and firmware.

The dongle keeps what survives a reboot (chip, KN number, bus and port, link speed, twins,
faults, timing); everything else lives in a :class:`~kp_backend.emulator.firmware.Firmware`
that is replaced at every boot. A reboot or firmware upload takes the device off the bus
for the re-enumeration delay, then it comes back with the same bus, ports, serial and KN
number, a new address and a new *generation*: handles of the old enumeration fail with
NO_DEVICE (-4).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Iterable, Mapping

from kp_backend.emulator import descriptors
from kp_backend.emulator.compute import COMPUTE_MODES, OnnxTwin
from kp_backend.emulator.endpoint import LIBUSB_ERROR_NO_DEVICE, TransferError
from kp_backend.emulator.faults import FaultPlan
from kp_backend.emulator.firmware import BootState, Firmware
from kp_backend.emulator.timing import Link, TimingModel, make_timing
from kp_backend.npu_types import PRODUCT_ID_BY_CHIP, Chip, parse_chip
from kp_backend.protocol.constants import UsbSpeed
from kp_backend.protocol.wire import port_id_from_ports, port_path

__all__ = ["VirtualDongle", "DEFAULT_KN_NUMBER", "DEFAULT_BUS", "DEFAULT_PORTS"]

log = logging.getLogger(__name__)

DEFAULT_KN_NUMBER = 0x1A2B3C4D
DEFAULT_BUS = 1
DEFAULT_PORTS = (2, 3)
_SPEEDS = {"high": UsbSpeed.KP_USB_SPEED_HIGH, "hs": UsbSpeed.KP_USB_SPEED_HIGH,
           "super": UsbSpeed.KP_USB_SPEED_SUPER, "ss": UsbSpeed.KP_USB_SPEED_SUPER}
_BOOTS = {"flash": BootState.FLASH, "usb": BootState.LOADER, "loader": BootState.LOADER}
_ids = itertools.count(1)


def _parse_port(port: Any) -> tuple[int, tuple[int, ...]] | None:
    """``None``, ``(bus, (p0, p1, ...))`` or ``"bus-p0-p1"``."""
    if port is None:
        return None
    if isinstance(port, str):
        try:
            parts = [int(x) for x in port.split("-")]
        except ValueError:
            parts = []
        if len(parts) < 2:
            raise ValueError(f"port {port!r} not understood; expected 'bus-port[-port...]' "
                             "such as '1-2-3'")
        return parts[0], tuple(parts[1:])
    try:
        bus, ports = port
        ports = tuple(int(p) for p in ports)
    except (TypeError, ValueError):
        raise ValueError(f"port {port!r} not understood; expected (bus, (port, ...)) or "
                         "'bus-port[-port...]'") from None
    if not 1 <= len(ports) <= 7 or not all(1 <= p <= 31 for p in ports):
        raise ValueError(f"port numbers {ports} invalid; expected 1..7 numbers in 1..31")
    return int(bus), ports


class VirtualDongle:
    """A virtual Kneron dongle (see ``docs/emulator.md``).

    :param chip: ``"KL520"`` or ``"KL720"``.
    :param port: ``(bus, (ports...))`` or ``"1-2-3"``; assigned by the backend when None
        (first dongle bus 1, ports 2-3, i.e. port id 393).
    :param kn_number: the chip's KN number (serial string); assigned when None
        (0x1A2B3C4D for the first dongle).
    :param boot: ``"flash"`` (application firmware 0x00B1 at power-on) or ``"usb"`` (KL520:
        the KDP2 Loader 0x0083 at power-on; ``"loader"`` is an alias).
    :param firmware_loaded: with ``boot="usb"``: start as if the host had already uploaded
        SCPU and NCPU firmware (application 0x00B0). KL720 supports USB boot only this way
        (its DFU/minion flow is not modelled).
    :param npu_time: seconds per inference, or ``{model_id: seconds}`` (key None = default).
    :param link_speed: ``"high"`` or ``"super"``; default high for KL520, super for KL720.
    :param timing: ``"realistic"`` (default), ``"fast"`` (no added latency) or a
        :class:`~kp_backend.emulator.timing.TimingModel`.
    :param faults: fault rules as data (:mod:`kp_backend.emulator.faults`).
    :param compute: ``"auto"``, ``"pseudo_random"``, ``"transcript_pattern"`` or a callable
        taking a :class:`~kp_backend.emulator.compute.ComputeRequest` and returning the raw
        bytes of each output node.
    :param log_endpoint: present the interrupt log endpoint 0x83 (default False).
    """

    def __init__(self, chip: str | Chip = "KL520", *, port: Any = None,
                 kn_number: int | None = None, boot: str = "flash",
                 firmware_loaded: bool = False,
                 npu_time: float | Mapping[int | None, float] | None = None,
                 link_speed: str | UsbSpeed | None = None,
                 timing: str | TimingModel = "realistic",
                 faults: Iterable[Any] | FaultPlan | None = None,
                 compute: Any = "auto", log_endpoint: bool = False) -> None:
        self.chip = parse_chip(chip)
        if self.chip not in (Chip.KL520, Chip.KL720):
            raise ValueError(f"chip {self.chip.name} is not emulated; expected KL520 or KL720")
        if boot not in _BOOTS:
            raise ValueError(f"boot {boot!r} not understood; expected 'flash' or 'usb'")
        state = _BOOTS[boot]
        if state is BootState.LOADER and firmware_loaded:
            state = BootState.USB
        if state is BootState.LOADER and self.chip is Chip.KL720:
            raise ValueError("a KL720 without firmware in flash starts in USB-DFU mode, which is "
                             "not emulated; use boot='flash' or boot='usb' with "
                             "firmware_loaded=True")
        self.speed = self._parse_speed(link_speed)
        if callable(compute) or compute in COMPUTE_MODES:
            self.compute = compute
        else:
            raise ValueError(f"compute {compute!r} not understood; expected one of "
                             f"{list(COMPUTE_MODES)} or a callable")
        self.power_on_state = state
        self.product_id = PRODUCT_ID_BY_CHIP[self.chip]
        self.packet_size = descriptors.packet_size(self.speed)
        self.timing = make_timing(self.chip, self.speed, timing, npu_time)
        self.link = Link(self.timing)
        self.faults = FaultPlan(faults)
        self.log_endpoint = bool(log_endpoint)
        position = _parse_port(port)
        self.bus, self.port_numbers = position if position else (None, ())
        self.kn_number = None if kn_number is None else int(kn_number) & 0xFFFFFFFF
        self.twins: dict[int, OnnxTwin] = {}
        # one lock for all state of this dongle; the main condition is for the firmware's
        # own waits and settle(), the endpoints add their own (see endpoint.py)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.generation = 0
        self.address = 0
        self.present = False
        self.configuration = 0
        self.claimed_by: int | None = None
        self._id = next(_ids)
        self._firmware: Firmware | None = None
        self._timer: threading.Thread | None = None
        self._closed = False
        self.settling = 0  # threads inside settle(): only they need phase-change wake-ups
        self._powered = False

    @staticmethod
    def _parse_speed_value(value: Any) -> UsbSpeed:
        if isinstance(value, str):
            try:
                return _SPEEDS[value.strip().lower()]
            except KeyError:
                raise ValueError(f"link speed {value!r} not understood; expected 'high' or "
                                 "'super'") from None
        return UsbSpeed(int(value))

    def _parse_speed(self, link_speed: Any) -> UsbSpeed:
        if link_speed is None:
            return UsbSpeed.KP_USB_SPEED_HIGH if self.chip is Chip.KL520 else UsbSpeed.KP_USB_SPEED_SUPER
        speed = self._parse_speed_value(link_speed)
        if speed not in (UsbSpeed.KP_USB_SPEED_HIGH, UsbSpeed.KP_USB_SPEED_SUPER):
            raise ValueError(f"link speed {speed.name} not emulated; expected high or super")
        if self.chip is Chip.KL520 and speed is UsbSpeed.KP_USB_SPEED_SUPER:
            raise ValueError("a KL520 is a USB 2.0 high-speed device; link_speed 'super' is "
                             "impossible")
        return speed

    # -- identity ------------------------------------------------------------------------------
    def assign_defaults(self, bus: int, ports: tuple[int, ...], kn_number: int) -> None:
        """Called by the backend before power-on for fields left unset."""
        if self.bus is None:
            self.bus, self.port_numbers = bus, tuple(ports)
        if self.kn_number is None:
            self.kn_number = kn_number

    @property
    def port_id(self) -> int:
        """Kneron's ``usb_port_id`` (PROTOCOL.md §1.5)."""
        return port_id_from_ports(self.bus or 0, self.port_numbers)

    @property
    def port_path(self) -> str:
        return port_path(self.bus or 0, self.port_numbers)

    @property
    def thread_prefix(self) -> str:
        return f"kp-emu-{self._id}-{self.chip.name}-{self.port_path}"

    @property
    def state(self) -> str:
        """``"loader"``, ``"usb"``, ``"flash"`` or ``"absent"`` (off the bus)."""
        fw = self._firmware
        return fw.state.value if self.present and fw is not None else "absent"

    @property
    def bcd_device(self) -> int:
        return self._firmware.bcd_device if self._firmware else 0

    @property
    def firmware(self) -> Firmware:
        """The firmware of the current boot (for tests and inspection)."""
        if self._firmware is None:
            raise RuntimeError("the dongle is not powered on; attach it to a VirtualUsbBackend")
        return self._firmware

    def device_descriptor(self) -> bytes:
        return descriptors.device_descriptor(self.chip, self.speed, self.bcd_device)

    def config_descriptor(self) -> bytes:
        return descriptors.config_descriptor(self.chip, self.speed, self.log_endpoint)

    def string_descriptor(self, index: int) -> bytes | None:
        return descriptors.string_descriptor(index, self.chip, self.kn_number or 0)

    # -- twins -----------------------------------------------------------------------------------
    def set_twin(self, model_id: int, onnx_model: Any) -> None:
        """Compute ``model_id``'s outputs with an ONNX model (a ``ModelProto``, bytes or a
        path). Allowed before the model is loaded; checked against it when it is."""
        twin = onnx_model if isinstance(onnx_model, OnnxTwin) else OnnxTwin(onnx_model)
        fw = self._firmware
        if fw is not None and fw.loaded is not None and model_id in fw.loaded.models:
            twin.check(fw.loaded.models[model_id])
        self.twins[int(model_id)] = twin

    # -- power and enumeration ---------------------------------------------------------------------
    def power_on(self) -> None:
        with self.cond:
            if self._powered or self._closed:
                return
            self._powered = True
        self._boot(self.power_on_state, ncpu_loaded=self.power_on_state is not BootState.LOADER)

    def _boot(self, state: BootState, ncpu_loaded: bool) -> None:
        fw = Firmware(self, state, ncpu_loaded)
        with self.cond:
            if self._closed:
                return
            self.generation += 1
            fw.generation = self.generation
            self._firmware = fw
            self.address = (self.address % 120) + 1
            self.configuration = 0
            self.claimed_by = None
            self.present = True
            self.cond.notify_all()
        fw.start()

    def _go_off_bus(self, join: bool) -> None:
        with self.cond:
            self.present = False
            fw = self._firmware
            self.cond.notify_all()
        if fw is not None:
            fw.stop(join=join)

    def _schedule_boot(self, state: BootState, ncpu_loaded: bool) -> None:
        delay = self.timing.reenumerate_delay_s

        def come_back() -> None:
            deadline = time.monotonic() + delay
            with self.cond:
                while not self._closed and time.monotonic() < deadline:
                    self.cond.wait(max(deadline - time.monotonic(), 0))
                if self._closed:
                    return
            self._boot(state, ncpu_loaded)
            with self.cond:
                self._timer = None
                self.cond.notify_all()

        timer = threading.Thread(target=come_back, name=f"{self.thread_prefix}-reenum", daemon=True)
        with self.cond:
            self._timer = timer
        timer.start()

    def reboot(self, join: bool = True) -> None:
        """Software reset (control 0xFF): off the bus, back after the re-enumeration delay in
        the power-on state of this boot mode (a USB-boot KL520 loses its firmware)."""
        state = BootState.FLASH if self.power_on_state is BootState.FLASH else BootState.LOADER
        if self.power_on_state is BootState.USB and self.chip is Chip.KL720:
            state = BootState.USB  # no DFU model: a KL720 comes back as it was
        self._go_off_bus(join)
        self._schedule_boot(state, ncpu_loaded=state is not BootState.LOADER)

    def reboot_from_firmware(self, state: BootState, ncpu_loaded: bool) -> None:
        """A firmware thread asks for a re-enumeration (loader -> application)."""
        self._go_off_bus(join=False)
        self._schedule_boot(state, ncpu_loaded)

    def unplug(self) -> None:
        """Leave the bus for good (shutdown, disconnect fault, or a test pulling the plug)."""
        own_thread = threading.current_thread().name.startswith(self.thread_prefix)
        self._go_off_bus(join=not own_thread)

    def disconnect_from_firmware(self) -> None:
        self._go_off_bus(join=False)

    def close(self) -> None:
        """Stop every thread of this dongle (idempotent)."""
        with self.cond:
            self._closed = True
            self.cond.notify_all()
            timer = self._timer
        self._go_off_bus(join=True)
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout=5)

    # -- host side (called by the USB backend) -------------------------------------------------
    def check(self, generation: int) -> Firmware:
        """The running firmware of the boot ``generation`` names (NO_DEVICE otherwise)."""
        with self.cond:
            return self._current(generation)

    def _current(self, generation: int) -> Firmware:
        """:meth:`check` without the lock, for the bulk path: the firmware is read first and
        carries its own generation, so a torn read cannot pair a stale handle with a new
        boot, and a boot that went away since has its endpoints gone (NO_DEVICE there)."""
        fw = self._firmware
        if fw is None or fw.generation != generation or not self.present:
            raise TransferError(LIBUSB_ERROR_NO_DEVICE)
        return fw

    def host_write(self, generation: int, data: bytes | memoryview,
                   deadline: float | None) -> int:
        """One bulk OUT transfer; ``data`` (possibly a view of the host's buffer) is not
        referenced once this returns."""
        fw = self._current(generation)
        self.link.occupy("out", len(data))
        return fw.out_ep.host_write(data, deadline)

    def host_read(self, generation: int, target: memoryview, deadline: float | None) -> int:
        """One bulk IN transfer into ``target`` (a writable byte view); the byte count."""
        fw = self._current(generation)
        n = fw.in_ep.host_read(target, deadline)
        self.link.occupy("in", n)
        return n

    def vendor_control(self, generation: int, request: int, value: int, index: int) -> str:
        """``"ack"`` or ``"stall"``; reboots and shutdowns are acknowledged, then happen."""
        fw = self.check(generation)
        action = fw.control(request, value, index)
        if action == "reboot":
            self.reboot()
            return "ack"
        if action == "shutdown":
            self.unplug()
            return "ack"
        return action

    # -- test helpers ---------------------------------------------------------------------------
    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing on the device can progress without the host (queues drained
        into blocked states, re-enumeration finished). True when settled in time."""
        deadline = time.monotonic() + timeout
        with self.cond:
            self.settling += 1
            if self._firmware is not None:
                self._firmware.out_ep.nudge()  # a request header whose wake-up was deferred
            try:
                return self._settle_locked(deadline)
            finally:
                self.settling -= 1

    def _settle_locked(self, deadline: float) -> bool:
        """settle()'s loop; the caller holds ``self.cond``."""
        while True:
            fw = self._firmware
            idle = self._closed or (self._timer is None and (
                not self.present or fw is None or fw.quiescent()))
            if idle:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.cond.wait(min(left, 0.05))

    def __repr__(self) -> str:
        return (f"VirtualDongle({self.chip.name}, port={self.port_path}, "
                f"kn=0x{(self.kn_number or 0):08X}, state={self.state})")
