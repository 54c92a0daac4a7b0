"""Feeds -> request payloads and result messages -> outputs, for one session. Pure.

* float feeds (ONNX shape) are mapped to the NPU node order (:class:`TensorMap`), quantised
  with the node's radix/scale and laid out in its layout (``encode_node``): the bytes of a
  bypass-pre-processing (job 17) request;
* uint8 images (``H x W``, ``H x W x C`` or ``1 x H x W x C``) become the pixel bytes of an
  image (job 10) request with its :class:`ImageParams`;
* a result message is parsed without trusting its node table (``parse_result_nodes``),
  each node decoded with the radix/scale the device reports, then given the ONNX shape
  (or Kneron's channel-ordering shape).
"""

from __future__ import annotations

import array
import math
from collections.abc import Sequence

import numpy as np

from kp_runtime.errors import DeviceProtocolError, InvalidArgument

from kp_backend.layouts import NodeEncoder
from kp_backend.layouts.params import ChannelOrdering
from kp_backend.layouts.result import decode_record, parse_result_nodes
from kp_backend.npu_types import Chip
from kp_backend.protocol.constants import BYTES_PER_PIXEL, ImageFormat, NormalizeMode
from kp_backend.provider.dispatcher import ImageParams
from kp_backend.provider.io_map import TensorMap
from kp_backend.provider.options import KneronOptions

__all__ = ["FloatInput", "encode_image", "decode_outputs", "auto_normalize",
           "node_shape_for_ordering"]

_F = ImageFormat
_ZERO = array.array("B", b"\0")
_TWO_BYTE = frozenset(f for f, bpp in BYTES_PER_PIXEL.items() if bpp == 2)
#: Formats the KL520/KL720 pre-processors take (YUV420 is KL630 only).
_USABLE = frozenset({_F.KP_IMAGE_FORMAT_RAW8, _F.KP_IMAGE_FORMAT_RGBA8888}) | _TWO_BYTE


class FloatInput:
    """Encoder of one float input of a session: ONNX-shaped float tensor -> the NPU input
    node bytes, with the node's layout plan and quantisation prepared once
    (:class:`~kp_backend.layouts.NodeEncoder`)."""

    def __init__(self, tmap: TensorMap, chip: Chip) -> None:
        node = tmap.node
        q = node.quantization
        self.tmap = tmap
        try:
            self._encoder = NodeEncoder(
                chip=chip, layout=node.data_layout, shape=tmap.dims,
                radix=list(q.radix) if q.per_channel else q.radix[0],
                scale=list(q.scale) if q.per_channel else q.scale[0],
                strides=node.stride_npu or None, quantized_axis=q.axis)
        except ValueError as exc:
            raise InvalidArgument(f"input '{tmap.name}' cannot be quantised for the NPU: "
                                  f"{exc}") from exc
        self._nbytes = self._encoder.nbytes

    def encode(self, x: np.ndarray) -> array.array:
        """The node bytes for ``x``, in an ``array.array("B")`` made for this request: the
        USB transport hands such an array to pyusb as it is, so the input is written once,
        by the encoder, and never copied on the host (benchmarks: ``host_overhead_us``)."""
        out = _ZERO * self._nbytes  # a memset; every byte is then written by the encoder
        try:
            self._encoder.encode_into(out, self.tmap.to_npu(np.asarray(x, dtype=np.float32)))
        except ValueError as exc:
            raise InvalidArgument(f"input '{self.tmap.name}' cannot be quantised for the NPU: "
                                  f"{exc}") from exc
        return out


def auto_normalize(radix: int) -> NormalizeMode:
    """The dongle normalisation that matches a model input radix (LAYOUTS.md §7.4)."""
    if radix == 8:
        return NormalizeMode.KP_NORMALIZE_KNERON
    if radix == 7:
        return NormalizeMode.KP_NORMALIZE_TENSOR_FLOW
    raise InvalidArgument(
        f"the model input has radix {radix}; no on-device normalisation matches it "
        "automatically (kneron needs radix 8, tensorflow/yolo radix 7): set the provider "
        "option normalize")


