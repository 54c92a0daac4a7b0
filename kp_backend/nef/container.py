"""The NEF container: trailer CRC and the ``NEFContent`` FlatBuffer (NEF.md §3).

Decisions: an absent ``model_info`` vector reads as empty (PLUS 3.1.1; 2.2.0 refused
it); the FlatBuffer is bounded by the file minus its 4-byte trailer.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from kp_backend.nef.errors import NefError
from kp_backend.nef.flatbuf import I32, U32, Buffer, Builder
from kp_backend.nef.model import ModelInfoEntry
from kp_backend.nef.setup_flatbuffer import chip_from_number, read_version, write_version
from kp_backend.npu_types import Chip

__all__ = ["Container", "parse_container", "build_container", "normalise_target",
           "stored_target", "NEF_MAGIC", "NEW_NUMBERING_SCHEMA"]

NEF_MAGIC = 0x012EBD34
#: The header schema version with which the stored target is taken as it is (NEF.md §3.6).
NEW_NUMBERING_SCHEMA = (2, 2, 1)
_TRAILER = 4

# NEFHeader field ids
_H_PLATFORM, _H_TARGET, _H_CRC, _H_KN, _H_ENC, _H_COMPILER, _H_TOOLCHAIN = range(7)
_H_SCHEMA, _H_UUID, _H_SOLUTION_ID, _H_SOLUTION_TAG = 7, 8, 9, 10


@dataclass(frozen=True)
class Container:
    magic: int
    target_raw: int
    target: Chip
    schema_version: tuple[int, int, int]
    header_crc: int
    kn_number: int
    encryption_mode: int
    uuid: int
    platform: str
    compiler_version: str
    toolchain_version: str
    solution_id: str
    solution_tag: str
    model_info: tuple[ModelInfoEntry, ...]
    fw_info: memoryview
    fw_info_offset: int
    all_models: memoryview
    all_models_offset: int
    file_crc: int
    crc_ok: bool


def _new_numbering(version: tuple[int, int, int]) -> bool:
    # PLUS compares per component, so 2.3.0 or 3.0.0 count as old numbering (NEF.md §3.6).
    return all(v >= n for v, n in zip(version, NEW_NUMBERING_SCHEMA))


def normalise_target(raw: int, schema_version: tuple[int, int, int]) -> int:
    """PLUS's rule: stored as is when the schema is >= 2.2.1 per component, else + 1."""
    return raw if _new_numbering(schema_version) else raw + 1


def stored_target(chip: Chip, schema_version: tuple[int, int, int]) -> int:
    """The header ``target`` value that normalises to ``chip`` under ``schema_version``."""
    return int(chip) if _new_numbering(schema_version) else int(chip) - 1


