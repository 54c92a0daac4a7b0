"""Index plans: where each tensor element lives in a node's NPU buffer (LAYOUTS.md §2, §5).

A :class:`Plan` holds, for every element of the tensor in the order the caller sees it,
the position of that element in the raw buffer, plus how to read it (``kind``). Decoding
is then one ``np.take`` and encoding one scatter; the plans are cached with
``functools.lru_cache`` keyed by chip, layout, shape, ordering and strides, so repeated
conversions of the same node do no planning work.

Two views of a v1 (KL520/KL720/KL630) node exist:

* the *true* layout (``layout_plan``), used to encode inputs and to write outputs;
* the *parser* layout (``decode_plan``) which is what Kneron's v1 retrieve functions read:
  they know only 8W1C16B, 1W16C8B and "everything else is 16W1C8B" (quirk §10.1), so a
  KL720 RAW_8B or KL520 4W4C8B output is read with 16-byte row padding. 16-bit layouts other
  than 8W1C16B (HL, RAW_16B) and RAW_FLOAT would come out partly uninitialised in Kneron's
  fixed-point output, so they are rejected here (decision; LAYOUTS.md §10.1 "not run").

KL730 (v2) uses the stride model of §2.8 in both directions; its default ``stride_npu``
values are the inferred ones of the §2.8 table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from kp_backend.npu_types import Chip, DataLayout, parse_layout
from kp_backend.layouts.params import (
    ChannelOrdering,
    check_chip_layout,
    is_v2,
    parse_ordering,
    parse_shape,
    parse_strides,
)

__all__ = [
    "Plan",
    "decode_plan",
    "layout_plan",
    "node_buffer_size",
    "default_strides",
    "native_ordering",
]

_L = DataLayout

# Element kinds: how one scalar is stored.
I8 = "i8"  # int8, position = byte offset
I16 = "i16"  # little-endian int16, position = element offset
I16_MASKED = "i16m"  # as I16 but the LSB is dropped (KL730 8W1C16B / RAW_16B, §4.3)
HL = "hl"  # high/low split (§2.6), position = byte offset of the low byte
F32 = "f32"  # float32, position = element offset (RAW_FLOAT)

_ELEM_BYTES = {I8: 1, I16: 2, I16_MASKED: 2, HL: 1, F32: 4}

_HL_LAYOUTS = frozenset({_L.L4W4C8BHL, _L.L1W16C8BHL, _L.L16W1C8BHL, _L.L1W16C8BHL_CH_COMPACT})
_OUTER_GROUP = frozenset({_L.L1W16C8B, _L.L1W16C8BHL})
# 8-bit sibling used to compute the scalar index of an HL layout.
_HL_SIBLING = {
    _L.L4W4C8BHL: _L.L4W4C8B,
    _L.L1W16C8BHL: _L.L1W16C8B,
    _L.L16W1C8BHL: _L.L16W1C8B,
    _L.L1W16C8BHL_CH_COMPACT: _L.L1W16C8B_CH_COMPACT,
}


@dataclass(frozen=True)
class Plan:
    """Where the elements of one node live.

    Positions are, in output order, a byte offset for ``i8``/``hl`` (the high byte of ``hl``
    is 16 bytes later) or an element offset for ``i16``/``i16m``/``f32``. When they are an
    affine function of the output index (most layouts without channel groups), ``affine``
    holds ``(offset, strides)`` and the codecs use a strided view; ``index`` is then None so
    the cache does not hold a large array. Otherwise ``index`` is the read-only ``np.intp``
    array of positions. ``out_shape`` is the tensor's shape in output order and ``nbytes``
    the node's buffer size (padding included).
    """

    index: np.ndarray | None
    kind: str
    out_shape: tuple[int, ...]
    nbytes: int
    affine: tuple[int, tuple[int, ...]] | None = None

    @classmethod
    def build(cls, index: np.ndarray, kind: str, out_shape: tuple[int, ...], nbytes: int) -> "Plan":
        affine = _affine(index, out_shape) if kind != HL else None
        return cls(None if affine else _freeze(index), kind, tuple(out_shape), nbytes, affine)

    def positions(self) -> np.ndarray:
        """Every element's position (flat, output order), materialised if affine."""
        if self.index is not None:
            return self.index
        offset, strides = self.affine
        return _strided_positions(offset, strides, self.out_shape).reshape(-1).astype(np.intp)


