"""KNE (NEFv2, KL730): the ``KNEContent`` FlatBuffer in ``all_models`` (NEF.md §7).

Tensors get shape info version 2 (shape, ``stride_npu`` = the first ``len(shape)``
``stride_aligned`` entries, C-contiguous ``stride_onnx``) and quantisation broadcast as
PLUS 3.1.1 does: ``max(scale_count, len(radix))`` entries, a single radix or scale shared.

Decisions: the command and weight programs live in the KNE's cores and are not extracted
(``NefModel.command``/``weight`` stay empty); ``axis_permutation_onnx_to_npu`` is the KNE
``shape_intrp_dim`` when present (an addition; PLUS's v2 shape info has none), else identity.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from kp_backend.nef.flatbuf import I32, I8, U32, U64, U8, Buffer, Builder, Table, pack
from kp_backend.nef.model import DType, Quantization, TensorInfo
from kp_backend.nef.setup_flatbuffer import read_version, write_version
from kp_backend.npu_types import Chip, code_from_layout, layout_from_code

__all__ = ["KneModel", "parse_kne", "build_kne", "kne_max_raw_out_size", "c_strides",
           "LOCATION_INPUT_BUFFER", "LOCATION_OUTPUT_BUFFER", "KNE_SCHEMA_VERSION"]

LOCATION_INPUT_BUFFER = 1
LOCATION_OUTPUT_BUFFER = 2
KNE_TARGET_KL730 = 1
KNE_SCHEMA_VERSION = (3, 0, 17)  # the KNE schema in PLUS 3.1.1

# struct letters of each scale type; BFLOAT16 is read as the top half of a float32.
_SCALE_CODE = {
    DType.INT8: "b", DType.INT16: "h", DType.INT32: "i", DType.INT64: "q",
    DType.UINT8: "B", DType.UINT16: "H", DType.UINT32: "I", DType.UINT64: "Q",
    DType.FLOAT32: "f", DType.BFLOAT16: "H", DType.DOUBLE64: "d",
}
_FLOAT_TYPES = (DType.FLOAT32, DType.BFLOAT16, DType.DOUBLE64)

# kp_inference v2 result sizes (PLUS 3.1.1): result header, pre-processing record,
# npu_data_header_t, per-output node header.
_V2_RESULT_HEADER = 52
_HW_PRE_PROC_INFO = 60
_NPU_DATA_HEADER = 12
_NODE_HEADER_V2 = 76

# ModelHeader / Tensor / QuantizationParameters / BufferInfo field ids
_MH_ID, _MH_INPUTS, _MH_OUTPUTS, _MH_SCHEMA, _MH_BUFFERS, _MH_WT_REF = 0, 1, 2, 8, 9, 10
_T_NAME, _T_FORMAT, _T_NDIM, _T_SIZE, _T_SIZE_AL, _T_SHAPE, _T_STRIDE, _T_QUANT = range(8)
_T_LOCATION, _T_INTRP, _T_CH_DIM = 8, 10, 12


@dataclass(frozen=True)
class KneModel:
    id: int
    schema_version: tuple[int, int, int]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    input_buffer_len: int
    output_buffer_len: int


def c_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """C-contiguous strides in elements (last 1, each earlier = next stride × next dim)."""
    strides = [1] * len(shape)
    for k in range(len(shape) - 2, -1, -1):
        strides[k] = strides[k + 1] * shape[k + 1]
    return tuple(strides)


def _scale_values(q: Table, dtype: DType, count: int, scale_count: int) -> tuple[float, ...]:
    code = _SCALE_CODE[dtype]
    size = struct.calcsize(code)
    raw = q.bytes(1, "scale")
    raw = raw if raw is not None else memoryview(b"")
    needed = count if scale_count > 1 else min(count, 1)
    if len(raw) < needed * size:
        q.buf.fail(f"{q.name}.scale", q.pos, f"{len(raw)} bytes hold fewer than the "
                                             f"{needed} {dtype.name} scales needed")
    values = struct.unpack_from(f"<{needed}{code}", raw, 0)
    if dtype is DType.BFLOAT16:
        values = tuple(struct.unpack("<f", struct.pack("<I", v << 16))[0] for v in values)
    values = tuple(float(v) for v in values)
    return values if scale_count > 1 else values * count


def _quantization(t: Table) -> Quantization:
    q = t.table(_T_QUANT, "quantization")
    if q is None:
        t.buf.fail(f"{t.name}.quantization", t.pos, "required table is absent")
    radix = q.scalars(0, "radix", "b") or ()
    scale_count = q.scalar(2, "scale_count", U32, 0)
    type_num = q.scalar(3, "scale_type", I8, 0)
    if not DType.INT8 <= type_num <= DType.DOUBLE64:
        q.buf.fail(f"{q.name}.scale_type", q.pos, f"scale type {type_num}, expected 1..11")
    count = max(scale_count, len(radix))
    if count and len(radix) not in (1, count):
        q.buf.fail(f"{q.name}.radix", q.pos, f"{len(radix)} radix values for {count} "
                                             "entries; expected 1 or one per entry")
    scale = _scale_values(q, DType(type_num), count, scale_count)
    radix = radix * count if len(radix) == 1 else radix
    return Quantization(axis=t.scalar(_T_CH_DIM, "ch_dim", U8, 0), radix=tuple(radix),
                        scale=scale, scale_dtype=DType(type_num))


def _tensor(t: Table, index: int) -> TensorInfo:
    shape = tuple(t.scalars(_T_SHAPE, "shape", "i") or ())
    stride = t.scalars(_T_STRIDE, "stride_aligned", "I") or ()
    if len(stride) < len(shape):
        t.buf.fail(f"{t.name}.stride_aligned", t.pos, f"{len(stride)} strides for a "
                                                      f"{len(shape)}-d shape")
    perm = t.scalars(_T_INTRP, "shape_intrp_dim", "b") or tuple(range(len(shape)))
    code = t.scalar(_T_FORMAT, "format", U8, 0)
    return TensorInfo(
        index=index, name=t.string(_T_NAME, "name"), shape_npu=shape, shape_onnx=shape,
        axis_permutation_onnx_to_npu=tuple(perm), data_layout=layout_from_code(Chip.KL730, code),
        format_code=code, quantization=_quantization(t), shape_info_version=2,
        stride_npu=tuple(stride[:len(shape)]), stride_onnx=c_strides(shape))


def _buffer_len(header: Table, location: int) -> int | None:
    for info in header.tables(_MH_BUFFERS, "buffer_info") or []:
        if info.scalar(0, "buffer", I8, 0) == location:
            return info.scalar(2, "len", U64, 0)
    return None


def parse_kne(all_models: memoryview | bytes, base: int, label: str = "kne") -> tuple[KneModel, ...]:
    """The models of a ``KNEContent`` FlatBuffer, in vector order."""
    buf = Buffer(all_models, base, "all_models (KNE)")
    root = buf.root(label)
    if root.table(1, "header") is None:
        buf.fail(f"{label}.header", root.pos, "required table is absent")
    tables = root.tables(2, "models")
    if tables is None:
        buf.fail(f"{label}.models", root.pos, "required vector is absent")
    models = []
    for model in tables:
        h = model.table(0, "header")
        if h is None:
            buf.fail(f"{model.name}.header", model.pos, "required table is absent")
        schema = h.table(_MH_SCHEMA, "schema_version")
        if schema is None:
            buf.fail(f"{h.name}.schema_version", h.pos, "required table is absent")
        io = []
        for fid, fname in ((_MH_INPUTS, "inputs"), (_MH_OUTPUTS, "outputs")):
            tensors = h.tables(fid, fname)
            if tensors is None:
                buf.fail(f"{h.name}.{fname}", h.pos, "required vector is absent")
            io.append(tuple(_tensor(t, i) for i, t in enumerate(tensors)))
        out_len = _buffer_len(h, LOCATION_OUTPUT_BUFFER)
        if out_len is None:
            buf.fail(f"{h.name}.buffer_info", h.pos, "no OUTPUT_BUFFER entry; the result "
                                                     "buffer size is taken from it")
        models.append(KneModel(h.scalar(_MH_ID, "id", I32, 0), read_version(schema, (0, 0, 0)),
                               io[0], io[1], _buffer_len(h, LOCATION_INPUT_BUFFER) or 0, out_len))
    return tuple(models)


def kne_max_raw_out_size(model: KneModel) -> int:
    """PLUS 3.1.1's KL730 result-buffer size (NEF.md §8.4)."""
    size = (_V2_RESULT_HEADER + _HW_PRE_PROC_INFO * len(model.inputs) + _NPU_DATA_HEADER
            + _NODE_HEADER_V2 * len(model.outputs) + model.output_buffer_len)
    for t in model.outputs:
        q = t.quantization
        size += len(t.name.encode("utf-8")) + 1
        size += len(q.radix) * (struct.calcsize(_SCALE_CODE[q.scale_dtype]) + 1)
        size += 12 * len(t.shape_npu)
    return size


