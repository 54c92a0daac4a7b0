"""FlatBuffer setup.bin, ``INFContent`` of schema ``KneronSetup`` (NEF.md §6.5, §6.6).

Used by KL530/KL630 and (inferred) KL720 NEFs compiled in flatbuffer mode. The setup's
``Header.target`` (new numbering) replaces the NEF's target for the model, as in PLUS.

Decisions: an absent ``Header.schema_version`` table reads as PLUS 3.1.1's schema defaults
(1, 2, 31); a target number that is no known chip is an error (PLUS would keep the number,
our :class:`~kp_backend.npu_types.Chip` cannot); ``quantized_axis`` is 1, hard-coded as in
PLUS (NEF.md open question 5).
"""

from __future__ import annotations

from dataclasses import dataclass

from kp_backend.nef.errors import NefError
from kp_backend.nef.flatbuf import F32, I32, U32, Buffer, Builder, Table
from kp_backend.nef.model import Quantization, TensorInfo
from kp_backend.npu_types import Chip, code_from_layout, layout_from_code

__all__ = ["FB_MAGIC", "SetupInfo", "parse_flatbuffer_setup", "build_flatbuffer_setup",
           "DEFAULT_SETUP_SCHEMA"]

FB_MAGIC = 0x012EBD34
DEFAULT_SETUP_SCHEMA = (1, 2, 31)  # PLUS 3.1.1 schema defaults; PLUS 2.2.0 had (1, 2, 11)

# INFContent fields
_MAGIC, _HEADER, _INPUTS, _OUTPUTS = 0, 1, 2, 3
# Header fields
_H_PLATFORM, _H_TARGET, _H_SCHEMA, _H_FILE_SCHEMA = 0, 1, 2, 6
# Tensor fields
_T_NAME, _T_FORMAT, _T_SHAPE, _T_RAW_SHAPE, _T_QUANT, _T_INTRP = 0, 1, 2, 3, 4, 7


@dataclass(frozen=True)
class SetupInfo:
    target: Chip
    schema_version: tuple[int, int, int]
    file_schema_version: tuple[int, int, int]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


def chip_from_number(value: int, field: str, offset: int | None) -> Chip:
    try:
        return Chip(value)
    except ValueError:
        raise NefError(field, offset, f"target {value} is not a known chip; expected "
                                      f"0..{int(max(Chip))}") from None