def _strided_positions(offset: int, strides, shape: tuple[int, ...]) -> np.ndarray:
    """``offset + sum(i_k * strides_k)`` over ``shape`` (int64, shape ``shape``)."""
    pos = np.full((1,) * len(shape), offset, dtype=np.int64)
    for axis, (d, st) in enumerate(zip(shape, strides)):
        view = [1] * len(shape)
        view[axis] = d
        pos = pos + (np.arange(d, dtype=np.int64) * st).reshape(view)
    return np.broadcast_to(pos, shape)


def _ru(n: int, m: int) -> int:
    return -(-n // m) * m


def _hl_bytes(scalars: int) -> int:
    return 32 * -(-scalars // 16)


def _hl_address(s: np.ndarray) -> np.ndarray:
    """Byte of the low half of scalar ``s`` in an HL layout (§2.6)."""
    return (s >> 4) * 32 + (s & 15)


def _kind(layout: DataLayout, v2: bool) -> str:
    if layout in _HL_LAYOUTS:
        return HL
    if layout is _L.RAW_FLOAT:
        return F32
    if layout in (_L.L8W1C16B, _L.RAW_16B):
        return I16_MASKED if v2 else I16
    return I8


def native_ordering(chip: Chip) -> ChannelOrdering:
    """The order a chip's raw output is in: HCW on KL520, CHW on KL720/KL630, ONNX (shown as
    CHW) on KL730."""
    return ChannelOrdering.HCW if chip is Chip.KL520 else ChannelOrdering.CHW


# --- v1 (KL520 / KL720 / KL630): positions over a (C, H, W) grid ---------------------------


def _v1_positions(chip: Chip, layout: DataLayout, c: int, h: int, w: int) -> tuple[np.ndarray, int]:
    """Scalar positions (C, H, W) and the scalar count of the buffer for a v1 layout."""
    ci, hi, wi = np.ogrid[:c, :h, :w]
    ci = ci.astype(np.int64)
    hi = hi.astype(np.int64)
    wi = wi.astype(np.int64)
    base = _HL_SIBLING.get(layout, layout)
    if base is _L.L16W1C8B:
        wa = _ru(w, 16)
        if chip is Chip.KL520:
            pos = (hi * c + ci) * wa + wi
        else:
            pos = (ci * h + hi) * wa + wi
        size = c * h * wa
    elif base is _L.L8W1C16B:
        wa = _ru(w, 8)
        if chip is Chip.KL520:  # the host's reading if a KL520 ever reported it (§2.2)
            pos = (hi * c + ci) * wa + wi
        else:
            pos = (ci * h + hi) * wa + wi
        size = c * h * wa
    elif base is _L.L1W16C8B:
        pos = (ci // 16) * (h * w * 16) + (hi * w + wi) * 16 + ci % 16
        size = -(-c // 16) * h * w * 16
    elif base is _L.L4W4C8B:
        cb = -(-c // 4)
        if chip is Chip.KL520:
            wa = _ru(w, 16)
            pos = ((hi * cb + ci // 4) * wa + wi) * 4 + ci % 4
        else:
            wa = _ru(w, 4)
            pos = (((ci // 4) * h + hi) * wa + wi) * 4 + ci % 4
        size = cb * h * wa * 4
    elif layout in (_L.RAW_8B, _L.RAW_16B, _L.RAW_FLOAT):
        pos = (ci * h + hi) * w + wi
        size = c * h * w
    else:  # CH_COMPACT layouts have no v1 code; check_chip_layout rejects them first
        raise ValueError(f"layout {layout.layout_name} has no v1 memory layout")
    return np.broadcast_to(pos, (c, h, w)), size


def _v1_parser_layout(chip: Chip, layout: DataLayout) -> DataLayout:
    """The layout Kneron's v1 retrieve functions actually read for ``layout``."""
    if layout in (_L.L8W1C16B, _L.L1W16C8B):
        return layout
    if layout in (_L.L4W4C8B, _L.L16W1C8B, _L.RAW_8B):
        return _L.L16W1C8B
    raise ValueError(
        f"{chip.name} output layout {layout.layout_name} cannot be retrieved: Kneron's v1 "
        "parser reads it through the 8-bit branch and returns partly uninitialised data; "
        "expected 16W1C8B, 8W1C16B, 1W16C8B, 4W4C8B or RAW_8B"
    )


def _buffer_bytes(kind: str, scalars: int) -> int:
    return _hl_bytes(scalars) if kind == HL else scalars * _ELEM_BYTES[kind]


# --- v2 (KL730): stride model ---------------------------------------------------------------


def default_strides(layout: DataLayout | int | str, shape) -> tuple[int, ...]:
    """The inferred KL730 ``stride_npu`` of LAYOUTS.md §2.8 for an (N, C, H, W) node (any
    rank for RAW layouts). Real values come from the NEF; pass them when known."""
    layout = parse_layout(layout)
    shape = tuple(int(d) for d in shape)
    if layout in (_L.RAW_8B, _L.RAW_16B, _L.RAW_FLOAT):
        out, acc = [], 1
        for d in reversed(shape):
            out.append(acc)
            acc *= d
        return tuple(reversed(out))
    if len(shape) != 4:
        raise ValueError(
            f"no default stride_npu for {layout.layout_name} with shape {shape}; "
            "expected a 4-D (N, C, H, W) shape or explicit strides"
        )
    _, c, h, w = shape
    base = _HL_SIBLING.get(layout, layout)
    if base is _L.L16W1C8B:
        wa = _ru(w, 16)
        return (c * h * wa, h * wa, wa, 1)
    if base is _L.L8W1C16B:
        wa = _ru(w, 8)
        return (c * h * wa, h * wa, wa, 1)
    if base is _L.L4W4C8B:
        if c > 4:
            raise ValueError(
                f"KL730 {layout.layout_name} with C = {c} has no stride-model form "
                "(expected C <= 4, or explicit strides)"
            )
        wa = _ru(w, 4)
        return (h * wa * 4, 1, wa * 4, 4)
    if base is _L.L1W16C8B:
        return (h * w * 16, 1, w * 16, 16)
    if base is _L.L1W16C8B_CH_COMPACT:
        cc = _ru(c, 16)
        return (h * w * cc, 1, w * cc, cc)
    raise ValueError(f"no default stride_npu for layout {layout.layout_name}")


def _group_geometry(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, int]:
    """Channel axis and group size M of an outer-group layout, as Kneron finds them: the
    channel axis is the last axis whose stride is 1; M is the largest stride*size among the
    other axes (§2.8 step 2). Without a stride-1 axis Kneron's index stays 0."""
    ch = 0
    m = 0
    for axis, (d, s) in enumerate(zip(shape, strides)):
        if s == 1:
            ch = axis
            continue
        m = max(m, s * d)
    return ch, m


def _v2_scalars(layout: DataLayout, shape: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Buffer size in scalars, as ``helper_convert_onnx_data_to_npu_data`` allocates it (§6)."""
    if layout in _OUTER_GROUP:
        ch, m = _group_geometry(shape, strides)
        return -(-shape[ch] // 16) * m
    axis = int(np.argmax(strides))  # first axis with the largest stride, like the helper
    return shape[axis] * strides[axis]


def _v2_positions(layout: DataLayout, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """Scalar position of every element, in ONNX (row-major) order."""
    pos = _strided_positions(0, strides, shape)
    if layout in _OUTER_GROUP:
        ch, m = _group_geometry(shape, strides)
        view = [1] * len(shape)
        view[ch] = shape[ch]
        pos = pos + ((np.arange(shape[ch], dtype=np.int64) >> 4) * (m - 16)).reshape(view)
    return pos.reshape(-1)


# --- plans ----------------------------------------------------------------------------------


def _freeze(index: np.ndarray) -> np.ndarray:
    index = np.ascontiguousarray(index, dtype=np.intp)
    index.setflags(write=False)
    return index


def _affine(index: np.ndarray, shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]] | None:
    """``(offset, strides)`` when ``index`` is ``offset + sum(i_k * strides_k)`` over
    ``shape`` (true for most layouts without channel groups): the codecs then use a strided
    view instead of a gather, which is several times faster."""
    if index.size == 0:
        return None
    grid = index.reshape(shape)
    origin = int(grid.flat[0])
    strides = []
    for axis, d in enumerate(shape):
        step = [0] * len(shape)
        step[axis] = 1 if d > 1 else 0
        strides.append(int(grid[tuple(step)]) - origin)
    if min(strides, default=0) < 0:
        return None
    if not np.array_equal(_strided_positions(origin, strides, shape), grid):
        return None
    return origin, tuple(strides)


def _check_fits(index: np.ndarray, kind: str, nbytes: int, what: str) -> None:
    if index.size == 0:
        return
    top = int(index.max())
    last = top + 16 if kind == HL else top * _ELEM_BYTES[kind]
    if last + _ELEM_BYTES[kind] > nbytes:
        raise ValueError(
            f"{what}: the strides place an element at byte {last}, beyond the node's "
            f"{nbytes}-byte buffer; expected strides that fit the buffer"
        )


@functools.lru_cache(maxsize=32)
def _layout_plan_cached(chip: Chip, layout: DataLayout, shape: tuple[int, ...],
                        strides: tuple[int, ...] | None, output: bool) -> Plan:
    if is_v2(chip):
        st = strides if strides is not None else default_strides(layout, shape)
        kind = _kind(layout, True)
        pos = _v2_positions(layout, shape, st)
        nbytes = _buffer_bytes(kind, _v2_scalars(layout, shape, st))
        index = _hl_address(pos) if kind == HL else pos
        _check_fits(index, kind, nbytes, f"{layout.layout_name} {shape} strides {st}")
        return Plan.build(index, kind, shape, nbytes)
    if output:
        layout = _v1_parser_layout(chip, layout)
    _, c, h, w = shape
    kind = _kind(layout, False)
    pos, scalars = _v1_positions(chip, layout, c, h, w)
    index = _hl_address(pos) if kind == HL else pos
    return Plan.build(index.reshape(-1), kind, shape, _buffer_bytes(kind, scalars))


def layout_plan(*, chip, layout, shape, strides=None, output: bool = False) -> Plan:
    """Plan in canonical order (NCHW for v1, ONNX for KL730) for writing a node.

    ``output=False`` gives the true layout an input node must have on the device;
    ``output=True`` gives the layout Kneron's host parser reads for an output node (they
    differ only on v1 chips, for 4W4C8B and RAW_8B outputs, which the parser treats as
    16W1C8B).
    """
    chip, layout = check_chip_layout(chip, layout)
    dims = parse_shape(shape, chip)
    st = parse_strides(strides, dims, chip)
    return _layout_plan_cached(chip, layout, dims, st, bool(output))


@functools.lru_cache(maxsize=32)
def _decode_plan_cached(chip: Chip, layout: DataLayout, shape: tuple[int, ...],
                        ordering: ChannelOrdering, strides: tuple[int, ...] | None) -> Plan:
    if is_v2(chip):
        if layout is _L.RAW_FLOAT:
            raise ValueError(
                "KL730 RAW_FLOAT outputs cannot be retrieved (Kneron's retrieve functions "
                "return NULL); expected a fixed-point layout"
            )
        if ordering not in (ChannelOrdering.DEFAULT, ChannelOrdering.CHW):
            raise ValueError(
                f"KL730 supports only ordering DEFAULT (CHW is accepted as a synonym); "
                f"got {ordering.name}"
            )
        return _layout_plan_cached(chip, layout, shape, strides, True)
    parser_layout = _v1_parser_layout(chip, layout)
    if ordering is ChannelOrdering.DEFAULT:
        ordering = native_ordering(chip)
    _, c, h, w = shape
    pos, scalars = _v1_positions(chip, parser_layout, c, h, w)
    if ordering is ChannelOrdering.HCW:
        pos = pos.transpose(1, 0, 2)
    elif ordering is ChannelOrdering.HWC:
        pos = pos.transpose(1, 2, 0)
    kind = _kind(parser_layout, False)
    return Plan.build(pos.reshape(-1), kind, (1,) + pos.shape, _buffer_bytes(kind, scalars))


def decode_plan(*, chip, layout, shape, ordering="DEFAULT", strides=None) -> Plan:
    """Plan for reading an output node in the requested channel ordering, exactly as
    ``kp_generic_inference_retrieve_{fixed,float}_node`` order and shape it."""
    chip, layout = check_chip_layout(chip, layout)
    dims = parse_shape(shape, chip)
    st = parse_strides(strides, dims, chip)
    return _decode_plan_cached(chip, layout, dims, parse_ordering(ordering), st)


def node_buffer_size(*, chip, layout, shape, strides=None, output: bool = False) -> int:
    """Bytes one node occupies in the NPU buffer, padding included (e.g. KL520 16W1C8B is
    ``H*C*ceil16(W)``). ``output=True`` gives the size Kneron's parser assumes for an output
    node (see :func:`layout_plan`)."""
    return layout_plan(chip=chip, layout=layout, shape=shape, strides=strides, output=output).nbytes
