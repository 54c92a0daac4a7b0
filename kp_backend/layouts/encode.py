"""Float tensor -> NPU node bytes (LAYOUTS.md §2, §6, §8).

:func:`encode_node` builds an *input* node for bypass-pre-processing ("data") inference and
:func:`encode_node_into` writes the same bytes into a caller's buffer (no intermediate
``bytes``); :func:`encode_output_node` builds an *output* node as the device would return
it (used by the virtual dongle). Padding bytes are always zero.

Hot path (benchmarks: ``encode_mb_s``, ``encode_into_us``): a float tensor with one
radix/scale pair, an int8 layout and ``roundf`` rounding (the KL520/KL720 default) is
quantised by :func:`_fast_int8_into` in five whole-array numpy passes into per-thread work
buffers (``kneron_round``, the KL730 default, in four), and a 4W4C8B node with C <= 4 is
then assembled as 32-bit pixel words directly in the destination
(:func:`_write_pixel_words`). Every other case goes through
:func:`~kp_backend.layouts.quant.quantize` and :func:`scatter_into`; both give the same
bytes (``tests/layouts/test_layouts_encode_into.py``).
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

import numpy as np

from kp_backend.layouts.decode import strided
from kp_backend.layouts.params import is_v2
from kp_backend.layouts.plans import F32, HL, I8, I16_MASKED, Plan, layout_plan
from kp_backend.layouts.quant import (
    ROUNDING_MODES, _clip, element_factors, half_away_sum, quantize, saturated_half_away_sum)
from kp_backend.npu_types import parse_chip

__all__ = [
    "NodeEncoder",
    "default_rounding",
    "encode_node",
    "encode_node_into",
    "encode_output_node",
    "scatter",
    "scatter_into",
]

_F32 = np.float32
# Per-thread work buffers larger than this many elements are not kept between calls.
_KEEP_ELEMENTS = 1 << 22
_local = threading.local()


def default_rounding(chip) -> str:
    """The quantisation Kneron's own host code uses for a chip's inputs: the KL730 helper
    (``kneron_round``) on KL730, the C data-inference examples (``roundf``) elsewhere."""
    return "kneron_round" if is_v2(parse_chip(chip)) else "roundf"


# --- work buffers --------------------------------------------------------------------------


def _scratch(name: str, n: int, dtype) -> np.ndarray:
    """A per-thread array of ``n`` elements, reused between calls (its contents are garbage).

    Per thread because the encoder may run in several threads at once; reused because fresh
    megabyte arrays cost page faults on every call. Very large ones are not kept."""
    if n > _KEEP_ELEMENTS:
        return np.empty(n, dtype=dtype)
    buf = getattr(_local, name, None)
    if buf is None or buf.size < n:
        buf = np.empty(max(n, 1024), dtype=dtype)
        setattr(_local, name, buf)
    return buf[:n]


def _cast_reports_invalid() -> bool:
    """Whether float32 -> int32 and -> int8 casts report NaN, infinities and values beyond
    the int32 range as an ``invalid`` floating-point error here (numpy >= 1.24 checks the
    FPU flags after casts; x86 and ARM raise the flag, as C Annex F requires). If so the
    fast paths need no separate NaN pass: the cast itself tells. Checked once, on arrays
    like the fast paths' (contiguous and strided), with the value in SIMD bodies and tails."""
    for bad in (np.nan, np.inf, -3e9, 2.0 ** 31):
        for n, positions in ((1, (0,)), (37, (0, 17, 36)), (4099, (5, 1024, 4098))):
            for pos in positions:
                src = np.zeros(n, dtype=np.float32)
                src[pos] = bad
                for dst in (np.empty(n, np.int32), np.empty(n, np.int8),
                            np.empty(2 * n, np.int8)[::2]):
                    if bad != bad or dst.dtype == np.int32:  # int8 only for NaN
                        try:
                            with np.errstate(invalid="raise"):
                                np.copyto(dst, src, casting="unsafe")
                        except FloatingPointError:
                            continue
                        return False
    return True


