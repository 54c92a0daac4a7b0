"""One connected device: its transport, its OUT and IN locks, and the KDP2 commands.

The OUT lock serialises everything written to the device (a command, an inference header
and its data stay together); the IN lock serialises reads. Control requests take no lock
(PROTOCOL.md §2.5). Error codes follow the host library: command write failure -7 / 14,
reply read failure -7 / 17, wrong reply length 99, firmware return code as is.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from kp_backend.protocol.codes import ApiReturnCode
from kp_backend.protocol.constants import (
    DDR_CONFIG_REPLY_SIZE,
    DRAIN_MAX_READS,
    DRAIN_READ_SIZE,
    DRAIN_READ_TIMEOUT_MS,
    FIFOQ_CONFIG_REPLY_SIZE,
    MODEL_INFO_HEAD_SIZE,
    MODEL_INFO_SETUP_HEAD_SIZE,
    REBOOT_ACCEPTED_CODES,
    SYSTEM_INFO_REPLY_SIZE,
    ControlRequest,
)
from kp_backend.protocol.wire import (
    DdrConfigReply,
    FifoqConfigReply,
    ModelInfoHead,
    SetupHead,
    SystemInfoReply,
    build_get_ddr_config,
    build_get_fifoq_config,
    build_get_model_info,
    build_get_system_info,
    parse_return_code,
)
from kp_backend.usb import fw_state
from kp_backend.usb.errors import KpDisconnected, KpError, KpProtocolError, error_for_code
from kp_backend.usb.transport import UsbDeviceInfo, UsbTransport

__all__ = ["DeviceLink", "ModelInfoReply"]

log = logging.getLogger(__name__)
RC = ApiReturnCode


@dataclass(frozen=True)
class ModelInfoReply:
    """GET_MODEL_INFO: the device's fw_info copy and one setup.bin blob per model."""

    target_chip: int
    fw_info: bytes
    setups: tuple[bytes, ...]


