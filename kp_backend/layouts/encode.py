"""Float tensor -> NPU node bytes (LAYOUTS.md §2, §6, §8).

:func:`encode_node` builds an *input* node for bypass-pre-processing ("data") inference;
:func:`encode_output_node` builds an *output* node as the device would return it (used by the
virtual dongle). Padding bytes are always zero.
"""

from __future__ import annotations

import numpy as np

from kp_backend.layouts.decode import strided
from kp_backend.layouts.params import is_v2
from kp_backend.layouts.plans import F32, HL, I8, I16_MASKED, Plan, layout_plan
from kp_backend.layouts.quant import ROUNDING_MODES, element_factors, quantize
from kp_backend.npu_types import parse_chip

__all__ = ["encode_node", "encode_output_node", "default_rounding", "scatter"]


def default_rounding(chip) -> str:
    """The quantisation Kneron's own host code uses for a chip's inputs: the KL730 helper
    (``kneron_round``) on KL730, the C data-inference examples (``roundf``) elsewhere."""
    return "kneron_round" if is_v2(parse_chip(chip)) else "roundf"


def scatter(values: np.ndarray, plan: Plan) -> bytes:
    """Place fixed-point (or float32) ``values`` (flat, plan order) into a zeroed buffer."""
    if plan.kind == I8 and plan.affine is not None:
        packed = _pack_channel_words(values.astype(np.int8, copy=False), plan)
        if packed is not None:
            return packed
    buf = np.zeros(plan.nbytes, dtype=np.uint8)
    idx = plan.index
    if plan.kind == HL:
        u = values.astype(np.int16).view(np.uint16) >> 1
        buf[idx] = (u & 0x7F).astype(np.uint8)
        buf[idx + 16] = ((u >> 7) & 0xFF).astype(np.uint8)
        return buf.tobytes()
    if plan.kind == I8:
        elements, values = buf.view(np.int8), values.astype(np.int8, copy=False)
    elif plan.kind == F32:
        elements, values = buf.view("<f4"), values.astype(np.float32, copy=False)
    else:
        elements, values = buf.view("<i2"), values.astype(np.int16)
        if plan.kind == I16_MASKED:
            values &= np.int16(-2)
    if plan.affine is not None:
        strided(elements, plan, writeable=True)[...] = values.reshape(plan.out_shape)
    else:
        elements[idx] = values
    return buf.tobytes()


def _pack_channel_words(values: np.ndarray, plan: Plan) -> bytes | None:
    """Fast path of :func:`scatter` for int8 layouts that keep the (at most 4) channels of a
    pixel in one aligned 4-byte word (4W4C8B on KL520/KL720 with C <= 4: element strides
    (0, 1, row, 4)): the words are built with whole-plane integer operations instead of a
    byte-strided transposing copy (3x faster on 1x3x224x224; benchmarks: ``encode_mb_s``).
    None when the plan does not have that shape."""
    offset, strides = plan.affine
    shape = plan.out_shape
    if len(shape) != 4 or shape[0] != 1 or not 1 <= shape[1] <= 4 or tuple(strides[1:]) != (
            1, strides[2], 4) or strides[2] % 4 or offset % 4:
        return None
    _, channels, height, width = shape
    row = strides[2] // 4
    if (height - 1) * row + width > (plan.nbytes - offset) // 4:
        return None
    planes = values.view(np.uint8).reshape(channels, height, width)
    # Horner order from the last channel: the ufuncs widen the uint8 planes on the fly,
    # so no widened copy of each plane is made
    word = planes[-1].astype(np.uint32)
    for c in range(channels - 2, -1, -1):
        word <<= np.uint32(8)
        word |= planes[c]
    if offset == 0 and row == width and height * width * 4 == plan.nbytes:
        return word.astype("<u4", copy=False).tobytes()  # no padding: the words are the node
    buf = np.zeros(plan.nbytes, dtype=np.uint8)
    words = buf[offset:offset + (plan.nbytes - offset) // 4 * 4].view("<u4")
    np.lib.stride_tricks.as_strided(words, shape=(height, width),
                                    strides=(row * 4, 4), writeable=True)[...] = word
    return buf.tobytes()


def _prepare(x, plan: Plan, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != plan.out_shape:
        raise ValueError(f"{what} has shape {arr.shape}; expected {plan.out_shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{what} has dtype {arr.dtype}; expected a real numeric array")
    return arr.reshape(-1)


def _encode(x, plan: Plan, *, chip, radix, scale, quantized_axis: int, mode: str,
            exact_blocks: bool) -> bytes:
    if mode not in ROUNDING_MODES:
        raise ValueError(f"unknown rounding {mode!r}; expected one of {ROUNDING_MODES}")
    flat = _prepare(x, plan, "input tensor")
    factors = element_factors(
        radix, scale, plan.out_shape, quantized_axis=quantized_axis,
        per_channel=is_v2(parse_chip(chip)), exact_blocks=exact_blocks,
    )
    bits = None if plan.kind == F32 else (8 if plan.kind == I8 else 16)
    # The KL730 helper clips 16-bit data at 32766 (its LSB is dropped anyway).
    max16 = 32766 if mode == "kneron_round" else None
    return scatter(quantize(flat, factors, kind_bits=bits, mode=mode, max16=max16), plan)


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
    return _encode(x, plan, chip=chip, radix=radix, scale=scale,
                   quantized_axis=quantized_axis, mode=mode, exact_blocks=True)


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
    return _encode(x, plan, chip=chip, radix=radix, scale=scale,
                   quantized_axis=quantized_axis, mode="roundf", exact_blocks=False)