_CAST_RAISES = _cast_reports_invalid()


# --- fixed-point values -> node bytes --------------------------------------------------------


def _word_geometry(plan: Plan) -> tuple[int, int, int, int] | None:
    """``(channels, height, width, row_words)`` when an int8 plan keeps the (at most 4)
    channels of a pixel in one aligned little-endian 32-bit word: element strides
    (any, 1, row, 4) from a word-aligned offset (4W4C8B on KL520/KL720/KL630, and on KL730
    with C <= 4). None otherwise."""
    if plan.kind != I8 or plan.affine is None:
        return None
    offset, st = plan.affine
    shape = plan.out_shape
    if len(shape) != 4 or shape[0] != 1 or not 1 <= shape[1] <= 4 or st[1] != 1 or st[3] != 4 \
            or st[2] % 4 or offset % 4:
        return None
    _, channels, height, width = shape
    row = st[2] // 4
    if height > 1 and row < width:
        return None
    if (height - 1) * row + width > (plan.nbytes - offset) // 4:
        return None
    return channels, height, width, row


def _write_pixel_words(fixed: np.ndarray, geometry, plan: Plan, dst: np.ndarray) -> None:
    """Write pixel words built from ``fixed`` ((C, H, W) int8; int32 with values in
    [-128, 127]; or, for C <= 3, float32 holding such integers) into ``dst`` (the node's
    uint8 bytes), zeroing the padding; no byte-strided copies. int32 and float32 planes
    are clobbered.

    int8 planes are ORed into place byte by byte (shift, OR per channel). For int32 planes,
    ``sum(fixed[c] << 8c)`` (Horner) gives each channel's byte only where no lower channel
    is negative; adding ``0x80`` per channel first makes every field non-negative (no
    borrows), and an XOR with the same constant turns each offset byte back into the
    two's-complement one (``(v + 128) ^ 0x80 == v & 0xFF``): six passes over H*W words,
    written straight into the destination. float32 planes take the same sum in float32,
    which is exact for C <= 3 (every partial sum is an integer below 2**24), and one cast
    makes the words: the 150K-element int32 cast of a 224x224 RGB input becomes a 50K one
    (benchmarks: ``host_overhead_us``). A NaN there raises ``FloatingPointError`` under
    ``np.errstate(invalid="raise")`` where casts report it (:func:`_cast_reports_invalid`)."""
    channels, height, width, row = geometry
    offset = plan.affine[0]
    if offset == 0 and row == width and height * width * 4 == plan.nbytes:
        words = dst.view(np.uint32).reshape(height, width)  # the words are the whole node
    else:
        dst[...] = 0
        # the ndarray constructor checks the view stays inside dst (as_strided would not)
        words = np.ndarray((height, width), dtype=np.uint32, buffer=dst, offset=offset,
                           strides=(row * 4, 4))
    eight = np.uint32(8)
    if fixed.dtype == np.int8:
        planes = fixed.view(np.uint8)
        np.copyto(words, planes[-1])
        for c in range(channels - 2, -1, -1):
            np.left_shift(words, eight, out=words)
            np.bitwise_or(words, planes[c], out=words)
        return
    key = np.uint32(int.from_bytes(b"\x80" * channels, "little"))
    if fixed.dtype == _F32:
        if channels > 3:
            raise ValueError("float32 pixel words need C <= 3 (exact below 2**24)")
        acc = fixed[-1]
        for c in range(channels - 2, -1, -1):
            np.multiply(acc, _F32(256), out=acc)
            np.add(acc, fixed[c], out=acc)
        np.add(acc, _F32(key), out=acc)  # key as a number is 128 * sum(256**c)
        np.copyto(words.view(np.int32), acc, casting="unsafe")
        np.bitwise_xor(words, key, out=words)
        return
    planes = fixed.view(np.uint32)  # same bits: shifts and adds are modulo 2**32
    if channels == 1:
        np.add(planes[0], key, out=words)
    else:
        np.left_shift(planes[-1], eight, out=words)
        for c in range(channels - 2, -1, -1):
            np.add(words, planes[c], out=words)
            if c:
                np.left_shift(words, eight, out=words)
        np.add(words, key, out=words)
    np.bitwise_xor(words, key, out=words)