def read_version(table: Table | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if table is None:
        return default
    return tuple(table.scalar(i, name, U32, default[i])
                 for i, name in enumerate(("major_num", "minor_num", "revision_num")))


def _tensor(t: Table, index: int, chip: Chip) -> TensorInfo:
    code = t.scalar(_T_FORMAT, "format", U32, 0)
    shape = t.scalars(_T_SHAPE, "shape", "i") or ()
    raw = t.scalars(_T_RAW_SHAPE, "raw_shape", "i") or ()
    perm = t.scalars(_T_INTRP, "shape_intrp_dim", "i") or ()
    q = t.table(_T_QUANT, "quantization")
    if q is None:
        t.buf.fail(f"{t.name}.quantization", t.pos, "required table is absent")
    fxp = q.tables(0, "fxp_info") or []
    radix = tuple(f.scalar(1, "radix", I32, 0) for f in fxp)
    scale = tuple(f.scalar(0, "scale", F32, 0.0) for f in fxp)
    return TensorInfo(
        index=index, name=t.string(_T_NAME, "name"), shape_npu=tuple(shape),
        shape_onnx=tuple(raw) if raw else tuple(shape),
        axis_permutation_onnx_to_npu=tuple(perm) if perm else tuple(range(len(shape))),
        data_layout=layout_from_code(chip, code), format_code=code,
        quantization=Quantization(axis=1, radix=radix, scale=scale))


def parse_flatbuffer_setup(setup: memoryview | bytes, base: int = 0,
                           label: str = "setup") -> SetupInfo:
    buf = Buffer(setup, base, f"{label} (setup.bin)")
    root = buf.root(label)
    magic = root.scalar(_MAGIC, "magic", U32, FB_MAGIC)
    if magic != FB_MAGIC:
        buf.fail(f"{label}.magic", root.pos, f"magic 0x{magic:08x}, expected 0x{FB_MAGIC:08x}")
    header = root.table(_HEADER, "header")
    if header is None:
        buf.fail(f"{label}.header", root.pos, "required table is absent")
    target = chip_from_number(header.scalar(_H_TARGET, "target", I32, 0),
                              f"{label}.header.target", base + header.pos)
    schema = read_version(header.table(_H_SCHEMA, "schema_version"), DEFAULT_SETUP_SCHEMA)
    file_schema = read_version(header.table(_H_FILE_SCHEMA, "file_schema_version"), (0, 0, 0))
    lists = []
    for fid, fname in ((_INPUTS, "inputs"), (_OUTPUTS, "outputs")):
        tables = root.tables(fid, fname)
        if tables is None:
            buf.fail(f"{label}.{fname}", root.pos, "required vector is absent")
        lists.append(tuple(_tensor(t, i, target) for i, t in enumerate(tables)))
    return SetupInfo(target, schema, file_schema, lists[0], lists[1])


def write_version(b: Builder, version: tuple[int, int, int]) -> int:
    b.start_table()
    for i, v in enumerate(version):
        b.add(i, "I", v)  # stored explicitly: the schema defaults differ between releases
    return b.end_table()


def _build_tensor(b: Builder, t: TensorInfo, chip: Chip) -> int:
    q = t.quantization
    if len(q.radix) > 1 and q.axis != 1:
        raise ValueError(f"setup.bin per-channel quantisation is along axis 1; tensor "
                         f"{t.name!r} uses axis {q.axis}")
    fxp = []
    for radix, scale in q.entries:
        b.start_table()
        b.add(0, "f", scale)
        b.add(1, "i", radix)
        fxp.append(b.end_table())
    fxp_vec = b.create_table_vector(fxp)
    b.start_table()
    b.add_ref(0, fxp_vec)
    quant = b.end_table()
    name = b.create_string(t.name)
    shape = b.create_vector("i", t.shape_npu)
    raw = b.create_vector("i", t.shape_onnx) if t.shape_onnx else None
    perm = (b.create_vector("i", t.axis_permutation_onnx_to_npu)
            if t.axis_permutation_onnx_to_npu else None)
    b.start_table()
    b.add_ref(_T_NAME, name)
    b.add(_T_FORMAT, "I", code_from_layout(chip, t.data_layout))
    b.add_ref(_T_SHAPE, shape)
    b.add_ref(_T_RAW_SHAPE, raw)
    b.add_ref(_T_QUANT, quant)
    b.add_ref(_T_INTRP, perm)
    return b.end_table()


def build_flatbuffer_setup(chip: Chip, inputs: list[TensorInfo], outputs: list[TensorInfo],
                           schema_version: tuple[int, int, int] = DEFAULT_SETUP_SCHEMA,
                           file_schema_version: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    """An ``INFContent`` setup.bin with magic, header (target in the new numbering, both
    schema versions stored explicitly), inputs and outputs (NEF.md §9 step 1)."""
    b = Builder()
    vectors = [b.create_table_vector([_build_tensor(b, t, chip) for t in tensors])
               for tensors in (inputs, outputs)]
    schema = write_version(b, schema_version)
    file_schema = write_version(b, file_schema_version)
    b.start_table()
    b.add(_H_TARGET, "i", int(chip))
    b.add_ref(_H_SCHEMA, schema)
    b.add_ref(_H_FILE_SCHEMA, file_schema)
    header = b.end_table()
    b.start_table()
    b.add(_MAGIC, "I", FB_MAGIC)
    b.add_ref(_HEADER, header)
    b.add_ref(_INPUTS, vectors[0])
    b.add_ref(_OUTPUTS, vectors[1])
    return b.finish(b.end_table())