# --------------------------------------------------------------------------- writer


def _encode_scales(q: Quantization) -> bytes:
    code = _SCALE_CODE.get(q.scale_dtype)
    if code is None:
        raise ValueError(f"scale dtype {q.scale_dtype!r} is not storable; use 1..11")
    if q.scale_dtype is DType.BFLOAT16:
        values = [struct.unpack("<I", struct.pack("<f", s))[0] >> 16 for s in q.scale]
    elif q.scale_dtype in _FLOAT_TYPES:
        values = list(q.scale)
    else:
        if any(s != int(s) for s in q.scale):
            raise ValueError(f"{q.scale_dtype.name} scales must be whole numbers: {q.scale}")
        values = [int(s) for s in q.scale]
    return pack(f"<{len(values)}{code}", *values)


def _build_tensor(b: Builder, t: TensorInfo, location: int) -> int:
    q = t.quantization
    radix = b.create_vector("b", q.radix)
    scale = b.create_bytes(_encode_scales(q), 8)
    b.start_table()
    b.add_ref(0, radix)
    b.add_ref(1, scale)
    b.add(2, "I", len(q.scale))
    b.add(3, "b", int(q.scale_dtype))
    quant = b.end_table()
    shape = t.shape_npu
    name = b.create_string(t.name)
    shape_ref = b.create_vector("i", shape)
    stride_ref = b.create_vector("I", t.stride_npu or c_strides(shape))
    perm = t.axis_permutation_onnx_to_npu
    perm_ref = b.create_vector("b", perm) if perm and tuple(perm) != tuple(range(len(shape))) else None
    b.start_table()
    b.add_ref(_T_NAME, name)
    b.add(_T_FORMAT, "B", code_from_layout(Chip.KL730, t.data_layout))
    b.add(_T_NDIM, "B", len(shape))
    b.add_ref(_T_SHAPE, shape_ref)
    b.add_ref(_T_STRIDE, stride_ref)
    b.add_ref(_T_QUANT, quant)
    b.add(_T_LOCATION, "b", location)
    b.add_ref(_T_INTRP, perm_ref)
    b.add(_T_CH_DIM, "B", q.axis)
    return b.end_table()


