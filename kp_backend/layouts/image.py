"""Host-side image pre-processing for data (bypass) inference (LAYOUTS.md §6, §7.4, §8).

:func:`image_to_npu` does what Kneron's data-inference examples do on the host: take a
uint8 image (the first C channels of an H x W x 3/4 RGB(A) array, or a grey H x W array),
normalise it, quantise it with the model input's radix and scale, and lay it out in the
input node's format. No resizing: the image must already have the model's height and width.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kp_backend.layouts.encode import encode_node
from kp_backend.layouts.plans import layout_plan
from kp_backend.protocol.constants import NormalizeMode

__all__ = ["image_to_npu", "normalize_image", "NORMALIZATIONS"]


def _kneron(p: np.ndarray) -> np.ndarray:
    return (p - 128.0) / 256.0


def _tensor_flow(p: np.ndarray) -> np.ndarray:
    return (p - 128.0) / 128.0


def _yolo(p: np.ndarray) -> np.ndarray:
    return np.floor(p / 2.0) / 128.0


# Float meaning of the on-device normalisers at the radix each mode assumes (§7.4): KNERON
# (p-128)/256 is the data-inference examples' formula and exact at radix 8; TENSOR_FLOW is the
# hardware's SUB128 read at radix 7 (p/128 - 1) and YOLO its DIV2 read at radix 7 (floor(p/2)/128),
# so host pre-processing feeds the model exactly what on-device pre-processing would.
NORMALIZATIONS: dict[NormalizeMode, Callable[[np.ndarray], np.ndarray]] = {
    NormalizeMode.KP_NORMALIZE_KNERON: _kneron,
    NormalizeMode.KP_NORMALIZE_TENSOR_FLOW: _tensor_flow,
    NormalizeMode.KP_NORMALIZE_YOLO: _yolo,
}


def _parse_normalize(mode) -> Callable[[np.ndarray], np.ndarray]:
    if callable(mode):
        return mode
    member = None
    if isinstance(mode, str):
        key = mode.strip().upper().replace("TENSORFLOW", "TENSOR_FLOW")
        key = key if key.startswith("KP_NORMALIZE_") else "KP_NORMALIZE_" + key
        member = NormalizeMode.__members__.get(key)
    else:
        try:
            member = NormalizeMode(int(mode))
        except (TypeError, ValueError):
            member = None
    if member in NORMALIZATIONS:
        return NORMALIZATIONS[member]
    raise ValueError(
        f"normalisation {mode!r} has no host-side float form; expected KNERON, TENSOR_FLOW, "
        "YOLO or a callable mapping pixel values (float64) to model inputs"
    )


def normalize_image(image, channels: int, normalize="KNERON") -> np.ndarray:
    """The model input as float64 NCHW ``(1, channels, H, W)`` from an H x W (x C) uint8 image."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"image has dtype {img.dtype}; expected uint8 pixels")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"image has shape {img.shape}; expected (H, W) or (H, W, C)")
    if img.shape[2] < channels:
        raise ValueError(
            f"image has {img.shape[2]} channels; the model input needs {channels}"
        )
    fn = _parse_normalize(normalize)
    pixels = img[:, :, :channels].transpose(2, 0, 1)[None].astype(np.float64)
    return np.asarray(fn(pixels), dtype=np.float64)


def image_to_npu(image, *, chip, layout, shape, radix, scale, normalize="KNERON",
                 rounding: str | None = None, strides=None, quantized_axis: int = 1) -> bytes:
    """Normalise, quantise and lay out a uint8 image as an NPU input node.

    ``shape`` is the input node's ``(1, C, H, W)``. The image provides its first C channels
    (R, G, B[, A] for RGBA). ``rounding`` defaults to the chip's Kneron implementation
    (``roundf`` as the KL520/KL720 C examples, ``kneron_round`` on KL730); ``"numpy"`` gives the
    PLUS 2.2.0 Python examples' bytes.
    """
    dims = tuple(int(d) for d in shape)
    if len(dims) != 4:
        raise ValueError(f"shape {dims} must be the input node's (1, C, H, W)")
    layout_plan(chip=chip, layout=layout, shape=dims, strides=strides)  # validate first
    img = np.asarray(image)
    if img.ndim in (2, 3) and img.shape[:2] != dims[2:]:
        raise ValueError(
            f"image is {img.shape[0]} x {img.shape[1]} (H x W); the model input is "
            f"{dims[2]} x {dims[3]} and image_to_npu does not resize"
        )
    x = normalize_image(img, dims[1], normalize)
    # C and KL730 paths take float32 input; the pixel values above are exact in float32.
    x = x if rounding == "numpy" else x.astype(np.float32)
    return encode_node(x, chip=chip, layout=layout, shape=dims, radix=radix, scale=scale,
                       strides=strides, quantized_axis=quantized_axis, rounding=rounding)
