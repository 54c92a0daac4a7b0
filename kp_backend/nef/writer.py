"""``write_nef``: NEF bytes from model descriptions (NEF.md §9), for test models and the
virtual dongle. It writes containers PLUS 2.2/3.1.1 accept (trailer CRC, header CRC,
fw_info tail and per-model CRCs, 16-byte block padding, ``all_models`` on a 32-byte
boundary); the command and weight bytes are whatever the caller passes.

Device addresses (decision, shaped like the real files): one input buffer shared by all
models at the chip's DRAM base, the output buffers one after another, one shared working
buffer, then ``all_models`` (each model's command, weight and setup.bin, 16-aligned).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from kp_backend.nef.container import build_container
from kp_backend.nef.fw_info import MAX_MODELS, build_fw_info
from kp_backend.nef.kne import KNE_SCHEMA_VERSION, KneModel, build_kne, c_strides
from kp_backend.nef.model import (
    DType, FwInfoRecord, ModelInfoEntry, Quantization, SetupFormat, TensorInfo)
from kp_backend.nef.setup_flatbuffer import DEFAULT_SETUP_SCHEMA, build_flatbuffer_setup
from kp_backend.nef.setup_legacy import build_legacy_setup
from kp_backend.npu_types import Chip, code_from_layout, parse_chip, parse_layout

__all__ = ["ModelSpec", "write_nef", "build_simple_nef", "tensor", "pack_all_models", "DRAM_BASE"]

#: Where the writer places the input buffer (observed bases of the real files).
DRAM_BASE = {Chip.KL520: 0x60000000, Chip.KL720: 0x80220000}
_DEFAULT_DRAM_BASE = 0x60000000
_BLOCK_ALIGN = 16
_DEFAULT_FORMAT = {Chip.KL520: SetupFormat.LEGACY, Chip.KL720: SetupFormat.LEGACY,
                   Chip.KL530: SetupFormat.FLATBUFFER, Chip.KL630: SetupFormat.FLATBUFFER,
                   Chip.KL540: SetupFormat.FLATBUFFER, Chip.KL730: SetupFormat.KNE}


@dataclass(frozen=True)
class ModelSpec:
    """What :func:`write_nef` needs for one model.

    ``setup_format`` None picks the chip's usual form (legacy for KL520/KL720, FlatBuffer
    for KL530/KL630/KL540, KNE for KL730); ``setup_schema_version`` None picks
    (1, 2, 31) for FlatBuffer setup.bin and (3, 0, 17) for KNE.
    """

    id: int
    inputs: Sequence[TensorInfo]
    outputs: Sequence[TensorInfo]
    input_mem_len: int
    output_mem_len: int
    version: int = 1
    command: bytes = b""
    weight: bytes = b""
    working_mem_len: int = 0
    name: str = ""
    setup_format: SetupFormat | None = None
    setup_schema_version: tuple[int, int, int] | None = None
    setup_file_schema_version: tuple[int, int, int] = (0, 0, 0)


def _align(n: int, m: int = _BLOCK_ALIGN) -> int:
    return n + (-n) % m


def _format(chip: Chip, spec: ModelSpec) -> SetupFormat:
    fmt = SetupFormat(spec.setup_format) if spec.setup_format else _DEFAULT_FORMAT.get(chip)
    if fmt is None:
        raise ValueError(f"cannot write a NEF for target {chip.name}")
    if (fmt is SetupFormat.KNE) != (chip is Chip.KL730):
        raise ValueError(f"KNE models are for KL730 only; {chip.name} got {fmt.value}")
    if fmt is SetupFormat.LEGACY and chip not in (Chip.KL520, Chip.KL720):
        raise ValueError(f"legacy setup.bin is for KL520/KL720 only, not {chip.name}")
    return fmt


def _check_layouts(chip: Chip, spec: ModelSpec) -> None:
    for kind, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        for i, t in enumerate(tensors):
            try:
                code_from_layout(chip, t.data_layout)
            except ValueError as exc:
                raise ValueError(f"model {spec.id} {kind} {i}: {exc}") from None


def _setup(chip: Chip, fmt: SetupFormat, spec: ModelSpec, rec: FwInfoRecord) -> bytes:
    if fmt is SetupFormat.LEGACY:
        return build_legacy_setup(chip, list(spec.inputs), list(spec.outputs), rec)
    return build_flatbuffer_setup(chip, list(spec.inputs), list(spec.outputs),
                                  spec.setup_schema_version or DEFAULT_SETUP_SCHEMA,
                                  spec.setup_file_schema_version)


def pack_all_models(parts: Sequence[tuple[bytes, bytes, bytes]]) -> tuple[bytes, list[bytes]]:
    """``all_models`` from (command, weight, setup) per model (NEF.md §5): each part padded
    to 16 bytes, no padding after the last setup.bin. Also returns each model's block
    (from its command to the next model's), over which fw_info's per-model CRC runs."""
    blocks = []
    for i, (cmd, weight, setup) in enumerate(parts):
        last = i == len(parts) - 1
        blocks.append(b"".join((cmd, bytes((-len(cmd)) % _BLOCK_ALIGN), weight,
                                bytes((-len(weight)) % _BLOCK_ALIGN), setup,
                                b"" if last else bytes((-len(setup)) % _BLOCK_ALIGN))))
    return b"".join(blocks), blocks


def _fw_info_nef(chip: Chip, specs: Sequence[ModelSpec], base: int) -> tuple[bytes, bytes]:
    """``(fw_info, all_models)`` for a NEFv0/v1 container."""
    fmts = [_format(chip, s) for s in specs]
    in_len = max(s.input_mem_len for s in specs)
    out_addrs, cursor = [], base + _align(in_len)
    for s in specs:
        out_addrs.append(cursor)
        cursor += _align(s.output_mem_len)
    work_addr = cursor
    cursor = _align(work_addr + max(s.working_mem_len for s in specs))
    records, blocks = [], []
    for s, fmt, out_addr in zip(specs, fmts, out_addrs):
        cmd_addr = cursor
        weight_addr = cmd_addr + _align(len(s.command))
        setup_addr = weight_addr + _align(len(s.weight))
        rec = FwInfoRecord(s.id, s.version, base, s.input_mem_len, out_addr, s.output_mem_len,
                           work_addr, s.working_mem_len, cmd_addr, len(s.command), weight_addr,
                           len(s.weight), setup_addr, 0)
        setup = _setup(chip, fmt, s, rec)  # the legacy header repeats the addresses
        rec = replace(rec, setup_mem_len=len(setup))
        records.append(rec)
        blocks.append((s.command, s.weight, setup))
        cursor = setup_addr + _align(len(setup))
    all_models, padded = pack_all_models(blocks)
    fw_info = build_fw_info(records, all_models, [zlib.crc32(b) for b in padded])
    return fw_info, all_models


def _kne_model(spec: ModelSpec) -> KneModel:
    return KneModel(spec.id, spec.setup_schema_version or KNE_SCHEMA_VERSION,
                    tuple(spec.inputs), tuple(spec.outputs), spec.input_mem_len,
                    spec.output_mem_len)


def write_nef(chip: Chip | int | str, models: Sequence[ModelSpec], *,
              schema_version: tuple[int, int, int] = (0, 0, 0), kn_number: int = 0,
              encryption_mode: int = 0, platform: str = "", compiler_version: str = "",
              toolchain_version: str = "", dram_base: int | None = None,
              store_magic: bool = True) -> bytes:
    """NEF bytes holding ``models`` for ``chip``.

    ``schema_version`` (0, 0, 0) stores the target in the old numbering, as every real
    file does; (2, 2, 1) or later-per-component in the new one. KL730 gets an empty
    fw_info and a KNE ``all_models``. Raises ``ValueError`` for what a NEF cannot hold.
    """
    chip = parse_chip(chip)
    if chip not in _DEFAULT_FORMAT:
        raise ValueError(f"cannot write a NEF for target {chip.name}")
    if not 0 < len(models) <= MAX_MODELS:
        raise ValueError(f"a NEF holds 1..{MAX_MODELS} models, got {len(models)}")
    for s in models:
        _format(chip, s)
        _check_layouts(chip, s)
        if min(s.input_mem_len, s.output_mem_len, s.working_mem_len) < 0:
            raise ValueError(f"model {s.id}: memory lengths must be >= 0")
    if chip is Chip.KL730:
        fw_info, all_models = b"", build_kne([_kne_model(s) for s in models], compiler_version)
        versions = [f"{s.version:x}" for s in models]  # PLUS parses KL730 versions as hex
    else:
        base = DRAM_BASE.get(chip, _DEFAULT_DRAM_BASE) if dram_base is None else dram_base
        fw_info, all_models = _fw_info_nef(chip, models, base)
        versions = [str(s.version) for s in models]  # decimal, as in the real files
    infos = [ModelInfoEntry(s.name, s.id, v) for s, v in zip(models, versions)]
    return build_container(
        target=chip, schema_version=schema_version, fw_info=fw_info, all_models=all_models,
        model_info=infos, kn_number=kn_number, encryption_mode=encryption_mode,
        platform=platform, compiler_version=compiler_version,
        toolchain_version=toolchain_version, store_magic=store_magic)


# --------------------------------------------------------------------------- simple


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def tensor(shape: Sequence[int], layout, *, radix: int | Sequence[int] = 0,
           scale: float | Sequence[float] = 1.0, name: str = "", axis: int = 1,
           shape_onnx: Sequence[int] = (), permutation: Sequence[int] = (),
           strides: Sequence[int] = (), scale_dtype: DType | int = DType.FLOAT32,
           chip: Chip | None = None) -> TensorInfo:
    """A :class:`TensorInfo` from plain values; radix/scale lists give per-channel entries
    (a single value is broadcast to the other's length). For KL730 (``chip``) the shape
    info is version 2 with C-contiguous ``stride_onnx``."""
    radix, scale = _as_tuple(radix), _as_tuple(scale)
    if len(radix) == 1 and len(scale) > 1:
        radix = radix * len(scale)
    if len(scale) == 1 and len(radix) > 1:
        scale = scale * len(radix)
    shape = tuple(int(d) for d in shape)
    dtype = DType(scale_dtype)
    if dtype is DType.FLOAT32:  # what the file can hold, so a read-back compares equal
        scale = tuple(struct.unpack(f"<{len(scale)}f", struct.pack(f"<{len(scale)}f", *scale)))
    v2 = chip is not None and parse_chip(chip) is Chip.KL730
    return TensorInfo(
        index=0, name=name, shape_npu=shape, data_layout=parse_layout(layout),
        quantization=Quantization(axis=axis, radix=tuple(int(r) for r in radix),
                                  scale=tuple(float(s) for s in scale), scale_dtype=dtype),
        shape_onnx=tuple(shape_onnx) or shape,
        axis_permutation_onnx_to_npu=tuple(permutation) or tuple(range(len(shape))),
        shape_info_version=2 if v2 else 1, stride_npu=tuple(strides),
        stride_onnx=c_strides(shape) if v2 else ())


def _tensor_from(item, chip: Chip) -> TensorInfo:
    if isinstance(item, TensorInfo):
        return item
    if not isinstance(item, Mapping):
        raise TypeError(f"a tensor is a TensorInfo or a dict, got {type(item).__name__}")
    kw = dict(item)
    return tensor(kw.pop("shape"), kw.pop("layout"), chip=chip, **kw)


def _default_buffer_size(chip: Chip, t: TensorInfo, output: bool) -> int:
    # The layout codecs own the buffer geometry (LAYOUTS.md); imported lazily so that
    # reading NEFs never depends on them.
    from kp_backend.layouts.plans import node_buffer_size

    return node_buffer_size(chip=chip, layout=t.data_layout, shape=t.shape_npu,
                            strides=t.stride_npu or None, output=output)


def _with_strides(chip: Chip, t: TensorInfo) -> TensorInfo:
    """KL730 tensors without ``stride_npu`` get the layout's default NPU strides."""
    if chip is not Chip.KL730 or t.stride_npu:
        return t
    from kp_backend.layouts.plans import default_strides

    return replace(t, stride_npu=tuple(default_strides(t.data_layout, t.shape_npu)))


def build_simple_nef(chip: Chip | int | str, models: Sequence[Mapping | ModelSpec], *,
                     buffer_size: Callable[[Chip, TensorInfo, bool], int] | None = None,
                     **nef_options) -> bytes:
    """A valid NEF from node shapes, layouts and quantisation alone.

    Each model is a :class:`ModelSpec` or a dict with ``id``, ``inputs`` and ``outputs``
    (each a :class:`TensorInfo` or a dict of :func:`tensor` arguments, e.g.
    ``{"shape": [1, 3, 224, 224], "layout": "4W4C8B", "radix": 7}``) and optionally
    ``version``, ``name``, ``input_mem_len``, ``output_mem_len``, ``working_mem_len``,
    ``setup_format``. Missing memory lengths are the sum of the nodes' NPU buffer sizes
    (``buffer_size(chip, tensor, is_output)``, by default from :mod:`kp_backend.layouts`).
    KL730 tensors without strides get :mod:`kp_backend.layouts`' default ``stride_npu``.
    Command and weight are small deterministic dummy blocks. ``nef_options`` go to
    :func:`write_nef`.
    """
    chip = parse_chip(chip)
    size_of = buffer_size or _default_buffer_size
    specs = []
    for m in models:
        if isinstance(m, ModelSpec):
            specs.append(m)
            continue
        kw = dict(m)
        ins, outs = ([_with_strides(chip, replace(_tensor_from(t, chip), index=i))
                      for i, t in enumerate(kw.pop(key))] for key in ("inputs", "outputs"))
        if kw.get("input_mem_len") is None:
            kw["input_mem_len"] = sum(size_of(chip, t, False) for t in ins)
        if kw.get("output_mem_len") is None:
            kw["output_mem_len"] = sum(size_of(chip, t, True) for t in outs)
        model_id = int(kw.pop("id"))
        kw.setdefault("command", _dummy(b"CMD", model_id))
        kw.setdefault("weight", _dummy(b"WGT", model_id))
        specs.append(ModelSpec(id=model_id, inputs=ins, outputs=outs, **kw))
    return write_nef(chip, specs, **nef_options)


def _dummy(tag: bytes, model_id: int) -> bytes:
    """Recognisable filler: no NPU runs it (the emulator computes outputs itself)."""
    return (tag + struct.pack("<I", model_id & 0xFFFFFFFF)) * 5

