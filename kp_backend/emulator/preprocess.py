"""Job-10 hardware pre-processing of a virtual dongle (PROTOCOL.md §7.4, LAYOUTS.md §7).

Pure functions: the device checks (status codes in the firmware's order), the
pre-processing record the result header carries, and the image -> NPU-input conversion
(colour conversion, crop, resize, padding, normalisation).

Decisions where the hardware is not public (PROTOCOL.md open question 4):

* keep-aspect resizing uses integer arithmetic: the limiting side gets the model size, the
  other ``floor(side * model / limiting side)``; corner padding goes right/bottom,
  symmetric padding is split with the odd pixel right/bottom;
* resizing is bilinear with half-pixel centres, rounded to the nearest integer;
* YCbCr -> RGB uses full-range BT.601; a 1-channel model gets the luma
  ``0.299 R + 0.587 G + 0.114 B`` of RGB input, a 3-channel model gets RAW8 replicated;
* padding pixels are 0 in the NPU input (after normalisation);
* normalisation modes 0xFF and 4 pass the 8-bit pixel through unchanged (its bit pattern is
  what the NPU reads as int8).
"""

from __future__ import annotations

import numpy as np

from kp_backend.npu_types import Chip
from kp_backend.protocol.codes import ApiReturnCode as RC
from kp_backend.protocol.constants import (
    BYTES_PER_PIXEL,
    ImageFormat,
    NormalizeMode,
    PaddingMode,
    ResizeMode,
)
from kp_backend.protocol.wire import CropBox, ImageRequestHeader, PreProcInfo

__all__ = [
    "UnsupportedImage",
    "pre_proc_info",
    "image_checks",
    "decode_image",
    "to_npu_input",
    "KL720_MAX_INPUT_W",
    "KL720_MAX_INPUT_H",
]

KL720_MAX_INPUT_W = 1023
KL720_MAX_INPUT_H = 2047

# byte position of (Y0, Cb, Y1, Cr) in each 4-byte pair of pixels, per YCbCr422 format code
_YCBCR_ORDER = {
    ImageFormat.KP_IMAGE_FORMAT_YCBCR422_CRY1CBY0: (3, 2, 1, 0),
    ImageFormat.KP_IMAGE_FORMAT_YCBCR422_CBY1CRY0: (3, 0, 1, 2),
    ImageFormat.KP_IMAGE_FORMAT_YCBCR422_Y1CRY0CB: (2, 3, 0, 1),
    ImageFormat.KP_IMAGE_FORMAT_YCBCR422_Y1CBY0CR: (2, 1, 0, 3),
    ImageFormat.KP_IMAGE_FORMAT_YCBCR422_CRY0CBY1: (1, 2, 3, 0),
    ImageFormat.KP_IMAGE_FORMAT_YCBCR422_CBY0CRY1: (1, 0, 3, 2),
    ImageFormat.KP_IMAGE_FORMAT_YCBCR422_Y0CRY1CB: (0, 3, 2, 1),
    ImageFormat.KP_IMAGE_FORMAT_YCBCR422_Y0CBY1CR: (0, 1, 2, 3),
    ImageFormat.KP_IMAGE_FORMAT_YUYV: (0, 1, 2, 3),
}


class UnsupportedImage(ValueError):
    """The chip's pre-processor cannot handle this image format (an NCPU error)."""