class DeviceLink:
    """A connected device of a group. ``transport`` is replaced on reconnect."""

    def __init__(self, transport: UsbTransport) -> None:
        self.transport = transport
        self.out_lock = threading.RLock()
        self.in_lock = threading.RLock()

    # -- identity -------------------------------------------------------------------
    @property
    def info(self) -> UsbDeviceInfo:
        return self.transport.info

    @property
    def port_id(self) -> int:
        return self.info.port_id

    @property
    def name(self) -> str:
        return self.transport.name

    @property
    def bcd(self) -> int:
        return self.info.bcd_device

    @property
    def product_id(self) -> int:
        return self.info.product_id

    def error(self, code: int, message: str) -> KpError:
        return error_for_code(code, message, self.name)

    # -- bulk with code translation ------------------------------------------------------
    def write(self, data: bytes | memoryview, timeout_ms: int, fail_code: int, what: str) -> None:
        """Write under the OUT lock; a non-timeout failure becomes ``fail_code``."""
        with self.out_lock:
            self.write_locked(data, timeout_ms, fail_code, what)

    def write_locked(self, data: bytes | memoryview, timeout_ms: int, fail_code: int,
                     what: str) -> None:
        try:
            self.transport.write(data, timeout_ms)
        except KpError as exc:
            if exc.kp_code == RC.KP_ERROR_USB_TIMEOUT_N7:
                raise self.error(exc.kp_code, f"{what}: write timed out after {timeout_ms} ms")\
                    from exc
            raise self._translated(exc, fail_code, what) from exc

    def _translated(self, exc: KpError, code: int, what: str) -> KpError:
        """Kneron's code for a failed transfer; a vanished device stays a
        :class:`KpDisconnected` (with that code) so that callers can tell."""
        if isinstance(exc, KpDisconnected):
            return KpDisconnected(code, f"{what}: {exc.message}", self.name)
        return self.error(code, f"{what}: {exc.message}")

    def read(self, size: int, timeout_ms: int, what: str, exact: bool = True,
             fail_code: int | None = RC.KP_ERROR_RECV_DATA_FAIL_17) -> bytes:
        """Read under the IN lock. A non-timeout failure becomes ``fail_code``, or keeps its
        libusb code when ``fail_code`` is ``None`` (inference receives, §6.5)."""
        with self.in_lock:
            try:
                data = self.transport.read(size, timeout_ms)
            except KpError as exc:
                if exc.kp_code == RC.KP_ERROR_USB_TIMEOUT_N7:
                    raise self.error(exc.kp_code,
                                     f"{what}: no reply within {timeout_ms} ms") from exc
                if exc.kp_code == RC.KP_ERROR_OTHER_99 or fail_code is None:
                    raise
                raise self._translated(exc, fail_code, what) from exc
        if exact and len(data) != size:
            raise KpProtocolError(RC.KP_ERROR_OTHER_99,
                                  f"{what}: expected {size} bytes, got {len(data)}", self.name)
        return data

    def command(self, request: bytes, reply_size: int, timeout_ms: int, what: str) -> bytes:
        """One command write and its exact-size reply."""
        self.write(request, timeout_ms, RC.KP_ERROR_SEND_DATA_FAIL_14, what)
        return self.read(reply_size, timeout_ms, what)

    def control(self, request: int, value: int = 0, index: int = 0, timeout_ms: int = 0) -> None:
        self.transport.control(request, value, index, timeout_ms)

    def control_reboot(self, request: int, timeout_ms: int) -> None:
        """REBOOT / SHUTDOWN controls: the device may vanish mid-request (§2.3)."""
        try:
            self.transport.control(request, 0, 0, timeout_ms)
        except KpError as exc:
            if exc.kp_code not in REBOOT_ACCEPTED_CODES:
                raise self.error(RC.KP_ERROR_RESET_FAILED_25,
                                 f"reset control 0x{request:02X} failed: {exc.message}") from exc

    # -- commands -----------------------------------------------------------------------
    def get_system_info(self, timeout_ms: int) -> SystemInfoReply:
        data = self.command(build_get_system_info(), SYSTEM_INFO_REPLY_SIZE, timeout_ms,
                            "GET_SYSTEM_INFO")
        reply = SystemInfoReply.parse(data)
        if reply.return_code:
            raise self.error(reply.return_code, "GET_SYSTEM_INFO refused by the firmware")
        return reply

    def get_model_info(self, timeout_ms: int) -> ModelInfoReply:
        """GET_MODEL_INFO (§4.2); raises the firmware's code (109 when no model)."""
        what = "GET_MODEL_INFO"
        with self.out_lock, self.in_lock:
            self.write(build_get_model_info(), timeout_ms, RC.KP_ERROR_SEND_DATA_FAIL_14, what)
            head = ModelInfoHead.parse(self.read(MODEL_INFO_HEAD_SIZE, timeout_ms, what))
            if head.return_code:
                raise self.error(head.return_code, "the device reports no loaded model"
                                 if head.return_code == RC.KP_FW_GET_MODEL_INFO_FAILED_109
                                 else f"{what} refused by the firmware")
            fw_info = self.read(head.fw_info_size, timeout_ms, f"{what} fw_info")
            total = SetupHead.parse(self.read(MODEL_INFO_SETUP_HEAD_SIZE, timeout_ms, what))
            if total.return_code:
                raise self.error(total.return_code, f"{what}: setup data unavailable")
            setups: list[bytes] = []
            got = 0
            while got < total.size:
                part = SetupHead.parse(self.read(MODEL_INFO_SETUP_HEAD_SIZE, timeout_ms, what))
                if part.return_code:
                    raise self.error(part.return_code, f"{what}: setup of model {len(setups)}")
                if part.size == 0 or got + part.size > total.size:
                    raise KpProtocolError(RC.KP_ERROR_OTHER_99,
                                          f"{what}: setup size {part.size} does not fit the "
                                          f"announced total {total.size}", self.name)
                setups.append(self.read(part.size, timeout_ms, f"{what} setup.bin"))
                got += part.size
        return ModelInfoReply(head.target_chip, fw_info, tuple(setups))

    def get_ddr_config(self, timeout_ms: int) -> DdrConfigReply:
        return DdrConfigReply.parse(self._command_99(build_get_ddr_config(),
                                                     DDR_CONFIG_REPLY_SIZE, timeout_ms,
                                                     "GET_DDR_CONFIG"))

    def get_fifoq_config(self, timeout_ms: int) -> FifoqConfigReply:
        return FifoqConfigReply.parse(self._command_99(build_get_fifoq_config(),
                                                       FIFOQ_CONFIG_REPLY_SIZE, timeout_ms,
                                                       "GET_FIFOQ_CONFIG"))

    def _command_99(self, request: bytes, size: int, timeout_ms: int, what: str) -> bytes:
        # Kneron reports any failure of these two queries as 99 (§4.5).
        try:
            return self.command(request, size, timeout_ms, what)
        except KpError as exc:
            raise self.error(RC.KP_ERROR_OTHER_99, exc.message) from exc

    def read_return_code(self, timeout_ms: int, what: str) -> int:
        return parse_return_code(self.read(4, timeout_ms, what))

    # -- FIFO reset ---------------------------------------------------------------------
    def drain(self) -> int:
        """Read and discard whatever the device still wants to send (4 MiB reads, 200 ms,
        at most 8, stopping at the first error or short read). Returns the bytes dropped."""
        dropped = 0
        with self.in_lock:
            for _ in range(DRAIN_MAX_READS):
                try:
                    data = self.transport.read(DRAIN_READ_SIZE, DRAIN_READ_TIMEOUT_MS)
                except KpError:
                    break
                dropped += len(data)
                if not data:
                    break
        if dropped:
            log.debug("%s: drained %d stale bytes", self.name, dropped)
        return dropped

    def fifo_reset(self, timeout_ms: int) -> None:
        """Drain, then control 0x80 (application firmware only)."""
        if not fw_state.is_application(self.bcd):
            return
        self.drain()
        self.control(ControlRequest.FIFOQ_RESET, 0, 0, timeout_ms)

    def close(self) -> None:
        self.transport.close()

    def __repr__(self) -> str:
        return f"<DeviceLink {self.name} firmware={self.info.firmware!r}>"
