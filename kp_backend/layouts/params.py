"""Argument normalisation shared by the layout codecs: chips, layouts, orderings,
shapes, strides and quantisation parameters (LAYOUTS.md §1, §4, §5).

Every function here is pure and raises ``ValueError`` naming what was expected.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Sequence
from typing import Union

import numpy as np

from kp_backend.npu_types import Chip, DataLayout, code_from_layout, parse_chip, parse_layout

__all__ = [
    "ChannelOrdering",
    "V1_CHIPS",
    "V2_CHIPS",
    "SUPPORTED_CHIPS",
    "check_chip_layout",
    "is_v2",
    "parse_ordering",
    "parse_shape",
    "parse_strides",
    "quant_factors",
    "scalar_factor",
    "pow2",
]

Number = Union[int, float, np.integer, np.floating]

# Chips whose host code uses the v1 (C, H, W + one radix/scale) node description; KL730 uses
# shape-info v2 (ONNX shape, stride_npu, per-channel descriptors). KL530/KL540 are not handled
# by any Kneron retrieve function, so they are rejected.
V1_CHIPS = frozenset({Chip.KL520, Chip.KL720, Chip.KL630})
V2_CHIPS = frozenset({Chip.KL730})
SUPPORTED_CHIPS = V1_CHIPS | V2_CHIPS

# Radix limits: Kneron's pow2 shifts a 64-bit one, so |radix| must stay below 64.
_RADIX_LIMIT = 63


class ChannelOrdering(enum.IntEnum):
    """``kp_channel_ordering_t`` (LAYOUTS.md §5). ``DEFAULT`` exists from PLUS 3.x."""

    HCW = 0
    CHW = 1
    HWC = 2
    DEFAULT = 3


def parse_ordering(ordering: ChannelOrdering | int | str) -> ChannelOrdering:
    """Accept the enum, its number, ``"CHW"`` or ``"KP_CHANNEL_ORDERING_CHW"``."""
    if isinstance(ordering, ChannelOrdering):
        return ordering
    if isinstance(ordering, str) and ordering in _ORDERING_NAMES:
        return _ORDERING_NAMES[ordering]
    if isinstance(ordering, str):
        key = ordering.strip().upper().removeprefix("KP_CHANNEL_ORDERING_")
        try:
            return ChannelOrdering[key]
        except KeyError:
            raise ValueError(
                f"unknown channel ordering {ordering!r}; expected one of "
                f"{[o.name for o in ChannelOrdering]}"
            ) from None
    try:
        return ChannelOrdering(int(ordering))
    except (TypeError, ValueError):
        raise ValueError(
            f"unknown channel ordering {ordering!r}; expected 0 (HCW), 1 (CHW), 2 (HWC) "
            "or 3 (DEFAULT)"
        ) from None


_ORDERING_NAMES = {o.name: o for o in ChannelOrdering}


def is_v2(chip: Chip) -> bool:
    """True for chips described by the KL730 stride model (shape-info v2)."""
    return chip in V2_CHIPS


def check_chip_layout(chip: Chip | int | str, layout: DataLayout | int | str) -> tuple[Chip, DataLayout]:
    """Parse and validate a chip/layout pair: the chip must be one the codecs serve and the
    layout must have a format code on it (``npu_types`` tables)."""
    try:
        return _check_chip_layout_cached(chip, layout)
    except TypeError:  # unhashable argument: parse without the cache (and raise clearly)
        return _check_chip_layout(chip, layout)


def _check_chip_layout(chip, layout) -> tuple[Chip, DataLayout]:
    chip = parse_chip(chip)
    layout = parse_layout(layout)
    if chip not in SUPPORTED_CHIPS:
        raise ValueError(
            f"chip {chip.name} is not supported by the layout codecs; expected one of "
            f"{sorted(c.name for c in SUPPORTED_CHIPS)}"
        )
    if layout is DataLayout.UNKNOWN:
        raise ValueError("data layout UNKNOWN cannot be converted; expected a concrete layout")
    code_from_layout(chip, layout)  # raises ValueError naming the chip's layouts
    return chip, layout


# Argument parsing costs more than decoding a small node; names and numbers repeat.
_check_chip_layout_cached = functools.lru_cache(maxsize=256)(_check_chip_layout)


def parse_shape(shape: Sequence[int], chip: Chip) -> tuple[int, ...]:
    """Validate a node shape: ``(N, C, H, W)`` for v1 chips (N must be 1: Kneron converts
    only batch 0 and leaves the rest uninitialised), any rank >= 1 for KL730."""
    if type(shape) is tuple:  # the codecs' per-call case: cached (equal tuples, equal dims)
        try:
            return _parse_shape_cached(shape, chip)
        except TypeError:  # an unhashable element: parse without the cache
            pass
    return _parse_shape(shape, chip)


def _parse_shape(shape: Sequence[int], chip: Chip) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a sequence of integers, got {shape!r}") from None
    if any(d < 1 for d in dims):
        raise ValueError(f"shape {dims} has a dimension < 1; expected positive sizes")
    if is_v2(chip):
        if not dims:
            raise ValueError("shape is empty; expected the node's ONNX shape")
        return dims
    if len(dims) != 4:
        raise ValueError(f"shape {dims} for {chip.name} must be (N, C, H, W) (4 dimensions)")
    if dims[0] != 1:
        raise ValueError(
            f"batch {dims[0]} in shape {dims}: {chip.name} nodes carry one image; expected N = 1"
        )
    return dims


_parse_shape_cached = functools.lru_cache(maxsize=256)(_parse_shape)


def parse_strides(strides: Sequence[int] | None, shape: tuple[int, ...], chip: Chip) -> tuple[int, ...] | None:
    """``stride_npu`` (in scalars) for KL730; must be absent for the other chips."""
    if strides is None:
        return None
    if not is_v2(chip):
        raise ValueError(
            f"strides were given for {chip.name}; only the KL730 stride model takes stride_npu"
        )
    try:
        st = tuple(int(s) for s in strides)
    except (TypeError, ValueError):
        raise ValueError(f"strides must be a sequence of integers, got {strides!r}") from None
    if len(st) != len(shape):
        raise ValueError(
            f"strides {st} have {len(st)} entries; expected one per axis of shape {shape}"
        )
    if any(s < 0 for s in st):
        raise ValueError(f"strides {st} contain a negative value; expected unsigned strides")
    return st


def _as_list(value: Number | Sequence[Number], name: str) -> list:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a number or a sequence of numbers, got {value!r}")
    if np.ndim(value) == 0:
        return [value]
    values = list(np.asarray(value).ravel())
    if not values:
        raise ValueError(f"{name} is empty; expected at least one value")
    return values


def pow2(radix: int) -> np.float32:
    """Kneron's exact float32 power of two (``1 << r`` or ``1 / (1 << -r)``)."""
    return np.float32(2.0 ** radix)