def scatter_into(values: np.ndarray, plan: Plan, dst: np.ndarray) -> None:
    """Place fixed-point (or float32) ``values`` (flat, plan order) into ``dst``, the
    node's ``plan.nbytes`` uint8 bytes, writing every byte (padding becomes zero)."""
    if plan.kind == I8:
        geometry = _word_geometry(plan)
        if geometry is not None:
            fixed = values.astype(np.int8, copy=False).reshape(geometry[:3])
            _write_pixel_words(fixed, geometry, plan, dst)
            return
    dst[...] = 0
    idx = plan.index
    if plan.kind == HL:
        u = values.astype(np.int16).view(np.uint16) >> 1
        dst[idx] = (u & 0x7F).astype(np.uint8)
        dst[idx + 16] = ((u >> 7) & 0xFF).astype(np.uint8)
        return
    if plan.kind == I8:
        elements, values = dst.view(np.int8), values.astype(np.int8, copy=False)
    elif plan.kind == F32:
        elements, values = dst.view("<f4"), values.astype(np.float32, copy=False)
    else:
        elements, values = dst.view("<i2"), values.astype(np.int16)
        if plan.kind == I16_MASKED:
            values &= np.int16(-2)
    if plan.affine is not None:
        strided(elements, plan, writeable=True)[...] = values.reshape(plan.out_shape)
    else:
        elements[idx] = values


def scatter(values: np.ndarray, plan: Plan) -> bytes:
    """Place fixed-point (or float32) ``values`` (flat, plan order) into a zeroed buffer."""
    dst = np.empty(plan.nbytes, dtype=np.uint8)
    scatter_into(values, plan, dst)
    return dst.tobytes()


# --- quantisation ----------------------------------------------------------------------------


class _FastInt8(NamedTuple):
    """What :func:`_fast_int8_into` needs of a node, worked out once per node."""

    factor: np.float32
    mode: str
    geometry: tuple[int, int, int, int] | None
    x_bounds: tuple[np.float32, np.float32] | None  # saturation bounds on x (roundf)


def _fast_int8(plan: Plan, factors: np.ndarray, mode: str) -> _FastInt8 | None:
    """The fast int8 path's settings for ``plan`` quantised with ``factors`` by ``mode``, or
    None where only the general path applies (other element types, several factors,
    ``numpy`` rounding, ``kneron_round`` where casts do not report NaN)."""
    if plan.kind != I8 or mode == "numpy" or factors.ndim != 0:
        return None
    if mode == "kneron_round" and not _CAST_RAISES:
        return None
    factor = _F32(factors)
    return _FastInt8(factor, mode, _word_geometry(plan),
                     _x_domain_bounds(factor, -128, 127) if mode == "roundf" else None)


def _x_domain_bounds(factor: np.float32, lo: int, hi: int):
    """``(lo / f, hi / f)`` in float32 when clipping ``x`` to them and then multiplying by
    ``f`` gives exactly ``clip(x * f, lo, hi)`` for every float32 ``x``: ``f`` a positive
    power of two whose quotients are exact (every KL520/KL720 input with scale 1). Inside
    the bounds the product is the same multiply; outside it is exactly ``lo`` or ``hi``
    (``x >= lo / f`` iff ``x * f >= lo``, as both are exact and rounding is monotone); NaN
    stays NaN. Clipping first lets the multiply run in place, which moves less memory
    (benchmarks: ``host_overhead_us``). None otherwise."""
    f = float(factor)
    if not (math.isfinite(f) and f > 0 and math.frexp(f)[0] == 0.5):
        return None
    with np.errstate(over="ignore", under="ignore"):
        a, b = _F32(lo) / factor, _F32(hi) / factor
    if float(a) * f != lo or float(b) * f != hi:
        return None  # a quotient was rounded (subnormal or overflow)
    return a, b


