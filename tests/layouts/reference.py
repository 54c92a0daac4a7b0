"""Straightforward per-element reference of LAYOUTS.md, the oracle for the property tests
and the baseline of ``benchmarks/bench_layouts.py``.

Written directly from the spec's formulas (one element at a time, Python integers), without
sharing code with ``kp_backend.layouts``: only the identifier tables of ``npu_types`` are
reused. Slow by design.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from kp_backend.npu_types import Chip, DataLayout, parse_chip, parse_layout

L = DataLayout
HL_LAYOUTS = {L.L4W4C8BHL, L.L1W16C8BHL, L.L16W1C8BHL, L.L1W16C8BHL_CH_COMPACT}
SIBLING = {
    L.L4W4C8BHL: L.L4W4C8B, L.L1W16C8BHL: L.L1W16C8B, L.L16W1C8BHL: L.L16W1C8B,
    L.L1W16C8BHL_CH_COMPACT: L.L1W16C8B_CH_COMPACT,
}
ORDER = {"HCW": 0, "CHW": 1, "HWC": 2, "DEFAULT": 3}


def ru(n: int, m: int) -> int:
    return ((n + m - 1) // m) * m


def elem_kind(layout: DataLayout, v2: bool) -> str:
    if layout in HL_LAYOUTS:
        return "hl"
    if layout is L.RAW_FLOAT:
        return "f32"
    if layout in (L.L8W1C16B, L.RAW_16B):
        return "i16m" if v2 else "i16"
    return "i8"


# --- v1 offsets (scalars) -----------------------------------------------------------------

def v1_offset(chip: Chip, layout: DataLayout, c, h, w, C, H, W) -> int:
    base = SIBLING.get(layout, layout)
    if base is L.L16W1C8B:
        wa = ru(W, 16)
        return (h * C + c) * wa + w if chip is Chip.KL520 else (c * H + h) * wa + w
    if base is L.L8W1C16B:
        wa = ru(W, 8)
        return (h * C + c) * wa + w if chip is Chip.KL520 else (c * H + h) * wa + w
    if base is L.L1W16C8B:
        return (c // 16) * (H * W * 16) + (h * W + w) * 16 + c % 16
    if base is L.L4W4C8B:
        cb = (C + 3) // 4
        if chip is Chip.KL520:
            return ((h * cb + c // 4) * ru(W, 16) + w) * 4 + c % 4
        return (((c // 4) * H + h) * ru(W, 4) + w) * 4 + c % 4
    return (c * H + h) * W + w  # RAW


def v1_scalars(chip: Chip, layout: DataLayout, C, H, W) -> int:
    base = SIBLING.get(layout, layout)
    if base is L.L16W1C8B:
        return C * H * ru(W, 16)
    if base is L.L8W1C16B:
        return C * H * ru(W, 8)
    if base is L.L1W16C8B:
        return ((C + 15) // 16) * H * W * 16
    if base is L.L4W4C8B:
        wa = ru(W, 16) if chip is Chip.KL520 else ru(W, 4)
        return ((C + 3) // 4) * H * wa * 4
    return C * H * W


def v1_parser_layout(layout: DataLayout) -> DataLayout:
    if layout in (L.L8W1C16B, L.L1W16C8B):
        return layout
    if layout in (L.L4W4C8B, L.L16W1C8B, L.RAW_8B):
        return L.L16W1C8B
    raise ValueError(layout)


# --- v2 (stride model) --------------------------------------------------------------------

def default_strides(layout: DataLayout, shape) -> list[int]:
    if layout in (L.RAW_8B, L.RAW_16B, L.RAW_FLOAT):
        st = [1] * len(shape)
        for k in range(len(shape) - 2, -1, -1):
            st[k] = st[k + 1] * shape[k + 1]
        return st
    _, C, H, W = shape
    base = SIBLING.get(layout, layout)
    if base is L.L16W1C8B:
        wa = ru(W, 16)
        return [C * H * wa, H * wa, wa, 1]
    if base is L.L8W1C16B:
        wa = ru(W, 8)
        return [C * H * wa, H * wa, wa, 1]
    if base is L.L4W4C8B:
        wa = ru(W, 4)
        return [H * wa * 4, 1, wa * 4, 4]
    if base is L.L1W16C8B:
        return [H * W * 16, 1, W * 16, 16]
    cc = ru(C, 16)
    return [H * W * cc, 1, W * cc, cc]


def v2_offset(layout: DataLayout, index, shape, strides) -> int:
    s = sum(i * st for i, st in zip(index, strides))
    if layout in (L.L1W16C8B, L.L1W16C8BHL):
        ch, m = 0, 0
        for k, (d, st) in enumerate(zip(shape, strides)):
            if st == 1:
                ch = k
            else:
                m = max(m, st * d)
        s += (index[ch] // 16) * (m - 16)
    return s


def v2_scalars(layout: DataLayout, shape, strides) -> int:
    if layout in (L.L1W16C8B, L.L1W16C8BHL):
        ch, m = 0, -1
        for k, (d, st) in enumerate(zip(shape, strides)):
            if st == 1:
                ch = k
            else:
                m = max(m, st * d)
        return ((shape[ch] + 15) // 16) * m
    best = 0
    for k in range(len(strides)):
        if strides[k] > strides[best]:
            best = k
    return shape[best] * strides[best]


# --- element access -----------------------------------------------------------------------

def hl_addr(s: int) -> int:
    return (s // 16) * 32 + s % 16


def buffer_bytes(kind: str, scalars: int) -> int:
    if kind == "hl":
        return 32 * ((scalars + 15) // 16)
    return scalars * {"i8": 1, "i16": 2, "i16m": 2, "f32": 4}[kind]


def read_elem(raw: bytes, kind: str, s: int) -> int:
    if kind == "i8":
        return struct.unpack_from("<b", raw, s)[0]
    if kind in ("i16", "i16m"):
        v = struct.unpack_from("<H", raw, 2 * s)[0]
        if kind == "i16m":
            v &= 0xFFFE
        return v - 0x10000 if v >= 0x8000 else v
    a = hl_addr(s)
    u = (((raw[a] & 0x7F) | (raw[a + 16] << 7)) << 1) & 0xFFFF
    return u - 0x10000 if u >= 0x8000 else u


def write_elem(buf: bytearray, kind: str, s: int, v) -> None:
    if kind == "i8":
        struct.pack_into("<b", buf, s, int(v))
    elif kind == "f32":
        struct.pack_into("<f", buf, 4 * s, float(v))
    elif kind in ("i16", "i16m"):
        u = int(v) & 0xFFFF
        if kind == "i16m":
            u &= 0xFFFE
        struct.pack_into("<H", buf, 2 * s, u)
    else:
        u = (int(v) & 0xFFFF) >> 1
        a = hl_addr(s)
        buf[a] = u & 0x7F
        buf[a + 16] = (u >> 7) & 0xFF


# --- quantisation -------------------------------------------------------------------------

def factor(radix: int, scale) -> np.float32:
    p = np.float32(1 << radix) if radix >= 0 else np.float32(1) / np.float32(1 << -radix)
    return np.float32(np.float32(scale) * p)


def kneron_round(x: np.float32) -> int:
    """``kneron_round`` as the C reads: truncate, compare the fraction, ties to even; the
    x86 result of an overflowing (int) cast is INT_MIN."""
    xf = float(x)
    if xf > 2147483648.0:
        return 2147483647
    if xf < -2147483648.0:
        return -2147483648
    if math.isnan(xf) or xf == 2147483648.0:
        return -2147483648
    f = int(xf)  # truncation toward zero
    frac = abs(float(np.float32(x - np.float32(f))))
    if frac > 0.5 or (frac == 0.5 and f % 2 != 0):
        f += 1 if xf >= 0 else -1
    return f


def roundf(x: np.float32) -> float:
    xf = float(x)
    if math.isnan(xf):
        return 0
    if math.isinf(xf):
        return xf
    return math.copysign(math.floor(abs(xf) + 0.5), xf)  # C roundf keeps the sign of -0.0


def quantize_one(x, fac: np.float32, kind: str, mode: str):
    if mode == "numpy":
        p = float(x) * float(fac)
        # Python round: ties to even; numpy keeps the sign of a zero result
        r = 0 if math.isnan(p) else (p if math.isinf(p) else math.copysign(round(p), p))
    else:
        p = np.float32(np.float32(x) * fac)
        r = kneron_round(p) if mode == "kneron_round" else roundf(p)
    if kind == "f32":
        v = float(np.float32(r))
        if mode == "kneron_round":
            v = min(max(v, 1.1754943508222875e-38), 3.4028234663852886e38)
        return v
    if kind == "i8":
        return int(min(max(r, -128), 127))
    hi = 32766 if mode == "kneron_round" else 32767
    return int(min(max(r, -32768), hi))


def descriptor_stride(shape, qaxis: int) -> int:
    out = 1
    for k, d in enumerate(shape):
        if k != qaxis:
            out *= d
    return out


# --- reference codecs ---------------------------------------------------------------------

def _as_list(v):
    return [v] if np.ndim(v) == 0 else list(np.asarray(v).ravel())


def _native(chip: Chip) -> int:
    return ORDER["HCW"] if chip is Chip.KL520 else ORDER["CHW"]


def ref_decode(raw: bytes, *, chip, layout, shape, radix, scale, ordering="DEFAULT",
               as_float=True, strides=None, quantized_axis=1) -> np.ndarray:
    chip, layout = parse_chip(chip), parse_layout(layout)
    raw = bytes(raw)
    radii, scales = _as_list(radix), _as_list(scale)
    facs = [factor(int(r), s) for r, s in zip(radii, scales)]
    if chip is Chip.KL730:
        shape = list(shape)
        strides = list(strides) if strides is not None else default_strides(layout, shape)
        kind = elem_kind(layout, True)
        n = int(np.prod(shape))
        bstride = descriptor_stride(shape, quantized_axis)
        fixed, out = [], []
        for flat in range(n):
            idx, rem = [], flat
            for d in reversed(shape):
                idx.append(rem % d)
                rem //= d
            idx.reverse()
            v = read_elem(raw, kind, v2_offset(layout, idx, shape, strides))
            fixed.append(v)
            fac = facs[0] if len(facs) == 1 else facs[flat // bstride]
            out.append(np.float32(np.float32(v) / fac))
        dtype = np.int8 if kind == "i8" else np.int16
        arr = np.array(out if as_float else fixed, dtype=np.float32 if as_float else dtype)
        return arr.reshape(shape)
    _, C, H, W = shape
    pl = v1_parser_layout(layout)
    kind = elem_kind(pl, False)
    order = ORDER[ordering] if isinstance(ordering, str) else int(ordering)
    if order == 3:
        order = _native(chip)
    if order == 1:
        coords = [(c, h, w) for c in range(C) for h in range(H) for w in range(W)]
        oshape = (1, C, H, W)
    elif order == 0:
        coords = [(c, h, w) for h in range(H) for c in range(C) for w in range(W)]
        oshape = (1, H, C, W)
    else:
        coords = [(c, h, w) for h in range(H) for w in range(W) for c in range(C)]
        oshape = (1, H, W, C)
    vals = [read_elem(raw, kind, v1_offset(chip, pl, c, h, w, C, H, W)) for c, h, w in coords]
    if not as_float:
        return np.array(vals, dtype=np.int8 if kind == "i8" else np.int16).reshape(oshape)
    return np.array([np.float32(np.float32(v) / facs[0]) for v in vals],
                    dtype=np.float32).reshape(oshape)


def ref_buffer_size(*, chip, layout, shape, strides=None, output=False) -> int:
    chip, layout = parse_chip(chip), parse_layout(layout)
    if chip is Chip.KL730:
        st = list(strides) if strides is not None else default_strides(layout, list(shape))
        return buffer_bytes(elem_kind(layout, True), v2_scalars(layout, list(shape), st))
    if output:
        layout = v1_parser_layout(layout)
    _, C, H, W = shape
    return buffer_bytes(elem_kind(layout, False), v1_scalars(chip, layout, C, H, W))


def ref_encode(x, *, chip, layout, shape, radix, scale, strides=None, quantized_axis=1,
               rounding=None, output=False) -> bytes:
    chip, layout = parse_chip(chip), parse_layout(layout)
    mode = rounding or ("kneron_round" if chip is Chip.KL730 else "roundf")
    radii, scales = _as_list(radix), _as_list(scale)
    facs = [factor(int(r), s) for r, s in zip(radii, scales)]
    flat_x = np.asarray(x).ravel()
    size = ref_buffer_size(chip=chip, layout=layout, shape=shape, strides=strides, output=output)
    buf = bytearray(size)
    if chip is Chip.KL730:
        shape = list(shape)
        st = list(strides) if strides is not None else default_strides(layout, shape)
        kind = elem_kind(layout, True)
        bstride = descriptor_stride(shape, quantized_axis)
        for flat in range(flat_x.size):
            idx, rem = [], flat
            for d in reversed(shape):
                idx.append(rem % d)
                rem //= d
            idx.reverse()
            fac = facs[0] if len(facs) == 1 else facs[flat // bstride]
            v = quantize_one(flat_x[flat], fac, kind, mode)
            write_elem(buf, kind, v2_offset(layout, idx, shape, st), v)
        return bytes(buf)
    if output:
        layout = v1_parser_layout(layout)
    _, C, H, W = shape
    kind = elem_kind(layout, False)
    i = 0
    for c in range(C):
        for h in range(H):
            for w in range(W):
                v = quantize_one(flat_x[i], facs[0], kind, mode)
                write_elem(buf, kind, v1_offset(chip, layout, c, h, w, C, H, W), v)
                i += 1
    return bytes(buf)


def used_bytes(*, chip, layout, shape, strides=None, output=False) -> np.ndarray:
    """Boolean mask of the buffer bits that carry data (bit 7 of an HL low byte does not)."""
    chip, layout = parse_chip(chip), parse_layout(layout)
    size = ref_buffer_size(chip=chip, layout=layout, shape=shape, strides=strides, output=output)
    mask = np.zeros(size, dtype=np.uint8)
    if chip is Chip.KL730:
        shape = list(shape)
        st = list(strides) if strides is not None else default_strides(layout, shape)
        kind = elem_kind(layout, True)
        positions = [v2_offset(layout, idx, shape, st) for idx in np.ndindex(*shape)]
    else:
        if output:
            layout = v1_parser_layout(layout)
        _, C, H, W = shape
        kind = elem_kind(layout, False)
        positions = [v1_offset(chip, layout, c, h, w, C, H, W)
                     for c in range(C) for h in range(H) for w in range(W)]
    width = {"i8": 1, "i16": 2, "i16m": 2, "f32": 4}.get(kind)
    for s in positions:
        if kind == "hl":
            mask[hl_addr(s)] |= 0x7F
            mask[hl_addr(s) + 16] |= 0xFF
        else:
            mask[s * width:(s + 1) * width] = 0xFF
    return mask
