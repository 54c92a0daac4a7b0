"""``read_nef``: NEF bytes to a :class:`~kp_backend.nef.model.NefFile` (NEF.md §8.3).

``max_raw_out_size`` (not in the file; a host result-buffer size, NEF.md §8.4,
PROTOCOL.md §6.6) is computed from the *NEF* target as PLUS 2.2 does, because the golden
USB transcripts come from PLUS 2.2.0 and the receive size must match them:

* KL520: 344 + 4 + 24 · outputs + ``output_mem_len`` (PLUS 3.1.1 uses the 64-bit host's
  76-byte ``kp_tensor_descriptor_t`` instead of 24, i.e. 52 · outputs more);
* KL720: 344 + 2248 + ``output_mem_len``; KL630: 344 + 2088 + ``output_mem_len``;
* KL730 (KNE): PLUS 3.1.1's v2 formula (:func:`~kp_backend.nef.kne.kne_max_raw_out_size`);
* any other target with fw_info (KL530, KL540, UNKNOWN): 0. PLUS 3.1.1 refuses to build a
  descriptor for them ("invalid target"); we still read the file and report 0.

KL730 model versions: PLUS matches ``model_info`` by loop index and parses the string as
hexadecimal; we match by model id (the evident intent, NEF.md §7) and parse as PLUS does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from kp_runtime.errors import InvalidArgument, NoSuchFile

from kp_backend.nef.container import parse_container
from kp_backend.nef.errors import NefError
from kp_backend.nef.fw_info import parse_fw_info
from kp_backend.nef.kne import kne_max_raw_out_size, parse_kne
from kp_backend.nef.model import (
    EMPTY, FwInfo, FwInfoRecord, ModelInfoEntry, NefFile, NefModel, SetupFormat)
from kp_backend.nef.setup_flatbuffer import chip_from_number, parse_flatbuffer_setup
from kp_backend.nef.setup_legacy import is_legacy, parse_legacy_setup
from kp_backend.npu_types import Chip
from kp_backend.protocol.constants import (
    FW_INFO_RECORD_SIZE, KL520_NODE_RECORD_SIZE, KL720_NODE_TABLE_SIZE, RESULT_HEADER_SIZE)

__all__ = ["read_nef", "models_from_fw_info", "max_raw_out_size"]

KL630_NODE_TABLE_SIZE = 8 + 40 * 52  # _630_raw_cnn_res_t: two u32 + 40 records of 13 u32
_HEX = frozenset("0123456789abcdefABCDEF")


def max_raw_out_size(chip: Chip, n_outputs: int, output_mem_len: int) -> int:
    """The result-buffer size for a fw_info model on ``chip`` (module docstring)."""
    if chip is Chip.KL520:
        return RESULT_HEADER_SIZE + 4 + KL520_NODE_RECORD_SIZE * n_outputs + output_mem_len
    if chip is Chip.KL720:
        return RESULT_HEADER_SIZE + KL720_NODE_TABLE_SIZE + output_mem_len
    if chip is Chip.KL630:
        return RESULT_HEADER_SIZE + KL630_NODE_TABLE_SIZE + output_mem_len
    return 0


def _part(all_models: memoryview, base_addr: int, addr: int, length: int, field: str,
          offset: int) -> memoryview:
    """The ``[addr, addr + length)`` device range as a slice of ``all_models``."""
    start = addr - base_addr
    if length < 0 or start < 0 or start + length > len(all_models):
        raise NefError(field, offset, f"device range 0x{addr:08x}+{length} lies outside "
                                      f"all_models (0x{base_addr:08x}+{len(all_models)})")
    return all_models[start:start + length]


def _model(chip: Chip, i: int, rec: FwInfoRecord, rec_bytes: memoryview, setup: memoryview,
           setup_offset: int, command: memoryview = EMPTY, weight: memoryview = EMPTY,
           rec_offset: int = 0) -> NefModel:
    label = f"model[{i}].setup"
    for name, value, at in (("input_mem_len", rec.input_mem_len, 12),
                            ("output_mem_len", rec.output_mem_len, 20)):
        if value < 0:
            raise NefError(f"fw_info.records[{i}].{name}", rec_offset + at,
                           f"negative length {value}")
    target, schema, file_schema = chip, (0, 0, 0), (0, 0, 0)
    if is_legacy(setup):
        inputs, outputs = parse_legacy_setup(setup, chip, setup_offset, label)
        fmt = SetupFormat.LEGACY
    else:
        info = parse_flatbuffer_setup(setup, setup_offset, label)
        inputs, outputs, fmt = info.inputs, info.outputs, SetupFormat.FLATBUFFER
        target, schema, file_schema = info.target, info.schema_version, info.file_schema_version
    return NefModel(
        id=rec.model_type, version=rec.model_version, target_chip=target,
        max_raw_out_size=max_raw_out_size(chip, len(outputs), rec.output_mem_len),
        inputs=inputs, outputs=outputs, setup_format=fmt, setup_schema_version=schema,
        setup_file_schema_version=file_schema, input_mem_len=rec.input_mem_len,
        output_mem_len=rec.output_mem_len, fw_info=rec, fw_info_bytes=rec_bytes,
        command=command, weight=weight, setup=setup)


def _rec_offset(i: int) -> int:
    return 4 + FW_INFO_RECORD_SIZE * i


def _record_bytes(fw_info: memoryview, i: int) -> memoryview:
    start = _rec_offset(i)
    return fw_info[start:start + FW_INFO_RECORD_SIZE]


def _models_from_nef(chip: Chip, fw: FwInfo, fw_info: memoryview, fw_offset: int,
                     all_models: memoryview, all_offset: int) -> tuple[NefModel, ...]:
    models = []
    base_addr = fw.records[0].cmd_mem_addr if fw.records else 0
    for i, rec in enumerate(fw.records):
        rec_offset = fw_offset + _rec_offset(i)

        def part(name: str, addr: int, length: int, at: int) -> memoryview:
            return _part(all_models, base_addr, addr, length,
                         f"fw_info.records[{i}].{name}", rec_offset + at)

        setup = part("setup_mem_addr", rec.setup_mem_addr, rec.setup_mem_len, 48)
        models.append(_model(
            chip, i, rec, _record_bytes(fw_info, i), setup,
            all_offset + rec.setup_mem_addr - base_addr,
            part("cmd_mem_addr", rec.cmd_mem_addr, rec.cmd_mem_len, 32),
            part("weight_mem_addr", rec.weight_mem_addr, rec.weight_mem_len, 40),
            rec_offset))
    return tuple(models)


def _kne_version(entries: tuple[ModelInfoEntry, ...], model_id: int) -> int:
    for entry in entries:
        if entry.id == model_id:
            text = entry.version
            return int(text, 16) & 0xFFFFFFFF if text and set(text) <= _HEX else 0
    return 0


def _models_from_kne(chip: Chip, container, all_models: memoryview,
                     all_offset: int) -> tuple[NefModel, ...]:
    return tuple(
        NefModel(id=m.id, version=_kne_version(container.model_info, m.id), target_chip=chip,
                 max_raw_out_size=kne_max_raw_out_size(m), inputs=m.inputs,
                 outputs=m.outputs, setup_format=SetupFormat.KNE,
                 setup_schema_version=m.schema_version, input_mem_len=m.input_buffer_len,
                 output_mem_len=m.output_buffer_len)
        for m in parse_kne(all_models, all_offset))


def _as_bytes(source) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source)  # a private copy keeps the result immutable
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise NoSuchFile(f"cannot read NEF file {os.fspath(source)!r}: "
                             f"{exc.strerror or exc}") from exc
    raise InvalidArgument(f"read_nef expects a path or bytes, got {type(source).__name__}")


def read_nef(source: str | os.PathLike | bytes | bytearray | memoryview, *,
             verify_crc: bool = True) -> NefFile:
    """Read a NEF (path or bytes) into an immutable :class:`NefFile`.

    Raises :class:`NefError` for any malformed content (CRC mismatch unless
    ``verify_crc=False``), :class:`~kp_runtime.errors.NoSuchFile` when a path cannot be
    read, :class:`~kp_runtime.errors.InvalidArgument` for a wrong argument type.
    """
    data = memoryview(_as_bytes(source))
    c = parse_container(data, verify_crc)
    chip = c.target
    fw_table = None
    if len(c.fw_info) == 0:
        if chip is not Chip.KL730:
            raise NefError("model_bin.fw_info", c.fw_info_offset,
                           f"empty fw_info; only KL730 NEFs (KNE) may omit it, this one "
                           f"targets {chip.name}")
        models = _models_from_kne(chip, c, c.all_models, c.all_models_offset)
        crc = c.header_crc
    else:
        fw_table = parse_fw_info(c.fw_info, c.fw_info_offset)
        models = _models_from_nef(chip, fw_table, c.fw_info, c.fw_info_offset, c.all_models,
                                  c.all_models_offset)
        crc = fw_table.model_checksum
    return NefFile(
        target_chip=chip, target_raw=c.target_raw, schema_version=c.schema_version,
        models=models, crc=crc, header_crc=c.header_crc, file_crc=c.file_crc,
        crc_ok=c.crc_ok, kn_number=c.kn_number, encryption_mode=c.encryption_mode,
        uuid=c.uuid, magic=c.magic, platform=c.platform, compiler_version=c.compiler_version,
        toolchain_version=c.toolchain_version, solution_id=c.solution_id,
        solution_tag=c.solution_tag, model_info=c.model_info, fw_info_table=fw_table,
        fw_info=c.fw_info, all_models=c.all_models, data=data)


def models_from_fw_info(chip: Chip | int, fw_info: bytes | memoryview,
                        setup_blobs: bytes | memoryview | Sequence[bytes | memoryview]
                        ) -> tuple[NefModel, ...]:
    """Models from a device's GET_MODEL_INFO answer (PROTOCOL.md §4.2): its fw_info copy
    (``16 + 56·N`` bytes, no CRC tail needed) and the setup.bin blobs, either one per
    model or concatenated in record order (split by ``setup_mem_len``).

    Error offsets count from byte 0 of ``fw_info`` / of the concatenated setup blobs.
    The models have no command or weight parts.
    """
    chip = chip_from_number(int(chip), "target_chip", None)
    fw_bytes = memoryview(bytes(fw_info))
    fw = parse_fw_info(fw_bytes)
    if isinstance(setup_blobs, (bytes, bytearray, memoryview)):
        joined = memoryview(bytes(setup_blobs))
        blobs, pos = [], 0
        for i, rec in enumerate(fw.records):
            blobs.append(_part(joined, 0, pos, rec.setup_mem_len,
                               f"fw_info.records[{i}].setup_mem_len", _rec_offset(i) + 52))
            pos += rec.setup_mem_len
    else:
        blobs = [memoryview(bytes(b)) for b in setup_blobs]
        if len(blobs) != len(fw.records):
            raise NefError("setup_blobs", None, f"{len(blobs)} setup blobs for "
                                                f"{len(fw.records)} fw_info records")
    models, pos = [], 0
    for i, (rec, setup) in enumerate(zip(fw.records, blobs)):
        models.append(_model(chip, i, rec, _record_bytes(fw_bytes, i), setup, pos,
                             rec_offset=_rec_offset(i)))
        pos += len(setup)
    return tuple(models)
