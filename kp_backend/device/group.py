"""A connected group of Kneron devices: the host side of PROTOCOL.md §1.7, §4, §5, §6.

:class:`DeviceGroup` connects by USB port id, uploads firmware and models, sizes the
device FIFO queues, resets, and moves inference requests and results as raw bytes. It
knows nothing about Kneron's Python value classes; ``kp_backend.kp`` and the execution
provider build on it.

Sends are dealt round-robin over the devices; receives read from one device until a result
flagged "last crop" arrives (§6.5). One sender thread and one receiver thread may use a
group at the same time (per-device OUT and IN locks); the round-robin counters themselves
are guarded so that several senders do not corrupt them, but results are still matched by
inference number by the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from kp_backend.device.fifo import DdrManageAttributes, FifoPlan, plan_fifo
from kp_backend.device.link import DeviceLink, ModelInfoReply
from kp_backend.nef import NefError, NefFile, read_nef
from kp_backend.npu_types import CHIP_BY_PRODUCT_ID, Chip
from kp_backend.protocol.codes import ApiReturnCode
from kp_backend.protocol.constants import (
    BCD_KL720_MINION,
    BYTES_PER_PIXEL,
    BYPASS_REQUEST_HEADER_SIZE,
    CONNECT_SEARCH_INTERVAL_S,
    CONNECT_SEARCH_TRIES,
    CONNECT_SYSINFO_RETRIES,
    FIRMWARE_BUILD,
    FIRMWARE_VERSION,
    IMAGE_REQUEST_HEADER_SIZE,
    MAGIC_INFERENCE,
    MAX_CROP_BOX,
    MAX_DEVICES_PER_GROUP,
    KL720_NODE_TABLE_SIZE,
    PID_KL520,
    PID_KL720,
    PID_KL720_LEGACY,
    RECONNECT_PAUSE_S,
    RECONNECT_SEARCH_TRIES,
    RESULT_HEADROOM,
    RESULT_HEADER_SIZE,
    SCPU_FW_START,
    STAMP_SIZE,
    ControlRequest,
    FirmwareType,
    ResetMode,
)
from kp_backend.protocol.wire import (
    BypassRequestHeader,
    CropBox,
    ImageRequestHeader,
    LoadFirmwareRequest,
    LoadModelRequest,
    SystemInfoReply,
    fifoq_configure_setup,
    heap_boundary_setup,
    u32,
)
from kp_backend.usb import fw_state
from kp_backend.usb.errors import KpDeviceStatus, KpError
from kp_backend.usb.transport import UsbTransport, find_device

__all__ = ["DeviceGroup", "ModelEntry", "image_byte_count", "CONNECT_SYSINFO_TIMEOUT_MS"]

log = logging.getLogger(__name__)
RC = ApiReturnCode

#: GET_SYSTEM_INFO during connect when the group timeout is still 0 (= forever). Kneron
#: 2.2 waits forever there; we use PLUS 3.1's 5 s so that connect never hangs.
CONNECT_SYSINFO_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class ModelEntry:
    """What the send/receive checks need about one loaded model."""

    id: int
    input_count: int
    max_raw_out_size: int


def image_byte_count(width: int, height: int, image_format: int) -> int:
    """Bytes of a ``width`` × ``height`` image in ``image_format`` (PROTOCOL.md §5.2);
    ``KpError`` 12 for an unknown format."""
    bpp = BYTES_PER_PIXEL.get(int(image_format))
    if bpp is None:
        raise KpError(RC.KP_ERROR_INVALID_PARAM_12,
                      f"unknown image format 0x{int(image_format):02X}; expected one of "
                      + ", ".join(f"0x{int(f):02X}" for f in BYTES_PER_PIXEL))
    return int(width * height * bpp)


def _sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


class DeviceGroup:
    """Devices of one product id connected together. Create with :meth:`connect`."""

    #: Host pauses (PROTOCOL.md §2.4); class attributes so tests may shorten them.
    reconnect_pause_s = RECONNECT_PAUSE_S
    search_interval_s = CONNECT_SEARCH_INTERVAL_S

    def __init__(self, links: Sequence[DeviceLink], backend: Any = None) -> None:
        self.links: list[DeviceLink] = list(links)
        self.backend = backend
        self.timeout_ms = 0
        self.product_id = self.links[0].product_id if self.links else 0
        self.nef: NefFile | None = None
        self.models: dict[int, ModelEntry] = {}
        self.fifo: FifoPlan | None = None
        self.ddr_attributes = DdrManageAttributes()
        self._last_plan: FifoPlan | None = None
        self.frame_drop = False
        self._send_index = 0
        self._recv_index = 0
        self._counter_lock = threading.Lock()
        self._closed = False

    # == connect / disconnect ===========================================================
    @classmethod
    def connect(cls, port_ids: Sequence[int], backend: Any = None, *,
                check: bool = True) -> "DeviceGroup":
        """Open, claim and reset every device (§1.7). ``port_ids`` ``[0]`` = first device.

        Raises ``KpError`` 26 (count), 10 (``[0]`` and nothing present), 28 (port id not
        found / not openable / system info keeps failing), 27, 29, 24."""
        ids = [int(p) for p in port_ids]
        if not 1 <= len(ids) <= MAX_DEVICES_PER_GROUP:
            raise KpError(RC.KP_ERROR_DEVICES_NUMBER_26,
                          f"a group holds 1..{MAX_DEVICES_PER_GROUP} devices, got {len(ids)}")
        if len(set(ids)) != len(ids):
            raise KpError(RC.KP_ERROR_INVALID_PARAM_12, f"duplicate port ids in {ids}")
        for attempt in range(CONNECT_SYSINFO_RETRIES + 1):
            group = cls(cls._open_all(ids, backend), backend)
            try:
                group._check_mix()
                for link in group.links:
                    group._safe_fifo_reset(link)
                if not check:
                    return group
                failed = group._examine_all()
            except BaseException:
                group.close()
                raise
            if failed is None:
                return group
            group.close()
            if attempt == CONNECT_SYSINFO_RETRIES:
                raise KpError(RC.KP_ERROR_CONNECT_FAILED_28,
                              f"system info kept failing: {failed.message}", failed.device)
            log.info("connect: system info failed (%s); retrying", failed)
            _sleep(cls.reconnect_pause_s * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    @classmethod
    def _open_all(cls, ids: list[int], backend: Any) -> list[DeviceLink]:
        links: list[DeviceLink] = []
        try:
            for port_id in ids:
                links.append(DeviceLink(cls._open_port(port_id, backend, CONNECT_SEARCH_TRIES)))
        except BaseException:
            for link in links:
                link.close()
            raise
        return links

    @classmethod
    def _open_port(cls, port_id: int, backend: Any, tries: int) -> UsbTransport:
        dev = None
        for attempt in range(tries):
            dev = find_device(port_id, backend)
            if dev is not None or (port_id == 0 and attempt == 0):
                break
            _sleep(cls.search_interval_s)
        if dev is None:
            if port_id == 0:
                raise KpError(RC.KP_ERROR_DEVICE_NOT_EXIST_10, "no Kneron device is connected")
            raise KpError(RC.KP_ERROR_CONNECT_FAILED_28,
                          f"no Kneron device at usb port id {port_id} after {tries} searches")
        try:
            return UsbTransport(dev)
        except KpError as exc:
            if exc.kp_code == RC.KP_ERROR_CONFIGURE_DEVICE_27:
                raise
            raise KpError(RC.KP_ERROR_CONNECT_FAILED_28, f"cannot open: {exc.message}",
                          exc.device) from exc

    def _check_mix(self) -> None:
        pids = {link.product_id for link in self.links}
        if len(pids) > 1:
            raise KpError(RC.KP_ERROR_DEVICE_GROUP_MIX_PRODUCT_29,
                          "a group must hold one kind of device; product ids "
                          + ", ".join(f"0x{p:04X}" for p in sorted(pids)))
        for link in self.links:
            if not fw_state.is_kdp2(link.bcd):
                raise link.error(RC.KP_ERROR_INVALID_FIRMWARE_24,
                                 f"not running KDP2 firmware (bcdDevice 0x{link.bcd:04X}, "
                                 f"{link.info.firmware})")

    def _safe_fifo_reset(self, link: DeviceLink) -> None:
        try:
            link.fifo_reset(self.timeout_ms)
        except KpError as exc:  # Kneron ignores failures here
            log.debug("%s: FIFO reset at connect failed: %s", link.name, exc)

    def _sysinfo_timeout(self) -> int:
        return self.timeout_ms or CONNECT_SYSINFO_TIMEOUT_MS

    def _examine_all(self) -> KpError | None:
        for link in self.links:
            if not fw_state.is_application(link.bcd):
                continue
            try:
                self._check_version(link, link.get_system_info(self._sysinfo_timeout()))
            except KpError as exc:
                return exc
        return None

    @staticmethod
    def _check_version(link: DeviceLink, info: SystemInfoReply) -> None:
        version = (info.major, info.minor, info.update)
        if version != FIRMWARE_VERSION or info.build != FIRMWARE_BUILD:
            log.warning("%s: firmware %d.%d.%d build %d differs from the supported %d.%d.%d "
                        "build %d", link.name, *version, info.build, *FIRMWARE_VERSION,
                        FIRMWARE_BUILD)
        if info.major < 2:
            log.warning("%s: PLUS 1.x firmware uses another wire format; expect failures",
                        link.name)

    def close(self) -> None:
        """Release every device; idempotent."""
        if self._closed:
            return
        self._closed = True
        for link in self.links:
            link.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _require_open(self) -> None:
        if self._closed:
            raise KpError(RC.KP_ERROR_DEVICE_NOT_EXIST_10, "the device group is disconnected")

    def __enter__(self) -> "DeviceGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "disconnected" if self._closed else f"timeout={self.timeout_ms}ms"
        names = ", ".join(link.name for link in self.links)
        return f"<DeviceGroup pid=0x{self.product_id:04X} [{names}] {state}>"

    # == lookup, timeout ================================================================
    def set_timeout(self, milliseconds: int) -> None:
        """One timeout (ms) for every later transfer; 0 = wait forever."""
        if milliseconds < 0:
            raise KpError(RC.KP_ERROR_INVALID_PARAM_12,
                          f"timeout must be >= 0 ms (0 = forever), got {milliseconds}")
        self.timeout_ms = int(milliseconds)

    def link(self, port_id: int) -> DeviceLink:
        """The device with ``port_id``; ``KpError`` 10 when it is not in the group."""
        self._require_open()
        for link in self.links:
            if link.port_id == port_id:
                return link
        raise KpError(RC.KP_ERROR_DEVICE_NOT_EXIST_10,
                      f"usb port id {port_id} is not in this group (ports "
                      f"{[link.port_id for link in self.links]})")

    def _link_at(self, index: int) -> DeviceLink:
        self._require_open()
        if not 0 <= index < len(self.links):
            raise KpError(RC.KP_ERROR_INVALID_PARAM_12,
                          f"device index {index} out of range 0..{len(self.links) - 1}")
        return self.links[index]

    # == reconnect ======================================================================
    def _reconnect(self, link: DeviceLink, *, fifo_reset: bool = False) -> None:
        """Close, pause, and find the device again by port id (after a reboot/upload)."""
        port_id = link.port_id
        link.close()
        _sleep(self.reconnect_pause_s)
        try:
            link.transport = self._open_port(port_id, self.backend, RECONNECT_SEARCH_TRIES)
        except KpError as exc:
            raise KpError(RC.KP_ERROR_DEVICE_NOT_EXIST_10,
                          f"did not come back after a reboot: {exc.message}",
                          link.name) from exc
        if fifo_reset:
            link.control(ControlRequest.FIFOQ_RESET, 0, 0, self.timeout_ms)

    def _reboot_and_reconnect(self, link: DeviceLink) -> None:
        """Reboot an application-firmware device, reconnect, check its system info
        (up to 3 attempts; 10 when it does not come back)."""
        link.control_reboot(ControlRequest.REBOOT, self.timeout_ms)
        last: KpError | None = None
        for _ in range(CONNECT_SYSINFO_RETRIES):
            try:
                self._reconnect(link)
                if fw_state.is_application(link.bcd):
                    self._check_version(link, link.get_system_info(self._sysinfo_timeout()))
                return
            except KpError as exc:
                last = exc
        raise KpError(RC.KP_ERROR_DEVICE_NOT_EXIST_10,
                      f"did not come back after a reboot ({last.message if last else ''})",
                      link.name)

    # == system / model info =============================================================
    def get_system_info(self, port_id: int) -> SystemInfoReply:
        return self.link(port_id).get_system_info(self.timeout_ms)

    def get_model_info(self, port_id: int) -> ModelInfoReply:
        return self.link(port_id).get_model_info(self.timeout_ms)

    # == firmware ========================================================================
    def load_firmware(self, scpu: bytes, ncpu: bytes) -> None:
        """Upload SCPU + NCPU firmware (KL520 USB-boot flow, §4.6). Flash-boot devices
        are skipped with a log notice."""
        self._require_open()
        for link in self.links:
            if link.product_id == PID_KL520:
                self._load_firmware_520(link, bytes(scpu), bytes(ncpu))
            elif link.bcd == BCD_KL720_MINION:
                raise link.error(RC.KP_ERROR_INVALID_FIRMWARE_24,
                                 "KL720 minion-loader firmware upload is not supported by "
                                 "kp_backend (the dongle needs firmware in flash)")
            else:
                log.info("%s: firmware boots from flash; load_firmware skipped", link.name)

    def _load_firmware_520(self, link: DeviceLink, scpu: bytes, ncpu: bytes) -> None:
        kind = fw_state.boot_type(link.bcd)
        if kind == "flash":
            log.info("%s: flash-boot firmware; load_firmware skipped", link.name)
            return
        if kind not in ("usb", "loader", "jtag"):
            raise link.error(RC.KP_ERROR_INVALID_FIRMWARE_24,
                             f"cannot load firmware in state bcdDevice 0x{link.bcd:04X} "
                             f"({link.info.firmware})")
        if kind == "usb":
            link.control_reboot(ControlRequest.REBOOT, self.timeout_ms)
            self._reconnect(link)
        if kind != "jtag":
            header = LoadFirmwareRequest(FirmwareType.SCPU, SCPU_FW_START, len(scpu)).pack()
            self._retrying_write(link, header, "LOAD_FIRMWARE (SCPU) header")
            link.write(scpu, self.timeout_ms, RC.KP_ERROR_SEND_DATA_FAIL_14, "SCPU firmware")
            self._reconnect(link)
        for attempt in range(CONNECT_SYSINFO_RETRIES):
            try:
                link.control(ControlRequest.FIFOQ_RESET, 0, 0, self.timeout_ms)
                break
            except KpError:
                if attempt == CONNECT_SYSINFO_RETRIES - 1:
                    raise
                self._reconnect(link)
        _sleep(0.05)
        header = LoadFirmwareRequest(FirmwareType.NCPU, 0, len(ncpu)).pack()
        link.write(header, self.timeout_ms, RC.KP_ERROR_SEND_DATA_FAIL_14,
                   "LOAD_FIRMWARE (NCPU) header")
        link.write(ncpu, self.timeout_ms, RC.KP_ERROR_SEND_DATA_FAIL_14, "NCPU firmware")
        _sleep(0.01)
        self.models, self.nef, self.fifo = {}, None, None
        if fw_state.is_usb_boot(link.bcd):
            try:
                self._check_version(link, link.get_system_info(self.timeout_ms))
            except KpError as exc:
                raise link.error(RC.KP_ERROR_CHECK_FW_VERSION_FAILED_41,
                                 f"system info after the firmware upload: {exc.message}") from exc

    def _retrying_write(self, link: DeviceLink, data: bytes, what: str) -> None:
        for attempt in range(CONNECT_SYSINFO_RETRIES):
            try:
                link.write(data, self.timeout_ms, RC.KP_ERROR_SEND_DATA_FAIL_14, what)
                return
            except KpError:
                if attempt == CONNECT_SYSINFO_RETRIES - 1:
                    raise
                self._reconnect(link)

    # == models ==========================================================================
    def load_model(self, nef_data: bytes | bytearray | memoryview, *,
                   parse: Callable[[bytes], NefFile] | None = None) -> NefFile:
        """Upload a NEF's models to every device and size the FIFO queues (§4.3, §4.5).
        Returns the parsed NEF; the group remembers it for the send/receive checks."""
        self._require_open()
        for link in self.links:
            if not fw_state.can_load_model(link.bcd):
                raise link.error(RC.KP_ERROR_INVALID_FIRMWARE_24,
                                 f"cannot load a model in firmware state {link.info.firmware!r}"
                                 f" (bcdDevice 0x{link.bcd:04X}); load firmware first")
        self._reboot_if_model_loaded()
        nef = self._parse_nef(bytes(nef_data), parse)
        request = LoadModelRequest(len(nef.all_models), bytes(nef.fw_info)).pack()
        self.models, self.nef, self.fifo = {}, None, None
        self._on_each(lambda link: self._upload_model(link, request, nef.all_models))
        entries = {m.id: ModelEntry(m.id, len(m.inputs), m.max_raw_out_size) for m in nef.models}
        max_out = max((e.max_raw_out_size for e in entries.values()), default=0)
        max_inputs = max((e.input_count for e in entries.values()), default=1)
        plans = self._on_each(lambda link: self._configure_fifo(link, max_out, max_inputs))
        self.fifo = min(plans, key=lambda p: (p.input_buffer_count, p.input_buffer_size))
        self.models, self.nef = entries, nef
        return nef

    def _on_each(self, fn: Callable[[DeviceLink], Any]) -> list[Any]:
        """Run ``fn`` on every device, one thread per device when there are several."""
        if len(self.links) == 1:
            return [fn(self.links[0])]
        results: list[Any] = [None] * len(self.links)
        errors: list[BaseException] = []

        def run(i: int, link: DeviceLink) -> None:
            try:
                results[i] = fn(link)
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i, link), daemon=True)
                   for i, link in enumerate(self.links)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results

    def _reboot_if_model_loaded(self) -> None:
        for link in self.links:
            loaded = bool(self.models)
            if not loaded:
                try:
                    loaded = len(link.get_model_info(self.timeout_ms).setups) > 0
                except KpError as exc:
                    if exc.kp_code != RC.KP_FW_GET_MODEL_INFO_FAILED_109:
                        raise
            if not loaded:
                continue
            if fw_state.is_usb_boot(link.bcd):
                raise link.error(RC.KP_ERROR_USB_BOOT_LOAD_SECOND_MODEL_40,
                                 "a USB-boot device takes one model per boot; reset it "
                                 "(reboot + load_firmware) before loading another")
            self._reboot_and_reconnect(link)
        self.models, self.nef, self.fifo = {}, None, None

    def _parse_nef(self, data: bytes, parse: Callable[[bytes], NefFile] | None) -> NefFile:
        try:
            nef = (parse or read_nef)(data)
        except (NefError, ValueError) as exc:
            raise KpError(RC.KP_ERROR_INVALID_MODEL_21, f"invalid NEF: {exc}") from exc
        chip = CHIP_BY_PRODUCT_ID.get(self.product_id, Chip.UNKNOWN)
        if nef.target_chip != chip:
            raise KpError(RC.KP_ERROR_INVALID_MODEL_21,
                          f"the NEF targets {nef.target_chip.name}, the devices are "
                          f"{chip.name} (product id 0x{self.product_id:04X})")
        if not nef.fw_info or not nef.all_models:
            raise KpError(RC.KP_ERROR_INVALID_MODEL_21,
                          "the NEF has no fw_info/all_models to upload")
        if nef.encrypted:
            kn = self.links[0].info.kn_number if len(self.links) == 1 else None
            if kn is None or kn != nef.kn_number:
                raise KpError(RC.KP_ERROR_INVALID_MODEL_21,
                              f"the NEF is encrypted for KN 0x{nef.kn_number:08X}; it loads "
                              "only on that single device")
        return nef

    def _upload_model(self, link: DeviceLink, request: bytes, all_models: memoryview) -> None:
        what = "LOAD_MODEL"
        with link.out_lock:
            link.write_locked(request, self.timeout_ms, RC.KP_ERROR_RECV_DATA_FAIL_17, what)
            rc = link.read_return_code(self.timeout_ms, what)
            if rc:
                raise link.error(rc, "the firmware refused the model")
            link.write_locked(all_models, self.timeout_ms, RC.KP_ERROR_RECV_DATA_FAIL_17,
                              "model upload")

    def _sizing(self, ddr, max_out: int) -> DdrManageAttributes:
        """The fixed sizing for this load: the user's, else (like Kneron, which keeps the
        numbers computed at the group's first load) the previous plan, but only while it
        still covers this model's memory and result size (Kneron would reuse it blindly
        and could place the FIFO queues over a larger model)."""
        user, last = self.ddr_attributes, self._last_plan
        if last is None:
            return user
        needed_model = ddr.ddr_model_end - ddr.ddr_available_begin
        if last.model_size < needed_model or last.result_buffer_size < max_out + RESULT_HEADROOM:
            log.info("previous FIFO sizing does not fit this model; recomputing")
            return user
        return DdrManageAttributes(
            user.model_size or last.model_size,
            user.input_buffer_size or last.input_buffer_size,
            user.input_buffer_count or last.input_buffer_count,
            user.result_buffer_size or last.result_buffer_size,
            user.result_buffer_count or last.result_buffer_count)

    def _configure_fifo(self, link: DeviceLink, max_out: int, max_inputs: int) -> FifoPlan:
        ddr = link.get_ddr_config(self.timeout_ms)
        if ddr.ddr_fifoq_allocated:
            q = link.get_fifoq_config(self.timeout_ms)
            return FifoPlan(ddr.ddr_model_end - ddr.ddr_available_begin, q.input_buf_count,
                            q.input_buf_size, q.result_buf_count, q.result_buf_size)
        plan = plan_fifo(ddr, link.product_id, max_out, max_inputs, self._sizing(ddr, max_out))
        self._last_plan = plan
        try:
            link.control(ControlRequest.DDR_HEAP_BOUNDARY_ADJUST,
                         *heap_boundary_setup(plan.boundary), self.timeout_ms)
        except KpError as exc:
            raise link.error(RC.KP_ERROR_ADJUST_DDR_HEAP_FAILED_46,
                             f"DDR heap boundary 0x{plan.boundary:08X}: {exc.message}") from exc
        value, index = fifoq_configure_setup(plan.input_buffer_count, plan.input_buffer_size,
                                             plan.result_buffer_count, plan.result_buffer_size)
        try:
            link.control(ControlRequest.FIFOQ_CONFIGURE, value, index, self.timeout_ms)
        except KpError as exc:
            raise link.error(RC.KP_ERROR_FIFOQ_SETTING_FAILED_43,
                             f"FIFO queue configuration refused: {exc.message}") from exc
        return plan

    # == reset / configuration ===========================================================
    def reset(self, mode: int) -> None:
        """``ResetMode``: reboot, inference (FIFO) reset, shutdown, system reboot (§4.9)."""
        self._require_open()
        if mode in (ResetMode.KP_RESET_REBOOT, ResetMode.KP_RESET_REBOOT_SYSTEM):
            request = (ControlRequest.REBOOT if mode == ResetMode.KP_RESET_REBOOT
                       else ControlRequest.REBOOT_SYSTEM)
            for link in self.links:
                link.control_reboot(request, self.timeout_ms)
            self.models, self.nef, self.fifo = {}, None, None
        elif mode == ResetMode.KP_RESET_INFERENCE:
            for link in self.links:
                link.fifo_reset(self.timeout_ms)
            self.frame_drop = False
            self._send_index = self._recv_index = 0
        elif mode == ResetMode.KP_RESET_SHUTDOWN:
            if self.product_id != PID_KL520:
                raise KpError(RC.KP_ERROR_INVALID_PARAM_12,
                              f"shutdown is supported on KL520 only (product id "
                              f"0x{self.product_id:04X})")
            for link in self.links:
                link.control_reboot(ControlRequest.SHUTDOWN, self.timeout_ms)
        else:
            raise KpError(RC.KP_ERROR_INVALID_PARAM_12,
                          f"unknown reset mode {mode!r}; expected 0..3")

    def set_frame_drop(self, enable: bool) -> None:
        """Control 0x83 on every device (cleared again by every FIFO reset)."""
        self._require_open()
        for link in self.links:
            link.control(ControlRequest.FIFOQ_ENABLE_DROPPABLE, 1 if enable else 0, 0,
                         self.timeout_ms)
        self.frame_drop = bool(enable)

    # == inference ========================================================================
    def _next_send_link(self, device_index: int | None) -> DeviceLink:
        if device_index is not None:
            return self._link_at(device_index)
        self._require_open()
        with self._counter_lock:
            link = self.links[self._send_index % len(self.links)]
            self._send_index = (self._send_index + 1) % len(self.links)
        return link

    def _check_send(self, model_id: int, total_size: int, n_images: int = 1) -> None:
        """Host checks before any traffic (§5.3 #1, #2, #5)."""
        entry = self.models.get(int(model_id))
        if entry is None or entry.input_count != n_images:
            loaded = sorted(self.models) if self.models else "none (load a model first)"
            raise KpError(RC.KP_ERROR_INVALID_PARAM_12,
                          f"model id {model_id} with {n_images} input(s) is not loaded; "
                          f"loaded model ids: {loaded}")
        fifo = self.fifo
        if fifo is None or fifo.input_buffer_count < n_images:
            raise KpError(RC.KP_ERROR_FIFOQ_INPUT_BUFF_COUNT_NOT_ENOUGH_42,
                          f"the device has {fifo.input_buffer_count if fifo else 0} input "
                          f"buffers, the model needs {n_images}")
        if total_size > fifo.input_buffer_size:
            raise KpError(RC.KP_ERROR_SEND_DATA_TOO_LARGE_15,
                          f"request of {total_size} bytes exceeds the device input buffer of "
                          f"{fifo.input_buffer_size} bytes")

    def _send_pair(self, link: DeviceLink, header: bytes, data: memoryview, what: str) -> None:
        with link.out_lock:
            link.write_locked(header, self.timeout_ms, RC.KP_ERROR_SEND_DESC_FAIL_13,
                              f"{what} header")
            link.write_locked(data, self.timeout_ms, RC.KP_ERROR_SEND_DATA_FAIL_14,
                              f"{what} data")

    def send_image(self, model_id: int, inference_number: int, data: bytes | memoryview,
                   width: int, height: int, image_format: int, *, resize_mode: int = 2,
                   padding_mode: int = 2, normalize_mode: int = 1,
                   crop_boxes: Sequence[CropBox] = (), device_index: int | None = None) -> None:
        """Job 10: one image with device pre-processing (§5.1). Sends exactly
        ``width·height·bpp`` bytes; ``data`` shorter than that is error 12."""
        link = self._next_send_link(device_index)
        self._check_send(model_id, 0)
        size = image_byte_count(width, height, image_format)
        total = IMAGE_REQUEST_HEADER_SIZE + size
        self._check_send(model_id, total)
        view = memoryview(data).cast("B")
        if len(view) < size:
            raise KpError(RC.KP_ERROR_INVALID_PARAM_12,
                          f"image buffer has {len(view)} bytes, a {width}x{height} image in "
                          f"format 0x{int(image_format):02X} needs {size}")
        if len(crop_boxes) > MAX_CROP_BOX:
            raise KpError(RC.KP_ERROR_INVALID_PARAM_12,
                          f"at most {MAX_CROP_BOX} crop boxes, got {len(crop_boxes)}")
        header = ImageRequestHeader(
            total_size=total, inference_number=int(inference_number), model_id=int(model_id),
            width=int(width), height=int(height), resize_mode=int(resize_mode),
            padding_mode=int(padding_mode), image_format=int(image_format),
            normalize_mode=int(normalize_mode), crop_boxes=tuple(crop_boxes)).pack()
        self._send_pair(link, header, view[:size], "image inference")

    def send_bypass(self, model_id: int, inference_number: int, data: bytes | memoryview,
                    device_index: int | None = None, *, size: int | None = None) -> None:
        """Job 17: data already in the model's NPU input layout (§5.4). ``size`` (default
        ``len(data)``) is the byte count announced and sent."""
        link = self._next_send_link(device_index)
        view = memoryview(data).cast("B")
        count = len(view) if size is None else int(size)
        self._check_send(model_id, BYPASS_REQUEST_HEADER_SIZE + count)
        if len(view) < count:
            raise KpError(RC.KP_ERROR_INVALID_PARAM_12,
                          f"data buffer has {len(view)} bytes, image_buffer_size says {count}")
        header = BypassRequestHeader(int(inference_number), int(model_id), count).pack()
        self._send_pair(link, header, view[:count], "bypass inference")

    def send_bypass_inputs(self, model_id: int, inference_number: int,
                           payloads: Sequence[bytes | memoryview],
                           device_index: int | None = None) -> None:
        """Job 17 for a model with N input nodes (§5.5): N header + data pairs with the same
        inference number, ``total_image`` N and ``image_index`` 0…N-1, back to back under the
        device's OUT lock so no other request interleaves. One payload is ``send_bypass``."""
        link = self._next_send_link(device_index)
        views = [memoryview(p).cast("B") for p in payloads]
        if not views:
            raise KpError(RC.KP_ERROR_INVALID_PARAM_12, "no input payloads given")
        for view in views:
            self._check_send(model_id, BYPASS_REQUEST_HEADER_SIZE + len(view), len(views))
        with link.out_lock:  # re-entrant: _send_pair takes it again per pair
            for index, view in enumerate(views):
                header = BypassRequestHeader(int(inference_number), int(model_id), len(view),
                                             total_image=len(views), image_index=index).pack()
                self._send_pair(link, header, view, "bypass inference")

    def result_size(self, model_id: int) -> int:
        """``max_raw_out_size`` of a loaded model (``KpError`` 12 when not loaded)."""
        entry = self.models.get(int(model_id))
        if entry is None:
            raise KpError(RC.KP_ERROR_INVALID_PARAM_12,
                          f"model id {model_id} is not loaded; loaded: {sorted(self.models)}")
        return entry.max_raw_out_size

    def receive(self, expected_job: int, size: int, device_index: int | None = None) -> bytes:
        """Read one result message of at most ``size`` bytes and validate it (§6.5).

        Raises ``KpError``: the transfer's negative code, 30 (bad magic), the firmware's
        status code (``KpDeviceStatus`` with ``.raw`` = the message), 32 (job id)."""
        if device_index is None:
            self._require_open()
            index = self._recv_index % len(self.links)
        else:
            index = device_index
        link = self._link_at(index)
        raw = link.read(int(size), self.timeout_ms, "inference result", exact=False,
                        fail_code=None)
        if len(raw) < STAMP_SIZE or u32(raw, 0) != MAGIC_INFERENCE:
            got = f"0x{u32(raw, 0):08X}" if len(raw) >= 4 else f"{len(raw)} bytes"
            raise _with_raw(link.error(RC.KP_ERROR_RECEIVE_INCORRECT_HEADER_STAMP_30,
                                       f"result does not start with magic "
                                       f"0x{MAGIC_INFERENCE:08X} (got {got})"), raw)
        status, job = u32(raw, 12), u32(raw, 8)
        if status:
            # Any status the firmware put in a result (22, 23, 35, 1xx, 2xx) is a
            # KpDeviceStatus; .raw keeps the header (inference number) for the caller.
            err = KpDeviceStatus(status, f"the device reports status {status} for job {job}",
                                 link.name)
            err.raw = raw
            raise err
        if job != int(expected_job):
            raise _with_raw(link.error(RC.KP_ERROR_RECEIVE_JOB_ID_MISMATCH_32,
                                       f"expected a result of job {int(expected_job)}, "
                                       f"got job {job}"), raw)
        minimum = min_result_size(link.product_id)
        if len(raw) < minimum:
            # Deviation from Kneron (which reads a zero node count from a short message): a
            # successful result must hold its header and node table, else nothing decodes.
            raise _with_raw(link.error(RC.KP_ERROR_OTHER_99,
                                       f"result of {len(raw)} bytes is shorter than a "
                                       f"successful result's header and node table "
                                       f"({minimum} bytes)"), raw)
        if len(raw) >= RESULT_HEADER_SIZE and u32(raw, 340) == 1 and device_index is None:
            with self._counter_lock:
                self._recv_index = (index + 1) % len(self.links)
        return raw


def min_result_size(product_id: int) -> int:
    """Bytes a successful result needs before its node data (§6.1–§6.3): the 344-byte header
    plus the node count (KL520) or the 2248-byte node table (KL720)."""
    if product_id == PID_KL520:
        return RESULT_HEADER_SIZE + 4
    if product_id in (PID_KL720, PID_KL720_LEGACY):
        return RESULT_HEADER_SIZE + KL720_NODE_TABLE_SIZE
    return RESULT_HEADER_SIZE


def _with_raw(error: KpError, raw: bytes) -> KpError:
    """Attach the offending message (``.raw``), so a caller can tell whose result it was."""
    error.raw = raw
    return error
