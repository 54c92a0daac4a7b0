"""``kp.inference``: the seed's generic raw inference calls (PROTOCOL.md §8).

Faithful to Kneron PLUS: the image send overwrites the header's ``width``/``height`` (for
numpy images) and ``image_format``; byte counts come from the headers; receives size their
buffer from the model descriptor's ``max_raw_out_size``. Deviations (documented in
``docs/kp.md``): an image buffer shorter than width·height·bpp, a model id missing from the
descriptor, and an invalid node index raise ``ApiKPException`` 12 instead of reading past a
buffer, a ``ValueError``, or returning a broken object.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kp_backend.kp._convert import fill_result_header
from kp_backend.kp._group import DeviceGroup
from kp_backend.kp.core import _low
from kp_backend.kp.enum import ChannelOrdering, FixedPointDType, ImageFormat
from kp_backend.kp.exception import ApiKPException, api_function
from kp_backend.kp.value import (
    GenericRawBypassPreProcImageHeader,
    GenericRawBypassPreProcResult,
    GenericRawImageHeader,
    GenericRawResult,
    InferenceConfiguration,
    InferenceFixedNodeOutput,
    InferenceFloatNodeOutput,
    ModelNefDescriptor,
)
from kp_backend.layouts import parse_result_nodes, retrieve_node
from kp_backend.npu_types import DataLayout, fixed_dtype
from kp_backend.protocol.codes import ApiReturnCode
from kp_backend.protocol.constants import JobId
from kp_backend.protocol.wire import CropBox

__all__ = ["inference"]

RC = ApiReturnCode


def _raw_out_size(descriptor: ModelNefDescriptor, model_id: int, name: str) -> int:
    for model in getattr(descriptor, "models", ()):
        if model.id == model_id:
            return model.max_raw_out_size
    ids = [m.id for m in getattr(descriptor, "models", ())]
    raise ApiKPException(RC.KP_ERROR_INVALID_PARAM_12, name,
                         detail=f"model id {model_id} is not in the model descriptor (ids {ids})")


def _raw_bytes(result: Any, name: str) -> bytes:
    raw = getattr(result, "raw_result", None)
    if raw is None:
        raise ApiKPException(RC.KP_ERROR_INVALID_PARAM_12, name,
                             detail=f"expected a GenericRaw*Result, got {type(result).__name__}")
    return bytes(raw)


def _image_bytes(image: Any) -> memoryview:
    if isinstance(image, np.ndarray):
        return memoryview(np.ascontiguousarray(image)).cast("B")
    return memoryview(image).cast("B")


def _receive(device_group: DeviceGroup, header: Any, descriptor: ModelNefDescriptor, job: int,
             result_cls: type, name: str) -> Any:
    """Read one result sized from the descriptor and fill a ``result_cls`` from it."""
    group = _low(device_group, name)
    size = _raw_out_size(descriptor, header.model_id, name)
    raw = group.receive(job, size)
    result = result_cls(buffer_size=size)
    result.raw_result._fill(raw)
    fill_result_header(result.header, raw)
    return result


def _retrieve(node_idx: int, result: Any, ordering: Any, as_float: bool, name: str):
    raw = _raw_bytes(result, name)
    try:
        ordering = ChannelOrdering(ordering)
        nodes = parse_result_nodes(raw)
        if not 0 <= int(node_idx) < len(nodes):
            raise ValueError(f"node index {node_idx} out of range 0..{len(nodes) - 1}")
        node = nodes[int(node_idx)]
        data = retrieve_node(raw, int(node_idx), int(ordering), as_float=as_float)
    except ValueError as exc:
        raise ApiKPException(RC.KP_ERROR_INVALID_PARAM_12, name, detail=str(exc)) from exc
    return node, data, ordering


class inference:  # noqa: N801 - Kneron's name
    """Generic raw inference (``kp.inference``; ``kp.v1.inference`` in PLUS 2.x)."""

    @staticmethod
    @api_function
    def generic_raw_inference_send(device_group: DeviceGroup,
                                   generic_raw_image_header: GenericRawImageHeader,
                                   image: Any, image_format: ImageFormat) -> None:
        """Send one image (bytes or ``numpy.ndarray``) for device pre-processing."""
        name = "generic_raw_inference_send"
        group = _low(device_group, name)
        header = generic_raw_image_header
        if isinstance(image, np.ndarray):
            if image.ndim < 2:
                raise ApiKPException(RC.KP_ERROR_INVALID_PARAM_12, name,
                                     detail=f"image array needs >= 2 dimensions, got {image.shape}")
            header.width, header.height = int(image.shape[1]), int(image.shape[0])
        header.image_format = image_format
        boxes = tuple(CropBox(b.crop_box_index, b.x, b.y, b.width, b.height)
                      for b in header.inference_crop_box_list)
        group.send_image(header.model_id, header.inference_number, _image_bytes(image),
                         header.width, header.height, int(header.image_format),
                         resize_mode=int(header.resize_mode),
                         padding_mode=int(header.padding_mode),
                         normalize_mode=int(header.normalize_mode), crop_boxes=boxes)

    @staticmethod
    @api_function
    def generic_raw_inference_receive(device_group: DeviceGroup,
                                      generic_raw_image_header: GenericRawImageHeader,
                                      model_nef_descriptor: ModelNefDescriptor) -> GenericRawResult:
        """The next image result (one per crop box)."""
        return _receive(device_group, generic_raw_image_header, model_nef_descriptor,
                        JobId.GENERIC_RAW_IMAGE, GenericRawResult,
                        "generic_raw_inference_receive")

    @staticmethod
    @api_function
    def generic_raw_inference_bypass_pre_proc_send(
            device_group: DeviceGroup,
            generic_raw_image_header: GenericRawBypassPreProcImageHeader,
            image_buffer: Any) -> None:
        """Send ``image_buffer_size`` bytes already in the model's NPU input layout."""
        name = "generic_raw_inference_bypass_pre_proc_send"
        header = generic_raw_image_header
        _low(device_group, name).send_bypass(header.model_id, header.inference_number,
                                            _image_bytes(image_buffer),
                                            size=header.image_buffer_size)

    @staticmethod
    @api_function
    def generic_raw_inference_bypass_pre_proc_receive(
            device_group: DeviceGroup,
            generic_raw_image_header: GenericRawBypassPreProcImageHeader,
            model_nef_descriptor: ModelNefDescriptor) -> GenericRawBypassPreProcResult:
        """The next bypass (job 17) result."""
        return _receive(device_group, generic_raw_image_header, model_nef_descriptor,
                        JobId.GENERIC_RAW_BYPASS_PRE_PROC, GenericRawBypassPreProcResult,
                        "generic_raw_inference_bypass_pre_proc_receive")

    @staticmethod
    def generic_inference_retrieve_fixed_node(
            node_idx: int, generic_raw_result: Any,
            channels_ordering: ChannelOrdering = ChannelOrdering.KP_CHANNEL_ORDERING_CHW,
    ) -> InferenceFixedNodeOutput:
        """Output node ``node_idx`` as raw fixed-point integers (no device I/O)."""
        node, data, ordering = _retrieve(node_idx, generic_raw_result, channels_ordering, False,
                                         "generic_inference_retrieve_fixed_node")
        layout = DataLayout.L16W1C8B if node.layout is DataLayout.UNKNOWN else node.layout
        dtype = (FixedPointDType.KP_FIXED_POINT_DTYPE_INT16
                 if fixed_dtype(layout) == np.dtype(np.int16)
                 else FixedPointDType.KP_FIXED_POINT_DTYPE_INT8)
        factor = float(np.float32(node.scale) * np.float32(2.0 ** node.radix))
        return InferenceFixedNodeOutput(
            width=node.width, height=node.height, channel=node.channel, radix=node.radix,
            scale=float(node.scale), factor=factor, dtype=dtype,
            num_data=node.width * node.height * node.channel, data=data,
            channels_ordering=ordering)

    @staticmethod
    def generic_inference_retrieve_float_node(
            node_idx: int, generic_raw_result: Any,
            channels_ordering: ChannelOrdering = ChannelOrdering.KP_CHANNEL_ORDERING_CHW,
    ) -> InferenceFloatNodeOutput:
        """Output node ``node_idx`` de-quantised to float32 (no device I/O)."""
        node, data, ordering = _retrieve(node_idx, generic_raw_result, channels_ordering, True,
                                         "generic_inference_retrieve_float_node")
        return InferenceFloatNodeOutput(
            width=node.width, height=node.height, channel=node.channel,
            num_data=node.width * node.height * node.channel,
            data=np.asarray(data, dtype=np.float32), channels_ordering=ordering)

    @staticmethod
    @api_function
    def set_inference_configuration(device_group: DeviceGroup,
                                     inference_configuration: InferenceConfiguration) -> None:
        """Frame dropping on/off on every device (control 0x83); set it after connecting."""
        _low(device_group, "set_inference_configuration").set_frame_drop(
            bool(inference_configuration.enable_frame_drop))
