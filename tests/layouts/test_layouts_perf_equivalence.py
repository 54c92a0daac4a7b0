"""The fast paths of the codecs (fused saturating round, word packing without padding,
one-call strided dequantisation, cached shape and factor parsing) against the
implementations they replaced, kept here as the oracle (the unchanged ``_round_half_away``
is imported): every result bit must be the same, on adversarial values (ties, their neighbours, huge values, NaN payloads, +-inf,
+-0, subnormals) and random bit patterns.

``KP_LAYOUTS_EXHAUSTIVE=1`` also compares the saturating round on all 2**32 float32 bit
patterns (about a minute for both element types; opt-in).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from kp_backend.layouts import decode_node, decode_plan, encode_node, layout_plan
from kp_backend.layouts.decode import as_byte_array
from kp_backend.layouts.params import parse_shape, quant_factors
from kp_backend.layouts.plans import I8, I16_MASKED
from kp_backend.layouts.quant import _round_half_away, element_factors, quantize
from kp_backend.npu_types import Chip

# --- the replaced implementations (oracle) --------------------------------------------------


def old_quantize_roundf(x, factors, kind_bits, max16=None):
    p = np.multiply(np.asarray(x, dtype=np.float32), factors, dtype=np.float32)
    r = _round_half_away(p)  # unchanged (RAW_FLOAT still uses it)
    if kind_bits is None:
        return r
    if kind_bits == 8:
        return np.clip(r, -128, 127, out=r).astype(np.int8)
    hi = 32767 if max16 is None else max16
    return np.clip(r, -32768, hi, out=r).astype(np.int16)


def old_strided(elements, plan, writeable=False):
    offset, strides = plan.affine
    size = elements.itemsize
    return np.lib.stride_tricks.as_strided(
        elements[offset:], shape=plan.out_shape, strides=tuple(s * size for s in strides),
        writeable=writeable)


def old_pack_channel_words(buf, values, plan):
    offset, strides = plan.affine
    shape = plan.out_shape
    if len(shape) != 4 or shape[0] != 1 or not 1 <= shape[1] <= 4 or tuple(strides[1:]) != (
            1, strides[2], 4) or strides[2] % 4 or offset % 4:
        return False
    _, channels, height, width = shape
    row = strides[2] // 4
    if (height - 1) * row + width > (plan.nbytes - offset) // 4:
        return False
    planes = values.view(np.uint8).reshape(channels, height, width)
    word = planes[0].astype(np.uint32)
    for c in range(1, channels):
        part = planes[c].astype(np.uint32)
        part <<= np.uint32(8 * c)
        word |= part
    words = buf[offset:offset + (plan.nbytes - offset) // 4 * 4].view("<u4")
    np.lib.stride_tricks.as_strided(words, shape=(height, width),
                                    strides=(row * 4, 4), writeable=True)[...] = word
    return True


def old_scatter_i8(values, plan):
    buf = np.zeros(plan.nbytes, dtype=np.uint8)
    values = values.astype(np.int8, copy=False)
    if plan.affine is None:
        buf.view(np.int8)[plan.index] = values
    elif not old_pack_channel_words(buf, values, plan):
        old_strided(buf.view(np.int8), plan, writeable=True)[...] = values.reshape(
            plan.out_shape)
    return buf.tobytes()


def old_gather(buf, plan):
    elements = buf.view(np.int8) if plan.kind == I8 else buf[: plan.nbytes].view("<i2")
    if plan.affine is not None:
        values = np.array(old_strided(elements, plan)).reshape(-1)
    else:
        values = elements.take(plan.index)
    if plan.kind == I16_MASKED:
        values &= np.int16(-2)
    return values.astype(np.int8 if plan.kind == I8 else np.int16, copy=False)


def old_decode(raw, plan, factors):
    fixed = old_gather(as_byte_array(raw), plan)
    out = fixed.astype(np.float32)
    return np.divide(out, factors, out=out).reshape(plan.out_shape)


# --- adversarial values ----------------------------------------------------------------------
def _adversarial() -> np.ndarray:
    f32 = np.float32
    ints = np.arange(-40000, 40001, dtype=np.float64)
    anchors = np.concatenate([ints, ints + 0.5, [2.0 ** k for k in range(-149, 128)]])
    anchors = np.concatenate([anchors, -anchors]).astype(f32)
    near = [anchors]
    up, down = anchors.copy(), anchors.copy()
    for _ in range(3):  # three float32 neighbours on each side of every anchor
        up = np.nextafter(up, f32(np.inf))
        down = np.nextafter(down, f32(-np.inf))
        near += [up, down]
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3.4028235e38, -3.4028235e38,
                        1e-45, -1e-45, 2.0 ** 31, -(2.0 ** 31), 2.0 ** 23 + 1, 0.49999997,
                        -0.49999997], dtype=f32)
    payloads = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF,
                         0xFFFFFFFF, 0x7FA00000], dtype=np.uint32).view(f32)  # NaNs
    rng = np.random.default_rng(20261124)
    random_bits = rng.integers(0, 2 ** 32, 1 << 18, dtype=np.uint64).astype(np.uint32)
    return np.concatenate(near + [special, payloads, random_bits.view(f32)])


VALUES = _adversarial()
FACTORS = [1.0, 128.0, 0.0078125, 3.0, 1e30, 1e-30, 0.0, -0.0, np.inf]


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("kind_bits,max16", [(8, None), (16, None), (16, 32766), (None, None)])
def test_roundf_quantize_matches_the_replaced_implementation(factor, kind_bits, max16):
    f = np.array(factor, dtype=np.float32)
    with np.errstate(all="ignore"):
        new = quantize(VALUES, f, kind_bits=kind_bits, mode="roundf", max16=max16)
        old = old_quantize_roundf(VALUES, f, kind_bits, max16)
    _same(new, old)


def test_roundf_quantize_with_per_element_factors():
    rng = np.random.default_rng(7)
    factors = rng.choice(np.array(FACTORS, dtype=np.float32), VALUES.size)
    with np.errstate(all="ignore"):
        for bits in (8, 16):
            _same(quantize(VALUES, factors, kind_bits=bits, mode="roundf"),
                  old_quantize_roundf(VALUES, factors, bits))


def test_roundf_quantize_of_empty_and_all_nan_input():
    f = np.float32(128)
    for x in (np.zeros(0, np.float32), np.full(5, np.nan, np.float32)):
        for bits in (8, 16):
            _same(quantize(x, f, kind_bits=bits, mode="roundf"), old_quantize_roundf(x, f, bits))


@pytest.mark.skipif(os.environ.get("KP_LAYOUTS_EXHAUSTIVE") != "1",
                    reason="set KP_LAYOUTS_EXHAUSTIVE=1 for all 2**32 float32 inputs")
@pytest.mark.parametrize("kind_bits", [8, 16])
def test_roundf_quantize_on_every_float32(kind_bits):
    one = np.float32(1)
    step = 1 << 24
    with np.errstate(all="ignore"):
        for start in range(0, 1 << 32, step):
            x = np.arange(start, start + step, dtype=np.uint32).view(np.float32)
            new = quantize(x, one, kind_bits=kind_bits, mode="roundf")
            old = old_quantize_roundf(x, one, kind_bits)
            assert np.array_equal(new, old), hex(start)


# --- encode: word packing (4W4C8B) -----------------------------------------------------------
@pytest.mark.parametrize("chip", ["KL520", "KL720", "KL630"])
@pytest.mark.parametrize("c,h,w", [(3, 224, 224), (1, 5, 16), (2, 3, 17), (4, 2, 7),
                                   (3, 1, 1), (4, 8, 32), (5, 2, 16)])
def test_4w4c8b_encode_matches_the_replaced_packing(chip, c, h, w):
    shape = (1, c, h, w)
    rng = np.random.default_rng(c * 1000 + h * 10 + w)
    x = rng.uniform(-1.2, 1.2, shape).astype(np.float32)
    x.flat[:4] = [0.5 / 128, -0.5 / 128, np.nan, np.inf][:x.size]
    plan = layout_plan(chip=chip, layout="4W4C8B", shape=shape)
    factors = element_factors(7, 1.0, shape, per_channel=False)
    with np.errstate(all="ignore"):
        old = old_scatter_i8(old_quantize_roundf(x.reshape(-1), factors, 8), plan)
        new = encode_node(x, chip=chip, layout="4W4C8B", shape=shape, radix=7, scale=1.0)
    assert type(new) is bytes and new == old


# --- decode: one-call strided dequantisation -------------------------------------------------
@pytest.mark.parametrize("chip,layout,shape,ordering", [
    ("KL520", "16W1C8B", (1, 1000, 1, 1), "CHW"),
    ("KL520", "16W1C8B", (1, 3, 5, 17), "DEFAULT"),
    ("KL520", "4W4C8B", (1, 4, 3, 20), "HWC"),
    ("KL720", "8W1C16B", (1, 3, 4, 9), "CHW"),
    ("KL720", "RAW_8B", (1, 2, 3, 5), "HCW"),
    ("KL730", "RAW_16B", (1, 3, 4, 5), "DEFAULT"),
    ("KL730", "1W16C8B", (1, 20, 2, 3), "DEFAULT"),
])
@pytest.mark.parametrize("radix,scale", [(4, 1.0), (-3, 0.37), (0, -0.0), (2, 0.0),
                                         (1, float("inf")), (5, float("nan")), (7, 1)])
def test_decode_matches_the_replaced_gather_and_divide(chip, layout, shape, ordering, radix,
                                                       scale):
    plan = decode_plan(chip=chip, layout=layout, shape=shape, ordering=ordering)
    raw = np.random.default_rng(plan.nbytes).integers(0, 256, plan.nbytes,
                                                      dtype=np.uint8).tobytes()
    factors = element_factors(radix, scale, plan.out_shape, per_channel=chip == "KL730")
    with np.errstate(all="ignore"):
        new = decode_node(raw, chip=chip, layout=layout, shape=shape, ordering=ordering,
                          radix=radix, scale=scale)
        old = old_decode(raw, plan, factors)
    _same(new, old)
    fixed = decode_node(raw, chip=chip, layout=layout, shape=shape, ordering=ordering,
                        radix=radix, scale=scale, as_float=False)
    _same(fixed, old_gather(as_byte_array(raw), plan).reshape(plan.out_shape))


def test_decoded_tensor_is_a_fresh_writeable_array():
    raw = bytes(range(256)) * 62 + bytes(128)
    out = decode_node(raw, chip="KL520", layout="16W1C8B", shape=(1, 1000, 1, 1),
                      radix=4, scale=1.0)
    assert out.flags.writeable and out.flags.c_contiguous and out.base is None
    out[...] = 0  # must not touch the caller's buffer
    assert raw[1] == 1


# --- cached argument parsing -----------------------------------------------------------------
def test_factor_cache_keeps_signed_zero_and_types_apart():
    assert np.signbit(quant_factors(3, -0.0)[0]) and not np.signbit(quant_factors(3, 0.0)[0])
    assert not np.signbit(quant_factors(3, 0.0)[0])  # after -0.0 was cached
    for radix, scale in [(4, 1), (4, 1.0), (np.int32(4), np.float32(1.0)), (4, True)]:
        assert quant_factors(radix, scale).tobytes() == np.float32(16).tobytes()
    assert quant_factors(-2, 0.1).tobytes() == np.float32(np.float32(0.1) * 0.25).tobytes()
    assert np.isnan(quant_factors(1, float("nan"))[0])
    with pytest.raises(ValueError, match="out of range"):
        quant_factors(64, 1.0)
    with pytest.raises(ValueError, match="out of range"):
        quant_factors(64, 1.0)  # errors are not cached


def test_shape_cache_gives_what_the_uncached_parse_gives():
    chip = Chip.KL520
    assert parse_shape((1, 3, 4, 5), chip) == parse_shape([1, 3, 4, 5], chip) == (1, 3, 4, 5)
    assert parse_shape((np.int64(1), 3.0, 4, 5), chip) == (1, 3, 4, 5)
    assert all(type(d) is int for d in parse_shape((np.int64(1), 3.0, 4, 5), chip))
    with pytest.raises(ValueError, match="sequence of integers"):
        parse_shape((1, [3], 4, 5), chip)  # unhashable element: parsed without the cache
    for _ in range(2):
        with pytest.raises(ValueError, match="N = 1"):
            parse_shape((2, 3, 4, 5), chip)
