"""Fixed <-> float arithmetic, bit-exact with Kneron's host code (LAYOUTS.md §4, §6).

De-quantisation is one float32 division by ``factor = float32(scale) * 2**radix``.
Quantisation has three flavours because Kneron has three implementations (§6):

* ``"kneron_round"``: ``helper_convert_onnx_data_to_npu_data`` (KL730). float32 product,
  round half to even, 16-bit maximum 32766, and x86 behaviour for a product of exactly 2**31
  or NaN (both become the minimum, as ``(int)`` overflow gives INT_MIN there).
* ``"roundf"``: the PLUS 2.2.0 C data-inference examples (KL520/KL720). float32 product,
  round half away from zero. NaN becomes 0 (decision: C leaves it undefined).
* ``"numpy"``: the PLUS 2.2.0 Python examples. float64 product, ``np.round`` (half to
  even). NaN becomes 0 (decision).

Every flavour saturates to the element type; RAW_FLOAT keeps the rounded product (and, for
``kneron_round``, clips it to ``[FLT_MIN, FLT_MAX]``, so values <= 0 become FLT_MIN).
"""

from __future__ import annotations

import numpy as np

from kp_backend.layouts.params import block_stride, quant_factors

try:  # the ufunc behind np.clip, without np.clip's Python-level argument handling
    from numpy._core.umath import clip as _clip
except ImportError:  # numpy 1.x
    from numpy.core.umath import clip as _clip

__all__ = ["ROUNDING_MODES", "element_factors", "dequantize", "quantize"]

ROUNDING_MODES = ("kneron_round", "roundf", "numpy")

_INT_MAX = 2147483647.0
_TWO31 = 2147483648.0
_FLT_MIN = np.float32(1.1754943508222875e-38)
_FLT_MAX = np.float32(3.4028234663852886e38)


def element_factors(radix, scale, shape: tuple[int, ...], *, quantized_axis: int = 1,
                    per_channel: bool, exact_blocks: bool = False) -> np.ndarray:
    """Factor for each element in row-major order of ``shape`` (a 0-d array when a single
    descriptor applies). ``per_channel=False`` (v1 chips) accepts exactly one descriptor.

    With Q > 1 descriptors the block rule of §4.2 applies: descriptor = flat offset //
    (product of the other dimensions). ``exact_blocks`` (the encoder) additionally needs
    exactly ``shape[quantized_axis]`` descriptors, since Kneron's encoder would otherwise
    leave elements unquantised or overrun its buffer.
    """
    factors = quant_factors(radix, scale)
    if factors.size == 1:
        return factors.reshape(())
    if not per_channel:
        raise ValueError(
            f"{factors.size} radix/scale pairs given; this chip has one per node "
            "(per-channel quantisation exists only on KL730)"
        )
    stride = block_stride(shape, quantized_axis, factors.size)
    blocks = int(np.prod(shape, dtype=np.int64)) // stride
    if exact_blocks and factors.size != blocks:
        raise ValueError(
            f"{factors.size} quantisation descriptors for axis {quantized_axis} of shape "
            f"{shape}; expected exactly {blocks}"
        )
    return np.repeat(factors[:blocks], stride)


_JUST_BELOW_HALF_BITS = np.uint32(0x3EFFFFFF)  # 0.49999997f, the float32 just below 0.5
_SIGN_BIT = np.uint32(0x80000000)
_JUST_BELOW_HALF = _JUST_BELOW_HALF_BITS.view(np.float32)


