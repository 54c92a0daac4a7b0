"""fw_info (NEF.md §4): model count, 56-byte model records, tail words.

PLUS reads ``16 + 56·N`` bytes; real NEFs append N per-model CRC-32 words and a CRC-32 of
the preceding fw_info bytes (inferred, §3.5), which the device's GET_MODEL_INFO copy omits.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import astuple, fields

from kp_backend.nef.errors import NefError
from kp_backend.nef.model import FwInfo, FwInfoRecord
from kp_backend.protocol.constants import FW_INFO_RECORD_SIZE

__all__ = ["MAX_MODELS", "parse_fw_info", "build_fw_info", "fw_info_size"]

#: ``KP_MAX_MODEL_COUNT`` (kp_struct.h); firmware refuses more (error 104).
MAX_MODELS = 16

# model_type, model_version, then (addr u32, len i32) pairs: the lengths are signed in PLUS.
_RECORD = struct.Struct("<II" + "Ii" * 6)
assert _RECORD.size == FW_INFO_RECORD_SIZE == 4 * len(fields(FwInfoRecord))


def fw_info_size(n_models: int, with_crcs: bool = True) -> int:
    """``20 + 60·N`` as in NEF files, or ``16 + 56·N`` (the device's copy)."""
    return 16 + FW_INFO_RECORD_SIZE * n_models + (4 * n_models + 4 if with_crcs else 0)


def parse_fw_info(blob: memoryview | bytes, base: int = 0, label: str = "fw_info") -> FwInfo:
    """Parse a fw_info blob; ``base`` is its offset in the file (for error messages)."""
    size = len(blob)
    if size < 4:
        raise NefError(f"{label}.model_num", base, f"fw_info has {size} bytes, needs at least 4")
    n = struct.unpack_from("<I", blob, 0)[0]
    if n > MAX_MODELS:
        raise NefError(f"{label}.model_num", base,
                       f"{n} models; Kneron devices hold at most {MAX_MODELS}")
    need = fw_info_size(n, with_crcs=False)
    if size < need:
        raise NefError(f"{label}", base + size,
                       f"fw_info has {size} bytes, {n} models need {need}")
    records = tuple(FwInfoRecord(*_RECORD.unpack_from(blob, 4 + FW_INFO_RECORD_SIZE * i))
                    for i in range(n))
    tail = 4 + FW_INFO_RECORD_SIZE * n
    end, total, checksum = struct.unpack_from("<III", blob, tail)
    crcs: tuple[int, ...] = ()
    fw_crc = None
    if size >= fw_info_size(n):
        words = struct.unpack_from(f"<{n + 1}I", blob, tail + 12)
        crcs, fw_crc = words[:n], words[n]
    return FwInfo(records, end, total, checksum, crcs, fw_crc)


def build_fw_info(records: list[FwInfoRecord], all_models: bytes | memoryview,
                  model_crcs: list[int], with_crcs: bool = True) -> bytes:
    """fw_info bytes for ``records``: tail = last setup end, ``len(all_models)``, its CRC,
    then (``with_crcs``) the per-model CRCs and the CRC of everything before."""
    if not 0 < len(records) <= MAX_MODELS:
        raise ValueError(f"a NEF holds 1..{MAX_MODELS} models, got {len(records)}")
    last = records[-1]
    out = bytearray(struct.pack("<I", len(records)))
    for rec in records:
        out += _RECORD.pack(*astuple(rec))
    out += struct.pack("<III", (last.setup_mem_addr + last.setup_mem_len) & 0xFFFFFFFF,
                       len(all_models), zlib.crc32(all_models))
    if with_crcs:
        out += struct.pack(f"<{len(model_crcs)}I", *model_crcs)
        out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)