def _keep_aspect(w: int, h: int, mw: int, mh: int) -> tuple[int, int]:
    if w <= 0 or h <= 0:
        return 0, 0
    if mw * h <= mh * w:  # width is the limiting side
        return mw, min(mh, h * mw // w)
    return min(mw, w * mh // h), mh


def pre_proc_info(src_w: int, src_h: int, model_w: int, model_h: int, resize_mode: int,
                  padding_mode: int, crop: CropBox | None = None) -> PreProcInfo:
    """The ``kp_hw_pre_proc_info_t`` record for one input (or crop): sizes and pads."""
    pad_top = pad_bottom = pad_left = pad_right = 0
    keep = resize_mode == ResizeMode.KP_RESIZE_ENABLE and padding_mode in (
        PaddingMode.KP_PADDING_CORNER, PaddingMode.KP_PADDING_SYMMETRIC)
    if keep:
        rw, rh = _keep_aspect(src_w, src_h, model_w, model_h)
        pad_w, pad_h = model_w - rw, model_h - rh
        if padding_mode == PaddingMode.KP_PADDING_SYMMETRIC:
            pad_left, pad_top = pad_w // 2, pad_h // 2
        pad_right, pad_bottom = pad_w - pad_left, pad_h - pad_top
    return PreProcInfo(
        src_w, src_h, model_w - pad_left - pad_right, model_h - pad_top - pad_bottom,
        pad_top, pad_bottom, pad_left, pad_right, model_w, model_h,
        crop if crop is not None else CropBox(),
    )


def image_checks(chip: Chip, hdr: ImageRequestHeader, model_w: int, model_h: int,
                 crops: tuple[CropBox, ...]) -> tuple[int, int]:
    """Checks 4–9 of §7.4 in the firmware's order: ``(status, crop index)``; status 0 = OK.
    The crop index names the box that failed (0 when the whole request failed)."""
    bpp = BYTES_PER_PIXEL.get(hdr.image_format, 0)
    if chip is Chip.KL520 and (hdr.width < model_w or hdr.height < model_h):
        return RC.KP_ERROR_IMAGE_RESOLUTION_TOO_SMALL_22, 0
    if chip is Chip.KL520:
        misaligned = int(hdr.width * bpp) % 4 != 0
    else:
        misaligned = hdr.width % 2 != 0
    if misaligned:
        return RC.KP_ERROR_IMAGE_INVALID_WIDTH_23, 0
    for i, box in enumerate(crops):
        if (box.x1 > hdr.width or box.y1 > hdr.height or box.x1 + box.width > hdr.width
                or box.y1 + box.height > hdr.height):
            return RC.KP_FW_INVALID_INPUT_CROP_PARAM_112, i
    resize_off = hdr.resize_mode != ResizeMode.KP_RESIZE_ENABLE
    padding_off = hdr.padding_mode == PaddingMode.KP_PADDING_DISABLE
    if resize_off and padding_off:
        sizes = [(b.width, b.height) for b in crops] or [(hdr.width, hdr.height)]
        for i, size in enumerate(sizes):
            if size != (model_w, model_h):
                return RC.KP_FW_IMAGE_SIZE_NOT_MATCH_MODEL_INPUT_107, i
    if resize_off and not padding_off:
        return RC.KP_FW_NOT_SUPPORT_PREPROCESSING_108, 0
    if chip is Chip.KL720 and (model_w > KL720_MAX_INPUT_W or model_h > KL720_MAX_INPUT_H):
        return RC.KP_FW_INVALID_PRE_PROC_MODEL_INPUT_SIZE_111, 0
    return 0, 0


def _ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    y = y.astype(np.float32)
    cb = cb.astype(np.float32) - 128.0
    cr = cr.astype(np.float32) - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def decode_image(data: bytes, image_format: int, width: int, height: int) -> np.ndarray:
    """Image bytes -> ``(H, W, 3)`` RGB or ``(H, W, 1)`` grey uint8. Raises
    :class:`UnsupportedImage` for formats KL520/KL720 cannot pre-process."""
    fmt = int(image_format)
    buf = np.frombuffer(data, dtype=np.uint8)
    if fmt == ImageFormat.KP_IMAGE_FORMAT_RGBA8888:
        return buf[: width * height * 4].reshape(height, width, 4)[:, :, :3]
    if fmt == ImageFormat.KP_IMAGE_FORMAT_RAW8:
        return buf[: width * height].reshape(height, width, 1)
    if fmt == ImageFormat.KP_IMAGE_FORMAT_RGB565:
        px = buf[: width * height * 2].view("<u2").reshape(height, width).astype(np.uint16)
        r, g, b = (px >> 11) & 0x1F, (px >> 5) & 0x3F, px & 0x1F
        return np.stack([(r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)],
                        axis=-1).astype(np.uint8)
    if fmt in _YCBCR_ORDER and width % 2 == 0:
        pairs = buf[: width * height * 2].reshape(height, width // 2, 4)
        iy0, icb, iy1, icr = _YCBCR_ORDER[ImageFormat(fmt)]
        y = np.empty((height, width), dtype=np.uint8)
        y[:, 0::2], y[:, 1::2] = pairs[:, :, iy0], pairs[:, :, iy1]
        cb = np.repeat(pairs[:, :, icb], 2, axis=1)
        cr = np.repeat(pairs[:, :, icr], 2, axis=1)
        return _ycbcr_to_rgb(y, cb, cr)
    raise UnsupportedImage(f"image format 0x{fmt:02X} is not supported by the KL520/KL720 "
                           "pre-processor")


def _bilinear(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    h, w, _ = img.shape
    if (h, w) == (out_h, out_w):
        return img.astype(np.float32)
    ys = np.clip((np.arange(out_h) + 0.5) * h / out_h - 0.5, 0, h - 1)
    xs = np.clip((np.arange(out_w) + 0.5) * w / out_w - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    src = img.astype(np.float32)
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def _normalise(pixels: np.ndarray, mode: int) -> np.ndarray:
    p = pixels.astype(np.int32)
    if mode in (NormalizeMode.KP_NORMALIZE_KNERON, NormalizeMode.KP_NORMALIZE_TENSOR_FLOW,
                NormalizeMode.KP_NORMALIZE_CUSTOMIZED_SUB128):
        return p - 128
    if mode in (NormalizeMode.KP_NORMALIZE_YOLO, NormalizeMode.KP_NORMALIZE_CUSTOMIZED_DIV2):
        return p >> 1
    if mode == NormalizeMode.KP_NORMALIZE_CUSTOMIZED_SUB128_DIV2:
        return (p - 128) >> 1
    return p.astype(np.uint8).view(np.int8).astype(np.int32)  # 0xFF, 4: bit pattern as is


def to_npu_input(image: np.ndarray, info: PreProcInfo, crop: CropBox | None, channels: int,
                 normalize_mode: int) -> np.ndarray:
    """Crop, resize, pad and normalise ``image`` (H, W, C uint8) into the model's fixed-point
    input, shape ``(1, channels, model_h, model_w)`` int32 (values fit int8)."""
    if crop is not None:
        image = image[crop.y1:crop.y1 + crop.height, crop.x1:crop.x1 + crop.width]
    if image.shape[2] == 3 and channels == 1:
        grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        image = np.clip(np.rint(grey), 0, 255).astype(np.uint8)[:, :, None]
    resized = np.clip(np.rint(_bilinear(image, info.resized_img_width,
                                         info.resized_img_height)), 0, 255)
    values = _normalise(resized.astype(np.uint8), normalize_mode)
    if values.shape[2] < channels:  # grey image for an RGB(A) model, or a 4th channel
        reps = [values[:, :, i % values.shape[2]] for i in range(min(channels, 3))]
        reps += [np.zeros_like(values[:, :, 0])] * (channels - len(reps))
        values = np.stack(reps, axis=-1)
    values = values[:, :, :channels]
    out = np.zeros((1, channels, info.model_input_height, info.model_input_width), np.int32)
    out[0, :, info.pad_top:info.pad_top + info.resized_img_height,
        info.pad_left:info.pad_left + info.resized_img_width] = values.transpose(2, 0, 1)
    return out