def _image_array(name: str, image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise InvalidArgument(f"Unexpected input data type. Actual: (tensor({img.dtype})) , "
                              f"expected: (tensor(uint8)) for image input '{name}'")
    if img.ndim == 4:
        if img.shape[0] != 1:
            raise InvalidArgument(f"image input '{name}' has shape {list(img.shape)}; the NPU "
                                  "runs one image per request (N must be 1)")
        img = img[0]
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise InvalidArgument(f"image input '{name}' has shape {list(img.shape)}; expected "
                              "H x W, H x W x C or 1 x H x W x C")
    return img


def encode_image(tmap: TensorMap, image: np.ndarray, options: KneronOptions,
                 normalize: NormalizeMode) -> tuple[bytes, ImageParams]:
    """A uint8 image -> (pixel bytes, job-10 parameters) under the session's options."""
    img = _image_array(tmap.name, image)
    height, width, channels = img.shape
    fmt = options.image_format
    if fmt is None:
        fmt = {1: _F.KP_IMAGE_FORMAT_RAW8, 3: _F.KP_IMAGE_FORMAT_RGBA8888,
               4: _F.KP_IMAGE_FORMAT_RGBA8888}.get(channels)
        if fmt is None:
            raise InvalidArgument(
                f"image input '{tmap.name}' has {channels} channels; image_format=auto takes "
                "1 (RAW8), 3 (RGB) or 4 (RGBA); set image_format for 2-byte formats")
    if fmt not in _USABLE:
        raise InvalidArgument(f"image_format {fmt.name} is not supported by KL520/KL720 "
                              "pre-processing")
    needed = {_F.KP_IMAGE_FORMAT_RAW8: (1,), _F.KP_IMAGE_FORMAT_RGBA8888: (3, 4)}.get(fmt, (2,))
    if channels not in needed:
        raise InvalidArgument(
            f"image input '{tmap.name}' has {channels} channel(s); {fmt.name} takes an "
            f"H x W x {' or '.join(map(str, needed))} uint8 array")
    if fmt is _F.KP_IMAGE_FORMAT_RGBA8888 and channels == 3:
        img = np.concatenate([img, np.zeros((height, width, 1), np.uint8)], axis=2)
    params = ImageParams(width, height, int(fmt), int(options.resize_mode),
                         int(options.padding), int(normalize))
    return np.ascontiguousarray(img).tobytes(), params


def node_shape_for_ordering(tmap: TensorMap, ordering: ChannelOrdering,
                            chip: Chip) -> tuple[int, ...]:
    """The shape outputs of ``tmap`` have under a Kneron channel ordering (LAYOUTS.md §5)."""
    _, c, h, w = tmap.dims
    if ordering is ChannelOrdering.DEFAULT:
        ordering = ChannelOrdering.HCW if chip is Chip.KL520 else ChannelOrdering.CHW
    return {ChannelOrdering.CHW: (1, c, h, w), ChannelOrdering.HCW: (1, h, c, w),
            ChannelOrdering.HWC: (1, h, w, c)}[ordering]


def decode_outputs(raw: bytes, outputs: Sequence[TensorMap], wanted: Sequence[int],
                   ordering: ChannelOrdering | None, device: str,
                   decoders: dict | None = None) -> list[np.ndarray]:
    """The float32 outputs ``wanted`` (indices into ``outputs``) of one result message.

    ``ordering`` None gives ONNX shapes; otherwise Kneron's shapes for that ordering.
    ``decoders`` is a dict the caller keeps across calls (prepared node decoders)."""
    try:
        nodes = parse_result_nodes(raw)
    except ValueError as exc:
        raise DeviceProtocolError(f"{device}: malformed result: {exc}", device=device) from exc
    if len(nodes) != len(outputs):
        raise DeviceProtocolError(f"{device}: the result has {len(nodes)} output nodes, the "
                                  f"model {len(outputs)}", device=device)
    values = []
    for index in wanted:
        tmap, node = outputs[index], nodes[index]
        got = (node.channel, node.height, node.width)
        if got != tmap.dims[1:]:
            raise DeviceProtocolError(f"{device}: output node {index} is (C, H, W) = {got}, "
                                      f"the NEF says {tmap.dims[1:]}", device=device)
        try:
            value = decode_record(raw, node,
                                  ChannelOrdering.CHW if ordering is None else ordering,
                                  decoders=decoders)
        except ValueError as exc:
            raise DeviceProtocolError(f"{device}: output node {index}: {exc}",
                                      device=device) from exc
        if ordering is None:
            if value.size != math.prod(tmap.onnx_shape):
                raise DeviceProtocolError(f"{device}: output node {index} has {value.size} "
                                          f"values, '{tmap.name}' needs {tmap.onnx_shape}",
                                          device=device)
            value = tmap.from_npu(value)
        values.append(np.ascontiguousarray(value, dtype=np.float32))
    return values
