"""Legacy C-struct setup.bin (NEF.md §6.1–§6.4): KL520 and KL720 only.

Tensors come out as PLUS 3.1.1 builds them: name "", ``shape_npu = shape_onnx = [1, C, H, W]``,
identity axis permutation, one per-tensor fixed-point entry on axis 1 with a FLOAT32
scale (1.0 for inputs, which carry no scale).

Decision: stricter than PLUS, every ``input_index``/``output_index`` must be in range and
every slot filled exactly once (PLUS does not check; the real files are complete).
"""

from __future__ import annotations

import struct

from kp_backend.nef.errors import NefError
from kp_backend.nef.model import FwInfoRecord, Quantization, TensorInfo
from kp_backend.npu_types import Chip, DataLayout, code_from_layout, layout_from_code

__all__ = ["LEGACY_MAGIC", "is_legacy", "parse_legacy_setup", "build_legacy_setup"]

LEGACY_MAGIC = 0x8EB5A462

_HEADER = {
    # KL520: magic, version, remaining_models, model_type, app_type, dram_start, dram_size,
    # input_row, input_col, input_channel, cmd_start, cmd_size, weight_start, weight_size,
    # input_start, input_size, input_radix (i32), output_num
    Chip.KL520: struct.Struct("<16Ii I"),
    # KL720: magic, version, remaining_models, model_type, app_type, dram_start, dram_size,
    # cmd_start, cmd_size, weight_start, weight_size, input_start, input_size, input_num,
    # output_num
    Chip.KL720: struct.Struct("<15I"),
}
NODE_IN, NODE_CPU, NODE_OUTPUT, NODE_DATA, NODE_SUPER, NODE_NET_INPUT = range(6)
_NODE_SIZE = {
    Chip.KL520: {NODE_IN: 8, NODE_CPU: 212, NODE_OUTPUT: 48, NODE_DATA: 44, NODE_SUPER: 32},
    Chip.KL720: {NODE_IN: 8, NODE_CPU: 60, NODE_OUTPUT: 48, NODE_DATA: 44, NODE_SUPER: 32,
                 NODE_NET_INPUT: 36},
}
# node_id, supernum, data_format, row/col/ch start, row/col/ch length, output_index,
# output_radix (i32), output_scale (f32)
_OUTPUT = struct.Struct("<10Iif")
# node_id, input_index, input_format, input_row, input_col, input_channel, input_start,
# input_size, input_radix (i32)
_NET_INPUT = struct.Struct("<8Ii")
# node_id, addr, row/col/ch start, row/col/ch length
_SUPER = struct.Struct("<8I")
_IN = struct.Struct("<2I")
_KL520_INPUT_CODE = 16  # the KL520 header has no format: always 4W4C8B


def is_legacy(setup: memoryview | bytes) -> bool:
    return len(setup) >= 4 and struct.unpack_from("<I", setup, 0)[0] == LEGACY_MAGIC


def _tensor(chip: Chip, index: int, c: int, h: int, w: int, code: int, radix: int,
            scale: float) -> TensorInfo:
    shape = (1, c, h, w)
    return TensorInfo(index=index, name="", shape_npu=shape, shape_onnx=shape,
                      axis_permutation_onnx_to_npu=(0, 1, 2, 3),
                      data_layout=layout_from_code(chip, code), format_code=code,
                      quantization=Quantization(axis=1, radix=(radix,), scale=(scale,)))


def _slots(count: int, limit: int, field: str, base: int, node_size: int) -> list:
    if count * node_size > limit:
        raise NefError(field, base, f"{count} nodes of {node_size} bytes cannot fit in a "
                                    f"setup.bin of {limit} bytes")
    return [None] * count