def quant_factors(radix: Number | Sequence[Number], scale: Number | Sequence[Number]) -> np.ndarray:
    """float32 ``scale * 2**radix`` per descriptor (LAYOUTS.md §4.1): the scale is rounded to
    float32 first, the power of two is exact, the product is one float32 multiply."""
    if type(radix) is int and type(scale) in (int, float):  # a result record's fields
        return np.array([scalar_factor(radix, scale)], dtype=np.float32)
    if np.ndim(radix) == 0 and np.ndim(scale) == 0 and not isinstance(scale, (str, bytes)):
        return np.array([_factor(radix, scale)], dtype=np.float32)
    radii = _as_list(radix, "radix")
    scales = _as_list(scale, "scale")
    if len(radii) != len(scales):
        raise ValueError(
            f"{len(radii)} radix values but {len(scales)} scale values; expected equal counts"
        )
    return np.array([_factor(r, s) for r, s in zip(radii, scales)], dtype=np.float32)


def _factor(radix, scale) -> np.float32:
    try:
        r = int(radix)
        exact = float(radix) == r
    except (TypeError, ValueError, OverflowError):
        exact = False
    if not exact:
        raise ValueError(f"radix {radix!r} is not an integer")
    if abs(r) > _RADIX_LIMIT:
        raise ValueError(f"radix {r} out of range; expected -{_RADIX_LIMIT}..{_RADIX_LIMIT}")
    try:
        s = np.float32(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale {scale!r} is not a number") from None
    return np.float32(s * pow2(r))


def scalar_factor(radix: int, scale: int | float) -> np.float32:
    """The one factor of a Python int ``radix`` and Python number ``scale`` (a result
    record's fields), from a bounded cache: what :func:`quant_factors` holds for them."""
    # -0.0 == 0.0 as keys, but their factors differ in sign: the sign is in the key
    sign = math.copysign(1.0, scale) if type(scale) is float else 1.0
    return _factor_cached(radix, scale, sign)


@functools.lru_cache(maxsize=256)
def _factor_cached(radix: int, scale: float, sign: float) -> np.float32:
    """:func:`_factor` of a Python int radix and number scale (``sign`` keys -0.0 apart)."""
    return _factor(radix, scale)


def block_stride(shape: tuple[int, ...], quantized_axis: int, count: int) -> int:
    """Elements per quantisation descriptor in ONNX order (LAYOUTS.md §4.2): the product of
    every dimension except ``quantized_axis``. Kneron switches descriptor each time the flat
    offset is a multiple of it, so descriptor = flat // block_stride; it needs at least
    ``shape[quantized_axis]`` descriptors."""
    if not -len(shape) <= quantized_axis < len(shape):
        raise ValueError(
            f"quantized_axis {quantized_axis} out of range for shape {shape}"
        )
    axis = quantized_axis % len(shape)
    stride = int(np.prod([d for k, d in enumerate(shape) if k != axis], dtype=np.int64))
    if count < shape[axis]:
        raise ValueError(
            f"{count} quantisation descriptors for axis {axis} of shape {shape}; "
            f"expected 1 or at least {shape[axis]}"
        )
    return stride