def dequantize(fixed: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``float32(fixed) / factor``: one IEEE float32 division per element (§4.1)."""
    out = fixed.astype(np.float32)
    return np.divide(out, factors, out=out)


def _kneron_round(p32: np.ndarray, low: float) -> np.ndarray:
    """``kneron_round`` of a float32 array (float32 result). Below 2**31 in magnitude it is
    round-half-to-even, i.e. ``np.rint``; a product of exactly 2**31 and NaN overflow the
    ``(int)`` cast to INT_MIN on x86, so they become ``low`` (the element minimum, which is
    where INT_MIN saturates)."""
    r = np.rint(p32)
    odd = (p32 == np.float32(_TWO31)) | np.isnan(p32)
    if odd.any():
        r[odd] = low
    # values beyond +-2**31 become INT_MAX / INT_MIN, i.e. (float)INT_MAX == 2**31
    np.clip(r, np.float32(-_TWO31), np.float32(_TWO31), out=r)
    return r


def _round_half_away(p: np.ndarray) -> np.ndarray:
    """C ``roundf`` on float32, exactly: ``trunc(p + copysign(0.5 - 2**-25, p))`` in float32.
    The addend is the largest float32 below one half, so a fraction below one half never
    carries into the next integer (the float32 sum stays at least one ulp short of it) and
    a fraction of at least one half always does (ties go up to the even, i.e. next, integer);
    integers from 2**23 up are unchanged. NaN becomes 0. Three passes instead of the
    fraction test's seven (benchmarks: ``encode_mb_s``)."""
    # copysign by bits: numpy's copysign loop is not vectorised, the integer ops are
    bits = np.bitwise_and(np.asarray(p, dtype=np.float32).view(np.uint32), _SIGN_BIT)
    bits |= _JUST_BELOW_HALF_BITS
    r = bits.view(np.float32)
    np.add(p, r, out=r)
    np.trunc(r, out=r)
    nan = np.isnan(r)
    if nan.any():
        r[nan] = 0
    return r


def saturated_half_away_sum(p: np.ndarray, lo, hi, scratch: np.ndarray) -> np.ndarray:
    """In place: clip float32 ``p`` to ``[lo, hi]`` and add the rounding addend
    ``clip(p, -h, h)`` (``h`` the largest float32 below one half, computed into
    ``scratch``); returns ``p``, whose truncation toward zero is then C ``roundf`` of the
    clipped values (see :func:`_round_half_away_saturated`). NaN stays NaN."""
    t = p.dtype.type
    _clip(p, t(lo), t(hi), out=p)
    return half_away_sum(p, scratch)


def half_away_sum(p: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """:func:`saturated_half_away_sum` of an already clipped ``p``: only the addend."""
    _clip(p, -_JUST_BELOW_HALF, _JUST_BELOW_HALF, out=scratch)
    return np.add(p, scratch, out=p)


def _round_half_away_saturated(p: np.ndarray, lo: int, hi: int, dtype) -> np.ndarray:
    """``clip(_round_half_away(p), lo, hi).astype(dtype)`` in five whole-array passes (clip,
    addend, add, NaN test, cast; benchmarks: ``host_overhead_us``). ``p`` (a fresh float32
    array) is clipped first: rounding is monotone and keeps the integer bounds, so clipping
    before or after it gives the same integers. The addend is ``clip(p, -h, h)`` with ``h``
    the largest float32 below one half: it equals ``copysign(h, p)`` wherever ``|p| >= h``,
    and below that the sum ``2p`` stays inside (-1, 1), so it truncates to 0 just as
    ``p +- h`` does (NaN stays NaN). The truncation is the cast's own (toward zero, exact
    since the sums lie strictly inside ``(lo - 1, hi + 1)``), so ``trunc`` and the second
    clip go; NaN is found by one ``max`` reduction (it propagates) instead of ``isnan`` +
    ``any``. Checked on all 2**32 float32 inputs (``KP_LAYOUTS_EXHAUSTIVE=1``)."""
    r = saturated_half_away_sum(p, lo, hi, np.empty_like(p))
    if r.size and np.isnan(r.max()):
        r[np.isnan(r)] = 0
    return r.astype(dtype)


def quantize(x: np.ndarray, factors: np.ndarray, *, kind_bits: int | None, mode: str,
             max16: int | None = None) -> np.ndarray:
    """Quantise ``x`` with per-element (or scalar) ``factors``.

    ``kind_bits`` is 8 or 16 for integer layouts (result int8/int16 values, saturated), or
    None for RAW_FLOAT (result float32). ``max16`` overrides the 16-bit maximum.
    """
    lo = -128 if kind_bits == 8 else -32768
    if mode == "kneron_round":
        p = np.multiply(np.asarray(x, dtype=np.float32), factors, dtype=np.float32)
        r = _kneron_round(p, _FLT_MIN if kind_bits is None else lo)
        if kind_bits is None:
            return np.clip(r, _FLT_MIN, _FLT_MAX).astype(np.float32)
    elif mode == "roundf":
        p = np.multiply(np.asarray(x, dtype=np.float32), factors, dtype=np.float32)
        if kind_bits is None:
            return _round_half_away(p)
        hi = 127 if kind_bits == 8 else (32767 if max16 is None else max16)
        return _round_half_away_saturated(p, lo, hi, np.int8 if kind_bits == 8 else np.int16)
    elif mode == "numpy":
        r = np.array(x, dtype=np.float64)
        r *= np.asarray(factors, dtype=np.float64)
        np.round(r, out=r)
        r[np.isnan(r)] = 0
        if kind_bits is None:
            return r.astype(np.float32)
    else:
        raise ValueError(f"unknown rounding {mode!r}; expected one of {ROUNDING_MODES}")
    if kind_bits == 8:
        return np.clip(r, -128, 127, out=r).astype(np.int8)
    hi = 32767 if max16 is None else max16
    return np.clip(r, -32768, hi, out=r).astype(np.int16)