def parse_legacy_setup(setup: memoryview | bytes, chip: Chip, base: int = 0,
                       label: str = "setup") -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """``(inputs, outputs)`` of a legacy setup.bin for ``chip`` (KL520 or KL720)."""
    if chip not in _HEADER:
        raise NefError(label, base, f"legacy setup.bin is only valid for KL520 and KL720 "
                                    f"NEFs, this NEF targets {chip.name}")
    hdr = _HEADER[chip]
    size = len(setup)
    if size < hdr.size:
        raise NefError(f"{label}.header", base, f"{chip.name} legacy setup.bin needs a "
                                                f"{hdr.size}-byte header, has {size} bytes")
    h = hdr.unpack_from(setup, 0)
    remaining = h[2]
    boundary = remaining if hdr.size <= remaining <= size else size
    sizes = _NODE_SIZE[chip]
    if chip is Chip.KL520:
        inputs = [_tensor(chip, 0, h[9], h[7], h[8], _KL520_INPUT_CODE, h[16], 1.0)]
        n_out = h[17]
    else:
        inputs = _slots(h[13], size, f"{label}.header.input_num", base + 52,
                        sizes[NODE_NET_INPUT])
        n_out = h[14]
    outputs = _slots(n_out, size, f"{label}.header.output_num", base + hdr.size - 4,
                     sizes[NODE_OUTPUT])
    pos = hdr.size
    while pos < boundary:
        if pos + 4 > size:
            raise NefError(f"{label}.node", base + pos, "node id runs past the end of setup.bin")
        node_id = struct.unpack_from("<I", setup, pos)[0]
        node_size = sizes.get(node_id)
        if node_size is None:
            raise NefError(f"{label}.node", base + pos,
                           f"unknown node id {node_id} for a {chip.name} setup.bin; expected "
                           f"one of {sorted(sizes)}")
        if pos + node_size > size:
            raise NefError(f"{label}.node", base + pos, f"node {node_id} needs {node_size} "
                                                        f"bytes, setup.bin ends at {base + size}")
        if node_id == NODE_OUTPUT:
            o = _OUTPUT.unpack_from(setup, pos)
            _fill(outputs, o[9], f"{label}.output_index", base + pos + 36,
                  lambda i: _tensor(chip, i, o[8], o[6], o[7], o[2], o[10], o[11]))
        elif node_id == NODE_NET_INPUT:
            n = _NET_INPUT.unpack_from(setup, pos)
            _fill(inputs, n[1], f"{label}.input_index", base + pos + 4,
                  lambda i: _tensor(chip, i, n[5], n[3], n[4], n[2], n[8], 1.0))
        pos += node_size
    for kind, nodes in (("input", inputs), ("output", outputs)):
        for i, node in enumerate(nodes):
            if node is None:
                raise NefError(f"{label}.{kind}s[{i}]", base,
                               f"no node describes {kind} {i} of {len(nodes)}")
    return tuple(inputs), tuple(outputs)


def _fill(slots: list, index: int, field: str, offset: int, make) -> None:
    if index >= len(slots):
        raise NefError(field, offset, f"index {index} is out of range 0..{len(slots) - 1}")
    if slots[index] is not None:
        raise NefError(field, offset, f"index {index} is described twice")
    slots[index] = make(index)


def _nchw(t: TensorInfo, what: str) -> tuple[int, int, int]:
    shape = tuple(t.shape_npu)
    if len(shape) != 4 or shape[0] != 1:
        raise ValueError(f"legacy setup.bin stores [1, C, H, W] shapes; {what} has {list(shape)}")
    if len(t.quantization.radix) != 1:
        raise ValueError(f"legacy setup.bin stores per-tensor quantisation; {what} has "
                         f"{len(t.quantization.radix)} entries")
    return shape[1], shape[2], shape[3]


def build_legacy_setup(chip: Chip, inputs: list[TensorInfo], outputs: list[TensorInfo],
                       rec: FwInfoRecord) -> bytes:
    """A legacy setup.bin (node order as in the real files). ``rec`` gives the addresses."""
    if chip not in _HEADER:
        raise ValueError(f"legacy setup.bin exists for KL520 and KL720 only, not {chip.name}")
    for i, t in enumerate(inputs):
        if t.quantization.scale[0] != 1.0:
            raise ValueError(f"legacy setup.bin has no input scale; input {i} must use 1.0")
    out = bytearray()
    if chip is Chip.KL520:
        if len(inputs) != 1 or inputs[0].data_layout is not DataLayout.L4W4C8B:
            raise ValueError("a KL520 legacy setup.bin has exactly one 4W4C8B input")
        c, h, w = _nchw(inputs[0], "input 0")
        out += _HEADER[chip].pack(
            LEGACY_MAGIC, 1, 1, 0, 0, rec.buf_addr, rec.buf_len, h, w, c, rec.cmd_mem_addr,
            rec.cmd_mem_len, rec.weight_mem_addr, rec.weight_mem_len, rec.input_mem_addr,
            rec.input_mem_len, inputs[0].quantization.radix[0], len(outputs))
    else:
        out += _HEADER[chip].pack(
            LEGACY_MAGIC, 1, 1, 0, 0, rec.buf_addr, rec.buf_len, rec.cmd_mem_addr,
            rec.cmd_mem_len, rec.weight_mem_addr, rec.weight_mem_len, rec.input_mem_addr,
            rec.input_mem_len, len(inputs), len(outputs))
        for i, t in enumerate(inputs):
            c, h, w = _nchw(t, f"input {i}")
            out += _NET_INPUT.pack(NODE_NET_INPUT, i, code_from_layout(chip, t.data_layout), h,
                                   w, c, rec.input_mem_addr, rec.input_mem_len,
                                   t.quantization.radix[0])
    out += _IN.pack(NODE_IN, 0)
    for i, t in enumerate(outputs):
        c, h, w = _nchw(t, f"output {i}")
        code = code_from_layout(chip, t.data_layout)
        out += _OUTPUT.pack(NODE_OUTPUT, 0, code, 0, 0, 0, h, w, c, i,
                            t.quantization.radix[0], t.quantization.scale[0])
        out += _SUPER.pack(NODE_SUPER, rec.output_mem_addr, 0, 0, 0, h, w, c)
    return bytes(out)