def _fast_int8_into(x: np.ndarray, fast: _FastInt8, plan: Plan, dst: np.ndarray) -> bool:
    """Quantise float32 ``x`` with one factor into an int8 node ``dst``, bit-identical to
    :func:`~kp_backend.layouts.quant.quantize` + :func:`scatter_into`. Returns False
    (``dst`` possibly half written) when the general path must run instead: a NaN product
    (which the general path maps to 0, warning as before) or, for ``kneron_round``, a value
    at or beyond +-2**31 (the x86 quirks of §6).

    ``roundf``: five passes into per-thread work arrays: multiply, clip to [-128, 127]
    (both in place after a clip of ``x`` when the factor is a power of two,
    :func:`_x_domain_bounds`), addend ``clip(q, -h, h)`` (see
    :func:`~kp_backend.layouts.quant._round_half_away_saturated`), add, and the truncating
    cast, straight into the node; pixel words of C <= 3 channels take ``trunc`` instead of
    the cast and are summed in float32 (:func:`_write_pixel_words`). ``kneron_round``:
    multiply, ``rint``, cast, integer clip. NaN and out-of-range values are detected by the
    cast's own ``invalid`` flag where the platform reports it (:func:`_cast_reports_invalid`),
    else ``roundf`` uses one ``max`` reduction (``kneron_round`` never gets here)."""
    shape = plan.out_shape
    q = _scratch("work_f32", x.size, np.float32).reshape(shape)
    fixed = _scratch("work_i32", x.size, np.int32).reshape(shape)
    geometry = fast.geometry
    try:
        with np.errstate(invalid="raise"):
            if fast.mode == "roundf":
                # the addend goes into the int32 buffer, free until the cast overwrites it
                if fast.x_bounds is not None:
                    _clip(x, *fast.x_bounds, out=q)
                    np.multiply(q, fast.factor, out=q)
                    half_away_sum(q, fixed.view(np.float32))
                else:
                    np.multiply(x, fast.factor, out=q)
                    saturated_half_away_sum(q, -128, 127, fixed.view(np.float32))
                if not _CAST_RAISES and np.isnan(np.max(q)):
                    return False
                if geometry is None:
                    _cast_into(q, plan, dst)
                    return True
                if geometry[0] <= 3:
                    np.trunc(q, out=q)  # the words are summed in float32 (exact)
                    _write_pixel_words(q.reshape(geometry[:3]), geometry, plan, dst)
                    return True
            else:
                np.multiply(x, fast.factor, out=q)
                np.rint(q, out=q)
            np.copyto(fixed, q, casting="unsafe")
    except FloatingPointError:
        return False
    if fast.mode != "roundf":
        _clip(fixed, np.int32(-128), np.int32(127), out=fixed)
    if geometry is not None:
        _write_pixel_words(fixed.reshape(geometry[:3]), geometry, plan, dst)
    else:
        scatter_into(fixed.reshape(-1), plan, dst)
    return True


def _cast_into(values: np.ndarray, plan: Plan, dst: np.ndarray) -> None:
    """Truncate float ``values`` (plan order, in int8 range) into an int8 node ``dst``,
    zeroing the padding."""
    elements = dst.view(np.int8)
    if plan.affine is None:
        dst[...] = 0
        fixed = _scratch("work_i8", values.size, np.int8)
        np.copyto(fixed, values.reshape(-1), casting="unsafe")
        elements[plan.index] = fixed
        return
    view = strided(elements, plan, writeable=True)
    if not (view.flags.c_contiguous and view.size == dst.size):
        dst[...] = 0  # some bytes are padding
    np.copyto(view, values, casting="unsafe")


