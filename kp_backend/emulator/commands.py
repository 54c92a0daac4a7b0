"""KDP2 command handlers of the application firmware and the KDP2 Loader (PROTOCOL.md §4).

A mixin of :class:`~kp_backend.emulator.firmware.Firmware`: the receiver thread calls
:meth:`CommandHandlers._dispatch_command` for every message that is not inference data.
Handlers run inline in the receive loop, so responses go out in order and the next OUT
message is read only after a handler (including its data phases) has returned (§3.4).
Unknown commands get no response at all; GET_MODEL_INFO echoes fw_info unchanged.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field

from kp_backend.emulator.endpoint import deadline_after
from kp_backend.nef import NefError, NefModel, models_from_fw_info
from kp_backend.nef.fw_info import parse_fw_info
from kp_backend.npu_types import Chip
from kp_backend.protocol.codes import ApiReturnCode as RC
from kp_backend.protocol.constants import (
    FIRMWARE_BUILD,
    FIRMWARE_VERSION,
    FW_COMMAND_RESPONSE_TIMEOUT_S,
    FW_INFO_RECORD_SIZE,
    FW_MODEL_RECEIVE_TIMEOUT_S,
    FW_NCPU_RECEIVE_TIMEOUT_S,
    LEGACY_PREAMBLE_HOST,
    MAGIC_COMMAND,
    MAX_MODELS_PER_NEF,
    NCPU_IMAGE_MAX,
    CommandId,
    FirmwareType,
)
from kp_backend.protocol.wire import (
    CommandHeader,
    DdrConfigReply,
    FifoqConfigReply,
    LoadFirmwareRequest,
    LoadModelRequest,
    ModelInfoHead,
    SetupHead,
    SystemInfoReply,
    WireError,
    first_word,
    pack_return_code,
)

__all__ = ["CommandHandlers", "LoadedModels", "Stopped"]

log = logging.getLogger("kp_backend.emulator.firmware")

_LOADER_IMAGE_TIMEOUT_S = FW_MODEL_RECEIVE_TIMEOUT_S  # loader code is not public: generous
_PROFILE_REPLY_SIZE = 516
_TEMPERATURE_C = 45
_EFUSE_REFUSED = RC.KP_FW_EFUSE_CAN_NOT_BURN_300


class Stopped(Exception):
    """The firmware of this boot is being stopped (reboot, disconnect, close)."""


@dataclass
class LoadedModels:
    """What LOAD_MODEL left in device memory."""

    fw_info: bytes  # the device copy: 16 + 56·N bytes
    model_ids: tuple[int, ...]
    output_mem_len: dict[int, int]
    model_dram_addr_end: int
    setups: tuple[bytes, ...]
    models: dict[int, NefModel] = field(default_factory=dict)  # parsed; empty if unreadable


# commands that only one chip's 2.2.0 firmware knows (§4.0)
_CHIP_ONLY = {CommandId.GET_TDC_TEMPERATURE: Chip.KL720, CommandId.READ_FLASH: Chip.KL520,
              CommandId.WRITE_FLASH: Chip.KL520}


class CommandHandlers:
    """Command handling for :class:`~kp_backend.emulator.firmware.Firmware` (see there for
    the attributes used: ``chip``, ``state``, ``loaded``, ``fifo``, ``out_ep``, ...)."""

    def _respond(self, *messages: bytes) -> None:
        """Command responses: each abandoned if not read within 2 s (§2.4)."""
        for m in messages:
            if not self._send(m, deadline_after(FW_COMMAND_RESPONSE_TIMEOUT_S)):
                log.info("virtual dongle %s: command response not read, abandoned",
                         self.dongle.port_path)
                return

    def _dispatch_command(self, msg: bytes) -> None:
        word = first_word(msg)
        if word is None:
            return
        if word & 0xFFFF == LEGACY_PREAMBLE_HOST:
            if not self.in_loader:
                self._respond(bytes(16))  # legacy KDP: only flash updates, not modelled
            return
        if word != MAGIC_COMMAND or len(msg) < 12:
            return  # stray fake ZLP or garbage: logged and dropped by the firmware
        command = CommandHeader.parse(msg).command_id
        if self.in_loader:
            if command == CommandId.LOAD_FIRMWARE:
                self._loader_firmware(msg)
            return
        handler = self._HANDLERS.get(command)
        if handler is None or _CHIP_ONLY.get(command, self.chip) is not self.chip:
            log.info("virtual dongle %s: unknown command 0x%04X, no response",
                     self.dongle.port_path, command)
            return
        handler(self, msg)

    def _cmd_system_info(self, msg: bytes) -> None:
        major, minor, update = FIRMWARE_VERSION
        self._respond(SystemInfoReply(0, self.dongle.kn_number, major, minor, update,
                                      FIRMWARE_BUILD).pack())

    def _cmd_model_info(self, msg: bytes) -> None:
        loaded = self.loaded
        if loaded is None:
            self._respond(ModelInfoHead(RC.KP_FW_GET_MODEL_INFO_FAILED_109, 0, int(self.chip)).pack())
            return
        parts = [ModelInfoHead(0, len(loaded.fw_info), int(self.chip)).pack(), loaded.fw_info,
                 SetupHead(0, sum(len(s) for s in loaded.setups)).pack()]
        for setup in loaded.setups:
            parts += [SetupHead(0, len(setup)).pack(), setup]
        self._respond(*parts)

    def _cmd_load_model(self, msg: bytes) -> None:
        try:
            req = LoadModelRequest.parse(msg)
        except WireError:
            self._respond(pack_return_code(RC.KP_FW_LOAD_MODEL_FAILED_104))
            return
        fw = req.fw_info
        n = struct.unpack_from("<I", fw, 0)[0] if len(fw) >= 4 else 0
        copy_size = 16 + FW_INFO_RECORD_SIZE * n
        ok = 0 < n <= MAX_MODELS_PER_NEF and len(fw) >= copy_size
        if ok:
            end = struct.unpack_from("<I", fw, 4 + FW_INFO_RECORD_SIZE * n)[0]
            ok = end < self.heap_tail
        if not ok:
            self._respond(pack_return_code(RC.KP_FW_LOAD_MODEL_FAILED_104))
            return
        self._respond(pack_return_code(0))
        with self.cond:
            self._set_phase("rx", "wait_host")
        deadline = deadline_after(FW_MODEL_RECEIVE_TIMEOUT_S)
        all_models = self.out_ep.receive(req.model_size, deadline, stopped=self._stopped) or b""
        self.loaded = self._parse_models(bytes(fw[:copy_size]), all_models)

    def _parse_models(self, fw_copy: bytes, all_models: bytes) -> LoadedModels:
        table = parse_fw_info(fw_copy)
        base = table.records[0].cmd_mem_addr
        setups = []
        for rec in table.records:
            start = rec.setup_mem_addr - base
            setups.append(all_models[start:start + rec.setup_mem_len] if start >= 0 else b"")
        models: dict[int, NefModel] = {}
        try:
            for model in models_from_fw_info(self.chip, fw_copy, setups):
                models[model.id] = model
        except NefError as exc:
            log.warning("virtual dongle %s: loaded models unreadable (%s); inferences will fail",
                        self.dongle.port_path, exc)
        return LoadedModels(
            fw_copy, tuple(r.model_type for r in table.records),
            {r.model_type: r.output_mem_len for r in table.records},
            table.model_dram_addr_end, tuple(bytes(s) for s in setups), models)

    def _cmd_load_model_from_flash(self, msg: bytes) -> None:
        self._respond(pack_return_code(RC.KP_FW_LOAD_MODEL_FAILED_104))  # nothing in flash

    def _cmd_ddr_config(self, msg: bytes) -> None:
        end = self.loaded.model_dram_addr_end if self.loaded else 0
        self._respond(DdrConfigReply(self.ddr_begin, self.heap_tail, end,
                                     int(self.fifo is not None)).pack())

    def _cmd_fifoq_config(self, msg: bytes) -> None:
        f = self.fifo
        reply = (FifoqConfigReply(f.input_count, f.input_size, f.result_count, f.result_size)
                 if f else FifoqConfigReply(0, 0, 0, 0))
        self._respond(reply.pack())

    def _cmd_load_firmware(self, msg: bytes) -> None:
        with self.cond:
            self._set_phase("rx", "wait_host")
        self.out_ep.receive(NCPU_IMAGE_MAX, deadline_after(FW_NCPU_RECEIVE_TIMEOUT_S),
                            stopped=self._stopped)
        self.ncpu_loaded = True  # fw_type is not checked; a second upload changes nothing

    def _loader_firmware(self, msg: bytes) -> None:
        req = LoadFirmwareRequest.parse(msg)
        if req.fw_type != FirmwareType.SCPU:
            return
        with self.cond:
            self._set_phase("rx", "wait_host")
        image = self.out_ep.receive(req.fw_size, deadline_after(_LOADER_IMAGE_TIMEOUT_S),
                                    stopped=self._stopped)
        if image is not None and len(image) >= req.fw_size:
            self.dongle.reboot_from_firmware(self.APPLICATION_USB_BOOT, ncpu_loaded=False)
            raise Stopped()

    def _cmd_memory_read(self, msg: bytes) -> None:
        length = struct.unpack_from("<I", msg, 16)[0] if len(msg) >= 20 else 0
        self._respond(pack_return_code(0), bytes(length))

    def _cmd_memory_write(self, msg: bytes) -> None:
        length = struct.unpack_from("<I", msg, 16)[0] if len(msg) >= 20 else 0
        with self.cond:
            self._set_phase("rx", "wait_host")
        data = self.out_ep.receive(length, deadline_after(FW_NCPU_RECEIVE_TIMEOUT_S),
                                   stopped=self._stopped) or b""
        rc = 0 if len(data) >= length else RC.KP_ERROR_RECEIVE_SIZE_MISMATCH_31
        self._respond(pack_return_code(rc))

    def _cmd_flash_read(self, msg: bytes) -> None:
        length = struct.unpack_from("<I", msg, 16)[0] if len(msg) >= 20 else 0
        self._respond(pack_return_code(0), b"\xff" * length)  # erased flash

    def _cmd_rc0(self, msg: bytes) -> None:
        self._respond(pack_return_code(0))

    def _cmd_ckey(self, msg: bytes) -> None:
        self._respond(pack_return_code(_EFUSE_REFUSED))

    def _cmd_profile_stats(self, msg: bytes) -> None:
        self._respond(bytes(_PROFILE_REPLY_SIZE))

    def _cmd_temperature(self, msg: bytes) -> None:
        self._respond(pack_return_code(0) + struct.pack("<i", _TEMPERATURE_C))

    _HANDLERS = {
        CommandId.GET_SYSTEM_INFO: _cmd_system_info,
        CommandId.GET_MODEL_INFO: _cmd_model_info,
        CommandId.LOAD_MODEL: _cmd_load_model,
        CommandId.LOAD_MODEL_FROM_FLASH: _cmd_load_model_from_flash,
        CommandId.GET_DDR_CONFIG: _cmd_ddr_config,
        CommandId.GET_FIFOQ_CONFIG: _cmd_fifoq_config,
        CommandId.LOAD_FIRMWARE: _cmd_load_firmware,
        CommandId.MEMORY_READ: _cmd_memory_read,
        CommandId.MEMORY_WRITE: _cmd_memory_write,
        CommandId.READ_FLASH: _cmd_flash_read,
        CommandId.WRITE_FLASH: _cmd_memory_write,
        CommandId.SET_CKEY: _cmd_ckey,
        CommandId.SET_SBT_KEY: _cmd_ckey,
        CommandId.SET_GPIO: _cmd_rc0,
        CommandId.SET_DBG_CHECKPOINT: _cmd_rc0,
        CommandId.SET_PROFILE_ENABLE: _cmd_rc0,
        CommandId.GET_PROFILE_STATISTICS: _cmd_profile_stats,
        CommandId.GET_TDC_TEMPERATURE: _cmd_temperature,
    }
