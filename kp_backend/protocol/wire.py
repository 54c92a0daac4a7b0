"""KDP2 wire messages as pure functions of bytes (PROTOCOL.md §3–§6).

Both ends use this module: the host library builds requests and parses responses, the
virtual dongle parses requests and builds responses. Nothing here does I/O. All integers
are little-endian, all structures 4-byte words (§0).

Request/response structures are frozen dataclasses with ``pack()`` and a ``parse()``
classmethod; ``parse`` raises :class:`WireError` (a ``ValueError``) naming the structure,
the field and the expected size when given too few bytes.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field

from kp_backend.protocol.constants import (
    BYPASS_REQUEST_HEADER_SIZE,
    COMMAND_HEADER_SIZE,
    CROP_BOX_SIZE,
    DDR_CONFIG_REPLY_SIZE,
    FIFO_MAX_COUNT,
    FIFO_MAX_UNITS,
    FIFO_UNIT,
    FIFOQ_CONFIG_REPLY_SIZE,
    IMAGE_REQUEST_HEADER_SIZE,
    LOAD_FIRMWARE_HEADER_SIZE,
    LOAD_MODEL_HEADER_SIZE,
    MAGIC_COMMAND,
    MAGIC_INFERENCE,
    MAX_CROP_BOX,
    MAX_PRE_PROC_INFO,
    MODEL_INFO_HEAD_SIZE,
    MODEL_INFO_SETUP_HEAD_SIZE,
    PRE_PROC_INFO_SIZE,
    RESULT_HEADER_SIZE,
    STAMP_SIZE,
    SYSTEM_INFO_REPLY_SIZE,
    CommandId,
    JobId,
)

__all__ = [
    "WireError",
    "u32",
    "first_word",
    "CommandHeader",
    "build_command",
    "build_get_system_info",
    "build_get_model_info",
    "build_get_ddr_config",
    "build_get_fifoq_config",
    "LoadModelRequest",
    "LoadFirmwareRequest",
    "SystemInfoReply",
    "DdrConfigReply",
    "FifoqConfigReply",
    "ModelInfoHead",
    "SetupHead",
    "pack_return_code",
    "parse_return_code",
    "fifoq_configure_setup",
    "parse_fifoq_configure_setup",
    "heap_boundary_setup",
    "parse_heap_boundary_setup",
    "InferenceStamp",
    "CropBox",
    "ImageRequestHeader",
    "BypassRequestHeader",
    "PreProcInfo",
    "ResultHeader",
    "port_id_from_ports",
    "port_path",
    "packet_multiple",
]


class WireError(ValueError):
    """A message is too short or malformed for the structure being parsed."""


def _need(data: bytes | memoryview, size: int, what: str) -> None:
    if len(data) < size:
        raise WireError(f"{what}: need {size} bytes, got {len(data)}")


def u32(data: bytes | memoryview, offset: int = 0) -> int:
    """The little-endian u32 at ``offset``."""
    _need(data, offset + 4, f"u32 at offset {offset}")
    return struct.unpack_from("<I", data, offset)[0]


def first_word(data: bytes | memoryview) -> int | None:
    """The first u32 of a message (its magic), or None when shorter than 4 bytes."""
    return struct.unpack_from("<I", data, 0)[0] if len(data) >= 4 else None


def packet_multiple(length: int, packet_size: int) -> bool:
    """True when a transfer of ``length`` bytes needs a (fake) ZLP terminator."""
    return length > 0 and length % packet_size == 0


# --- commands (§3.2, §4) -------------------------------------------------------------


@dataclass(frozen=True)
class CommandHeader:
    """The 12-byte KDP2 command header. The firmware ignores ``total_size`` (§3.2)."""

    magic: int
    total_size: int
    command_id: int

    _FMT = struct.Struct("<III")

    def pack(self) -> bytes:
        return self._FMT.pack(self.magic, self.total_size, self.command_id)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "CommandHeader":
        _need(data, COMMAND_HEADER_SIZE, "command header")
        return cls(*cls._FMT.unpack_from(data, 0))


def build_command(command_id: int, body: bytes = b"", total_size: int | None = None) -> bytes:
    """A command message: header + body. ``total_size`` defaults to the message length
    (Kneron's 2.2.0 host leaves it uninitialised for two commands; we write the real size)."""
    size = COMMAND_HEADER_SIZE + len(body) if total_size is None else total_size
    return CommandHeader(MAGIC_COMMAND, size, int(command_id)).pack() + body


def build_get_system_info() -> bytes:
    return build_command(CommandId.GET_SYSTEM_INFO)


def build_get_model_info(from_ddr: int = 1) -> bytes:
    return build_command(CommandId.GET_MODEL_INFO, struct.pack("<I", from_ddr))


def build_get_ddr_config() -> bytes:
    return build_command(CommandId.GET_DDR_CONFIG)


def build_get_fifoq_config() -> bytes:
    return build_command(CommandId.GET_FIFOQ_CONFIG)


@dataclass(frozen=True)
class LoadModelRequest:
    """LOAD_MODEL (0x0A01): header, ``model_size`` (= len(all_models)), fw_info (§4.3)."""

    model_size: int
    fw_info: bytes

    def pack(self) -> bytes:
        body = struct.pack("<II", self.model_size, len(self.fw_info)) + bytes(self.fw_info)
        return build_command(CommandId.LOAD_MODEL, body)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "LoadModelRequest":
        _need(data, LOAD_MODEL_HEADER_SIZE, "LOAD_MODEL request")
        model_size, fw_info_size = struct.unpack_from("<II", data, 12)
        end = LOAD_MODEL_HEADER_SIZE + fw_info_size
        _need(data, end, f"LOAD_MODEL fw_info of {fw_info_size} bytes")
        return cls(model_size, bytes(data[LOAD_MODEL_HEADER_SIZE:end]))


@dataclass(frozen=True)
class LoadFirmwareRequest:
    """LOAD_FIRMWARE (0x0A06) 88-byte header; the image follows as a separate write (§4.6).

    ``fw_start`` is fixed by the host for SCPU and left unset (here: 0) for NCPU; the
    16 ``fw_bypass`` words are reserved (written as zeros)."""

    fw_type: int
    fw_start: int
    fw_size: int

    def pack(self) -> bytes:
        body = struct.pack("<III", self.fw_type, self.fw_start, self.fw_size) + bytes(64)
        return build_command(
            CommandId.LOAD_FIRMWARE, body, total_size=LOAD_FIRMWARE_HEADER_SIZE + self.fw_size
        )

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "LoadFirmwareRequest":
        _need(data, 24, "LOAD_FIRMWARE request")
        return cls(*struct.unpack_from("<III", data, 12))


def pack_return_code(code: int) -> bytes:
    return struct.pack("<i", code)


def parse_return_code(data: bytes | memoryview) -> int:
    _need(data, 4, "return code")
    return struct.unpack_from("<i", data, 0)[0]


@dataclass(frozen=True)
class SystemInfoReply:
    """GET_SYSTEM_INFO response, 16 bytes (§4.1)."""

    return_code: int
    kn_number: int
    major: int
    minor: int
    update: int
    build: int
    reserved: int = 0

    _FMT = struct.Struct("<IIBBBBI")

    def pack(self) -> bytes:
        return self._FMT.pack(
            self.return_code, self.kn_number, self.reserved, self.major, self.minor,
            self.update, self.build,
        )

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "SystemInfoReply":
        _need(data, SYSTEM_INFO_REPLY_SIZE, "GET_SYSTEM_INFO response")
        rc, kn, reserved, major, minor, update, build = cls._FMT.unpack_from(data, 0)
        return cls(rc, kn, major, minor, update, build, reserved)


@dataclass(frozen=True)
class DdrConfigReply:
    """GET_DDR_CONFIG response, 16 bytes (§4.5)."""

    ddr_available_begin: int
    ddr_available_end: int
    ddr_model_end: int
    ddr_fifoq_allocated: int

    _FMT = struct.Struct("<IIII")

    def pack(self) -> bytes:
        return self._FMT.pack(*dataclasses.astuple(self))

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "DdrConfigReply":
        _need(data, DDR_CONFIG_REPLY_SIZE, "GET_DDR_CONFIG response")
        return cls(*cls._FMT.unpack_from(data, 0))


@dataclass(frozen=True)
class FifoqConfigReply:
    """GET_FIFOQ_CONFIG response, 16 bytes (§4.5); all zero while not allocated."""

    input_buf_count: int
    input_buf_size: int
    result_buf_count: int
    result_buf_size: int

    _FMT = struct.Struct("<IIII")

    def pack(self) -> bytes:
        return self._FMT.pack(*dataclasses.astuple(self))

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "FifoqConfigReply":
        _need(data, FIFOQ_CONFIG_REPLY_SIZE, "GET_FIFOQ_CONFIG response")
        return cls(*cls._FMT.unpack_from(data, 0))


@dataclass(frozen=True)
class ModelInfoHead:
    """First GET_MODEL_INFO response (12 bytes): rc, fw_info size, target chip (§4.2)."""

    return_code: int
    fw_info_size: int
    target_chip: int

    _FMT = struct.Struct("<III")

    def pack(self) -> bytes:
        return self._FMT.pack(self.return_code, self.fw_info_size, self.target_chip)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "ModelInfoHead":
        _need(data, MODEL_INFO_HEAD_SIZE, "GET_MODEL_INFO head")
        return cls(*cls._FMT.unpack_from(data, 0))


@dataclass(frozen=True)
class SetupHead:
    """8-byte GET_MODEL_INFO sub-header: rc + a size (total setup size, or one model's)."""

    return_code: int
    size: int

    _FMT = struct.Struct("<II")

    def pack(self) -> bytes:
        return self._FMT.pack(self.return_code, self.size)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "SetupHead":
        _need(data, MODEL_INFO_SETUP_HEAD_SIZE, "GET_MODEL_INFO setup head")
        return cls(*cls._FMT.unpack_from(data, 0))


# --- vendor control encodings (§2.3) ----------------------------------------------------


def _fifo_field(count: int, size_bytes: int) -> int:
    units = -(-size_bytes // FIFO_UNIT)
    count = min(max(count, 1), FIFO_MAX_COUNT)
    units = min(max(units, 1), FIFO_MAX_UNITS)
    return ((units - 1) << 3) | (count - 1)


def fifoq_configure_setup(
    input_count: int, input_size: int, result_count: int, result_size: int
) -> tuple[int, int]:
    """(wValue, wIndex) of control 0x82 for the given counts and byte sizes (sizes rounded
    up to 10 KiB units, counts clamped to 1..8, units to 1..8192)."""
    return _fifo_field(input_count, input_size), _fifo_field(result_count, result_size)


def parse_fifoq_configure_setup(w_value: int, w_index: int) -> tuple[int, int, int, int]:
    """Inverse of :func:`fifoq_configure_setup`: (input_count, input_size, result_count,
    result_size) in buffers and bytes."""

    def split(word: int) -> tuple[int, int]:
        return (word & 7) + 1, ((word >> 3) + 1) * FIFO_UNIT

    in_count, in_size = split(w_value)
    res_count, res_size = split(w_index)
    return in_count, in_size, res_count, res_size


def heap_boundary_setup(address: int) -> tuple[int, int]:
    """(wValue, wIndex) of control 0x84: address bits 31..16 and 15..0."""
    return (address >> 16) & 0xFFFF, address & 0xFFFF


def parse_heap_boundary_setup(w_value: int, w_index: int) -> int:
    return ((w_value & 0xFFFF) << 16) | (w_index & 0xFFFF)


# --- inference messages (§3.3, §5, §6) -----------------------------------------------------


@dataclass(frozen=True)
class InferenceStamp:
    """The 24-byte header stamp that begins every inference request and result."""

    magic: int
    total_size: int
    job_id: int
    status_code: int = 0
    total_image: int = 1
    image_index: int = 0

    _FMT = struct.Struct("<6I")

    def pack(self) -> bytes:
        return self._FMT.pack(*dataclasses.astuple(self))

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "InferenceStamp":
        _need(data, STAMP_SIZE, "inference header stamp")
        return cls(*cls._FMT.unpack_from(data, 0))


@dataclass(frozen=True)
class CropBox:
    """One 20-byte crop box: crop_number, x1, y1, width, height (§5.1)."""

    crop_number: int = 0
    x1: int = 0
    y1: int = 0
    width: int = 0
    height: int = 0

    _FMT = struct.Struct("<5I")

    def pack(self) -> bytes:
        return self._FMT.pack(*dataclasses.astuple(self))

    @classmethod
    def parse(cls, data: bytes | memoryview, offset: int = 0) -> "CropBox":
        _need(data, offset + CROP_BOX_SIZE, "crop box")
        return cls(*cls._FMT.unpack_from(data, offset))


@dataclass(frozen=True)
class ImageRequestHeader:
    """Job 10 request header, 140 bytes (§5.1). ``total_size`` = 140 + image bytes.

    ``status_code`` is uninitialised in Kneron's host; we write 0."""

    total_size: int
    inference_number: int
    model_id: int
    width: int
    height: int
    resize_mode: int
    padding_mode: int
    image_format: int
    normalize_mode: int
    crop_boxes: tuple[CropBox, ...] = ()
    total_image: int = 1
    image_index: int = 0
    status_code: int = 0
    crop_count: int | None = None  # defaults to len(crop_boxes); the firmware trusts this

    _FMT = struct.Struct("<15I")

    def pack(self) -> bytes:
        if len(self.crop_boxes) > MAX_CROP_BOX:
            raise WireError(f"at most {MAX_CROP_BOX} crop boxes, got {len(self.crop_boxes)}")
        count = len(self.crop_boxes) if self.crop_count is None else self.crop_count
        head = self._FMT.pack(
            MAGIC_INFERENCE, self.total_size, JobId.GENERIC_RAW_IMAGE, self.status_code,
            self.total_image, self.image_index, self.inference_number, self.model_id,
            self.width, self.height, self.resize_mode, self.padding_mode, self.image_format,
            self.normalize_mode, count,
        )
        boxes = b"".join(b.pack() for b in self.crop_boxes)
        return head + boxes + bytes(CROP_BOX_SIZE * (MAX_CROP_BOX - len(self.crop_boxes)))

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "ImageRequestHeader":
        _need(data, IMAGE_REQUEST_HEADER_SIZE, "job-10 request header")
        (_magic, total, _job, status, total_image, image_index, inf_no, model_id, width,
         height, resize, padding, fmt, norm, crop_count) = cls._FMT.unpack_from(data, 0)
        boxes = tuple(
            CropBox.parse(data, 60 + CROP_BOX_SIZE * i) for i in range(min(crop_count, MAX_CROP_BOX))
        )
        return cls(total, inf_no, model_id, width, height, resize, padding, fmt, norm, boxes,
                   total_image, image_index, status, crop_count)


@dataclass(frozen=True)
class BypassRequestHeader:
    """Job 17 request header, 36 bytes (§5.4). ``total_size`` = 36 + ``image_buffer_size``."""

    inference_number: int
    model_id: int
    image_buffer_size: int
    total_image: int = 1
    image_index: int = 0
    status_code: int = 0
    total_size: int | None = None

    _FMT = struct.Struct("<9I")

    def pack(self) -> bytes:
        total = (BYPASS_REQUEST_HEADER_SIZE + self.image_buffer_size
                 if self.total_size is None else self.total_size)
        return self._FMT.pack(
            MAGIC_INFERENCE, total, JobId.GENERIC_RAW_BYPASS_PRE_PROC, self.status_code,
            self.total_image, self.image_index, self.inference_number, self.model_id,
            self.image_buffer_size,
        )

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "BypassRequestHeader":
        _need(data, BYPASS_REQUEST_HEADER_SIZE, "job-17 request header")
        (_magic, total, _job, status, total_image, image_index, inf_no, model_id,
         size) = cls._FMT.unpack_from(data, 0)
        return cls(inf_no, model_id, size, total_image, image_index, status, total)


@dataclass(frozen=True)
class PreProcInfo:
    """``kp_hw_pre_proc_info_t``, 60 bytes (§6.1)."""

    img_width: int = 0
    img_height: int = 0
    resized_img_width: int = 0
    resized_img_height: int = 0
    pad_top: int = 0
    pad_bottom: int = 0
    pad_left: int = 0
    pad_right: int = 0
    model_input_width: int = 0
    model_input_height: int = 0
    crop_area: CropBox = field(default_factory=CropBox)

    _FMT = struct.Struct("<10I")

    def pack(self) -> bytes:
        values = dataclasses.astuple(self)[:10]
        return self._FMT.pack(*values) + self.crop_area.pack()

    @classmethod
    def parse(cls, data: bytes | memoryview, offset: int = 0) -> "PreProcInfo":
        _need(data, offset + PRE_PROC_INFO_SIZE, "pre-processing info")
        values = cls._FMT.unpack_from(data, offset)
        return cls(*values, crop_area=CropBox.parse(data, offset + 40))


_RESULT_HEAD = struct.Struct("<7I")  # stamp (6 words) + num_of_pre_proc_info
_RESULT_TAIL = struct.Struct("<4I")  # product_id, inf_number, crop_number, is_last_crop
RESULT_TAIL_OFFSET = 28 + MAX_PRE_PROC_INFO * PRE_PROC_INFO_SIZE  # 328


@dataclass(frozen=True)
class ResultHeader:
    """Inference result header, 344 bytes (§6.1). The payload follows at byte 344."""

    total_size: int
    job_id: int
    status_code: int
    product_id: int
    inf_number: int
    crop_number: int = 0
    is_last_crop: int = 1
    pre_proc_info: tuple[PreProcInfo, ...] = ()
    total_image: int = 0
    image_index: int = 0
    magic: int = MAGIC_INFERENCE

    def pack(self) -> bytes:
        if len(self.pre_proc_info) > MAX_PRE_PROC_INFO:
            raise WireError(f"at most {MAX_PRE_PROC_INFO} pre-processing records")
        head = _RESULT_HEAD.pack(
            self.magic, self.total_size, self.job_id, self.status_code, self.total_image,
            self.image_index, len(self.pre_proc_info),
        )
        infos = b"".join(p.pack() for p in self.pre_proc_info)
        infos += bytes(PRE_PROC_INFO_SIZE * (MAX_PRE_PROC_INFO - len(self.pre_proc_info)))
        tail = _RESULT_TAIL.pack(
            self.product_id, self.inf_number, self.crop_number, self.is_last_crop
        )
        return head + infos + tail

    @classmethod
    def parse(cls, data: bytes | memoryview) -> "ResultHeader":
        """Parse the 344-byte header. A 24-byte stamp-only message (unknown job, §6.4)
        parses with zeros for the missing fields."""
        if len(data) < RESULT_HEADER_SIZE:
            stamp = InferenceStamp.parse(data)
            return cls(stamp.total_size, stamp.job_id, stamp.status_code, 0, 0, 0, 0, (),
                       stamp.total_image, stamp.image_index, stamp.magic)
        magic, total, job, status, total_image, image_index, n_info = _RESULT_HEAD.unpack_from(
            data, 0
        )
        infos = tuple(
            PreProcInfo.parse(data, 28 + PRE_PROC_INFO_SIZE * i)
            for i in range(min(n_info, MAX_PRE_PROC_INFO))
        )
        product_id, inf_number, crop_number, is_last = _RESULT_TAIL.unpack_from(
            data, RESULT_TAIL_OFFSET
        )
        return cls(total, job, status, product_id, inf_number, crop_number, is_last, infos,
                   total_image, image_index, magic)


assert RESULT_TAIL_OFFSET + _RESULT_TAIL.size == RESULT_HEADER_SIZE


# --- device addressing (§1.5) --------------------------------------------------------------


def port_id_from_ports(bus: int, ports: tuple[int, ...] | list[int]) -> int:
    """``usb_port_id`` = (bus & 3) | Σ port[i] << (2 + 5·i), at most 7 levels."""
    value = bus & 3
    for i, port in enumerate(list(ports)[:7]):
        value |= (port & 0x1F) << (2 + 5 * i)
    return value


def port_path(bus: int, ports: tuple[int, ...] | list[int]) -> str:
    """``"<bus>-<p0>-<p1>…"``, e.g. ``"1-2-3"``."""
    return "-".join(str(x) for x in (bus, *ports))