def parse_container(data: memoryview, verify_crc: bool = True) -> Container:
    size = len(data)
    if size < 8:
        raise NefError("file", 0, f"{size} bytes is too short for a NEF (FlatBuffer + CRC-32)")
    file_crc = struct.unpack_from("<I", data, size - _TRAILER)[0]
    crc_ok = zlib.crc32(data[:size - _TRAILER]) == file_crc
    if verify_crc and not crc_ok:
        raise NefError("crc", size - _TRAILER,
                       f"file CRC-32 is 0x{file_crc:08x} but the bytes before it give "
                       f"0x{zlib.crc32(data[:size - _TRAILER]):08x} (corrupt or truncated file)")
    buf = Buffer(data[:size - _TRAILER], 0, "NEF")
    root = buf.root("NEFContent")
    magic = root.scalar(0, "magic", U32, NEF_MAGIC)
    header = root.table(1, "header")
    if header is None:
        buf.fail("NEFContent.header", root.pos, "required table is absent")
    header.name = "header"
    schema_table = header.table(_H_SCHEMA, "schema_version")
    if schema_table is None:
        buf.fail("header.schema_version", header.pos, "required table is absent")
    schema = read_version(schema_table, (0, 0, 0))
    target_raw = header.scalar(_H_TARGET, "target", I32, 0)
    target = chip_from_number(normalise_target(target_raw, schema), "header.target",
                              header.pos)
    entries = []
    for info in root.tables(2, "model_info") or []:
        entries.append(ModelInfoEntry(info.string(0, "name"), info.scalar(1, "id", I32, 0),
                                      info.string(2, "version")))
    model_bin = root.table(3, "model_bin")
    if model_bin is None:
        buf.fail("NEFContent.model_bin", root.pos, "required table is absent")
    model_bin.name = "model_bin"
    fw_vec = model_bin.vector(0, "fw_info", 1)
    all_vec = model_bin.vector(1, "all_models", 1)
    if all_vec is None:
        buf.fail("model_bin.all_models", model_bin.pos, "required vector is absent")
    fw_off, fw_len = fw_vec if fw_vec is not None else (0, 0)
    all_off, all_len = all_vec
    return Container(
        magic=magic, target_raw=target_raw, target=target, schema_version=schema,
        header_crc=header.scalar(_H_CRC, "crc", U32, 0),
        kn_number=header.scalar(_H_KN, "kn_number", U32, 0),
        encryption_mode=header.scalar(_H_ENC, "encryption_mode", I32, 0),
        uuid=header.scalar(_H_UUID, "uuid", U32, 0),
        platform=header.string(_H_PLATFORM, "platform"),
        compiler_version=header.string(_H_COMPILER, "compiler_version"),
        toolchain_version=header.string(_H_TOOLCHAIN, "toolchain_version"),
        solution_id=header.string(_H_SOLUTION_ID, "solution_id"),
        solution_tag=header.string(_H_SOLUTION_TAG, "solution_tag"),
        model_info=tuple(entries),
        fw_info=data[fw_off:fw_off + fw_len], fw_info_offset=fw_off,
        all_models=data[all_off:all_off + all_len], all_models_offset=all_off,
        file_crc=file_crc, crc_ok=crc_ok)


def build_container(*, target: Chip, schema_version: tuple[int, int, int], fw_info: bytes,
                    all_models: bytes, model_info: list[ModelInfoEntry], kn_number: int = 0,
                    encryption_mode: int = 0, platform: str = "", compiler_version: str = "",
                    toolchain_version: str = "", store_magic: bool = True) -> bytes:
    """NEF bytes (NEF.md §9 step 4–6): ``all_models`` starts on a 32-byte boundary,
    ``crc`` = ``uuid`` = CRC-32 of ``all_models``, CRC-32 trailer appended."""
    crc = zlib.crc32(all_models)
    b = Builder()
    # Created back to front, so the file reads: root, model_bin, all_models, fw_info,
    # model_info, header (the order of the real files).
    strings = [b.create_string(s) if s else None
               for s in (platform, compiler_version, toolchain_version)]
    schema = write_version(b, schema_version)
    b.start_table()
    b.add_ref(_H_PLATFORM, strings[0])
    b.add(_H_TARGET, "i", stored_target(target, schema_version))
    b.add(_H_CRC, "I", crc)
    b.add(_H_KN, "I", kn_number)
    b.add(_H_ENC, "i", encryption_mode)
    b.add_ref(_H_COMPILER, strings[1])
    b.add_ref(_H_TOOLCHAIN, strings[2])
    b.add_ref(_H_SCHEMA, schema)
    b.add(_H_UUID, "I", crc)
    header = b.end_table()
    infos = []
    for entry in reversed(model_info):
        name, version = b.create_string(entry.name), b.create_string(entry.version)
        b.start_table()
        b.add_ref(0, name)
        b.add(1, "i", entry.id)
        b.add_ref(2, version)
        infos.append(b.end_table())
    info_vec = b.create_table_vector(infos[::-1])
    fw_vec = b.create_bytes(fw_info, 4)
    all_vec = b.create_bytes(all_models, 32)
    b.start_table()
    b.add_ref(0, fw_vec)
    b.add_ref(1, all_vec)
    model_bin = b.end_table()
    b.start_table()
    b.add(0, "I", NEF_MAGIC if store_magic else None)
    b.add_ref(1, header)
    b.add_ref(2, info_vec)
    b.add_ref(3, model_bin)
    body = b.finish(b.end_table())
    return body + struct.pack("<I", zlib.crc32(body))