def _prepare(x, plan: Plan, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != plan.out_shape:
        raise ValueError(f"{what} has shape {arr.shape}; expected {plan.out_shape}")
    if arr.dtype.kind not in "fiu":  # floating or integer (not bool, complex, objects)
        raise ValueError(f"{what} has dtype {arr.dtype}; expected a real numeric array")
    return arr


def _encode_into(x, plan: Plan, dst: np.ndarray, *, chip, radix, scale, quantized_axis: int,
                 mode: str, exact_blocks: bool) -> None:
    if mode not in ROUNDING_MODES:
        raise ValueError(f"unknown rounding {mode!r}; expected one of {ROUNDING_MODES}")
    factors = element_factors(
        radix, scale, plan.out_shape, quantized_axis=quantized_axis,
        per_channel=is_v2(parse_chip(chip)), exact_blocks=exact_blocks,
    )
    _encode_prepared(x, plan, dst, factors, mode, _fast_int8(plan, factors, mode))


def _encode_prepared(x, plan: Plan, dst: np.ndarray, factors: np.ndarray, mode: str,
                     fast: _FastInt8 | None) -> None:
    """Quantise ``x`` with ready per-element (or 0-d) ``factors`` into ``dst``."""
    arr = _prepare(x, plan, "input tensor")
    if fast is not None and _fast_int8_into(np.asarray(arr, dtype=np.float32), fast, plan,
                                            dst):
        return
    bits = None if plan.kind == F32 else (8 if plan.kind == I8 else 16)
    # The KL730 helper clips 16-bit data at 32766 (its LSB is dropped anyway).
    max16 = 32766 if mode == "kneron_round" else None
    scatter_into(quantize(arr.reshape(-1), factors, kind_bits=bits, mode=mode, max16=max16),
                 plan, dst)


class NodeEncoder:
    """:func:`encode_node_into` for one input node, planned once: the layout plan, the
    quantisation factors and the rounding are fixed at construction (which raises
    ``ValueError`` for bad parameters, like :func:`encode_node`), so each
    :meth:`encode_into` only quantises and lays out (a runtime session encodes the same
    node on every inference; benchmarks: ``host_overhead_us``). Thread-safe."""

    def __init__(self, *, chip, layout, shape, radix, scale, strides=None,
                 quantized_axis: int = 1, rounding: str | None = None) -> None:
        self.plan = layout_plan(chip=chip, layout=layout, shape=shape, strides=strides)
        self.mode = default_rounding(chip) if rounding is None else rounding
        if self.mode not in ROUNDING_MODES:
            raise ValueError(f"unknown rounding {self.mode!r}; expected one of {ROUNDING_MODES}")
        self.factors = element_factors(
            radix, scale, self.plan.out_shape, quantized_axis=quantized_axis,
            per_channel=is_v2(parse_chip(chip)), exact_blocks=True,
        )
        self._fast = _fast_int8(self.plan, self.factors, self.mode)

    @property
    def nbytes(self) -> int:
        """Size of the node in bytes."""
        return self.plan.nbytes

    def encode_into(self, out, x) -> int:
        """Write the node for ``x`` into ``out`` (as :func:`encode_node_into`); returns
        :attr:`nbytes`."""
        _encode_prepared(x, self.plan, _as_destination(out, self.plan.nbytes), self.factors,
                         self.mode, self._fast)
        return self.plan.nbytes


def _as_destination(out, nbytes: int) -> np.ndarray:
    """``out``'s first ``nbytes`` bytes as a writable uint8 array (no copy)."""
    try:
        view = memoryview(out)
    except TypeError:
        raise TypeError(
            f"output buffer must support the buffer protocol (bytearray, array.array, a numpy "
            f"array); got {type(out).__name__}"
        ) from None
    if view.readonly:
        raise TypeError(
            f"output buffer {type(out).__name__} is read-only; expected a writable buffer "
            "(bytearray, array.array, a writable numpy array)"
        )
    if not view.c_contiguous:
        raise ValueError("output buffer is not contiguous; expected one contiguous block of "
                         "memory")
    if view.nbytes < nbytes:
        raise ValueError(f"output buffer has {view.nbytes} bytes; the node needs {nbytes}")
    if view.ndim != 1 or view.format not in ("B", "b", "c"):
        view = view.cast("B")
    return np.frombuffer(view, dtype=np.uint8, count=nbytes)


def encode_node_into(out, x, *, chip, layout, shape, radix, scale, strides=None,
                     quantized_axis: int = 1, rounding: str | None = None) -> int:
    """:func:`encode_node` written into ``out`` instead of returned; returns the node's
    size in bytes.

    ``out`` is any writable C-contiguous buffer (``bytearray``, ``array.array``, a numpy
    array, a ``memoryview``) of at least that many bytes; exactly the first ``nbytes``
    bytes are written, every one of them (padding included), so a reused buffer needs no
    clearing. A buffer that is too small or not contiguous raises ``ValueError``, a
    read-only object or one without the buffer protocol ``TypeError``. Safe to call from
    several threads at once (work buffers are per thread).
    """
    plan = layout_plan(chip=chip, layout=layout, shape=shape, strides=strides)
    dst = _as_destination(out, plan.nbytes)
    mode = default_rounding(chip) if rounding is None else rounding
    _encode_into(x, plan, dst, chip=chip, radix=radix, scale=scale,
                 quantized_axis=quantized_axis, mode=mode, exact_blocks=True)
    return plan.nbytes


def encode_node(x, *, chip, layout, shape, radix, scale, strides=None, quantized_axis: int = 1,
                rounding: str | None = None) -> bytes:
    """Quantise a float tensor (NCHW for v1 chips, ONNX order for KL730) into the bytes of an
    NPU *input* node, as the device expects for bypass-pre-processing inference.

    ``rounding`` picks Kneron's implementation (see :mod:`kp_backend.layouts.quant`); the
    default is :func:`default_rounding`. Bit-identical to ``helper_convert_onnx_data_to_npu_data``
    on KL730 and to the PLUS 2.2.0 C examples (``roundf``) or Python examples (``numpy``) on
    KL520/KL720 (whose layouts are the true input layouts of §8).
    """
    plan = layout_plan(chip=chip, layout=layout, shape=shape, strides=strides)
    mode = default_rounding(chip) if rounding is None else rounding
    dst = _scratch("node_u8", plan.nbytes, np.uint8)
    _encode_into(x, plan, dst, chip=chip, radix=radix, scale=scale,
                 quantized_axis=quantized_axis, mode=mode, exact_blocks=True)
    return dst.tobytes()


def encode_output_node(x, *, chip, layout, shape, radix, scale, strides=None,
                       quantized_axis: int = 1) -> bytes:
    """Quantise a float NCHW (KL730: ONNX-order) tensor into a raw *output* node, the inverse
    of :func:`~kp_backend.layouts.decode.decode_node` with ordering DEFAULT/CHW.

    Rounding is half away from zero on the float32 product ``x * scale * 2**radix``
    (decision: the NPU's own rounding is not public), saturating to the element type. On v1
    chips the node is written the way Kneron's parser reads it, so a 4W4C8B or RAW_8B output
    gets 16W1C8B row padding; layouts the parser cannot read raise ``ValueError``.
    """
    plan = layout_plan(chip=chip, layout=layout, shape=shape, strides=strides, output=True)
    if plan.kind == F32:
        raise ValueError("RAW_FLOAT outputs cannot be retrieved by the host; expected a "
                         "fixed-point output layout")
    dst = _scratch("node_u8", plan.nbytes, np.uint8)
    _encode_into(x, plan, dst, chip=chip, radix=radix, scale=scale,
                 quantized_axis=quantized_axis, mode="roundf", exact_blocks=False)
    return dst.tobytes()