def _buffer_info(b: Builder, location: int, length: int) -> int:
    b.start_table()
    b.add(0, "b", location)
    b.add(1, "Q", 0)
    b.add(2, "Q", length)
    return b.end_table()


def build_kne(models: list[KneModel], compiler_version: str = "") -> bytes:
    """A ``KNEContent`` with header and one ``Model`` per entry (NEF.md §9 step 7)."""
    b = Builder()
    model_refs = []
    for m in models:
        ins = b.create_table_vector([_build_tensor(b, t, LOCATION_INPUT_BUFFER) for t in m.inputs])
        outs = b.create_table_vector([_build_tensor(b, t, LOCATION_OUTPUT_BUFFER)
                                      for t in m.outputs])
        buffers = b.create_table_vector([
            _buffer_info(b, LOCATION_INPUT_BUFFER, m.input_buffer_len),
            _buffer_info(b, LOCATION_OUTPUT_BUFFER, m.output_buffer_len)])
        schema = write_version(b, m.schema_version)
        b.start_table()
        b.add(_MH_ID, "i", m.id)
        b.add_ref(_MH_INPUTS, ins)
        b.add_ref(_MH_OUTPUTS, outs)
        b.add_ref(_MH_SCHEMA, schema)
        b.add_ref(_MH_BUFFERS, buffers)
        b.add(_MH_WT_REF, "i", -1)
        header = b.end_table()
        b.start_table()
        b.add_ref(0, header)
        model_refs.append(b.end_table())
    models_vec = b.create_table_vector(model_refs)
    version = b.create_string(compiler_version)
    schema = write_version(b, KNE_SCHEMA_VERSION)
    b.start_table()
    b.add(0, "b", KNE_TARGET_KL730)
    b.add_ref(1, version)
    b.add_ref(2, schema)
    header = b.end_table()
    b.start_table()
    b.add_ref(1, header)
    b.add_ref(2, models_vec)
    return b.finish(b.end_table())
