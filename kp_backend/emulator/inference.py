"""What the worker (NPU) thread produces for one job: result messages (PROTOCOL.md §5.6,
§6, §7.4).

A mixin of :class:`~kp_backend.emulator.firmware.Firmware`. The checks run in the
firmware's order (model, image count, model size, then the image checks of
:func:`~kp_backend.emulator.preprocess.image_checks`); a failed check yields one 344-byte
error result carrying the pre-processing record of the failing crop (``is_last_crop`` 1),
otherwise each crop box (or the whole image) gives one result whose payload is built by
:func:`kp_backend.layouts.build_result_payload` from the output nodes the chosen generator
(:mod:`kp_backend.emulator.compute`) returns.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Callable

from kp_backend.emulator.compute import (
    ComputeRequest,
    OnnxTwin,
    encode_npu_input,
    pattern_outputs,
    pseudo_random_outputs,
)
from kp_backend.emulator.fifo import Job
from kp_backend.emulator.preprocess import (
    UnsupportedImage,
    decode_image,
    image_checks,
    pre_proc_info,
    to_npu_input,
)
from kp_backend.layouts import build_result_payload
from kp_backend.nef import NefModel
from kp_backend.npu_types import Chip
from kp_backend.protocol.codes import ApiReturnCode as RC
from kp_backend.protocol.constants import (
    KL720_NODE_ENTRY_SIZE,
    MAGIC_INFERENCE,
    MAX_CROP_BOX,
    RESULT_HEADER_SIZE,
    STAMP_SIZE,
    JobId,
)
from kp_backend.protocol.wire import ImageRequestHeader, InferenceStamp, PreProcInfo, ResultHeader

__all__ = ["InferenceRunner"]

log = logging.getLogger("kp_backend.emulator.firmware")


class InferenceRunner:
    """Result production for :class:`~kp_backend.emulator.firmware.Firmware`."""

    def _job_results(self, job: Job) -> list[Callable[[], bytes]]:
        """One callable per result message this job produces (§5.6, §6.4, §7.4)."""
        if job.job_id not in (JobId.GENERIC_RAW_IMAGE, JobId.GENERIC_RAW_BYPASS_PRE_PROC):
            stamp = InferenceStamp(MAGIC_INFERENCE, STAMP_SIZE, job.job_id,
                                   RC.KP_FW_ERROR_UNKNOWN_APP, 0, 0).pack()
            return [lambda: stamp]
        images = [job.images[i] for i in sorted(job.images)]
        is_image = job.job_id == JobId.GENERIC_RAW_IMAGE
        first = images[0][0]
        crops: tuple = ()
        if is_image:
            crops = tuple(first.crop_boxes[:min(first.crop_count or 0, MAX_CROP_BOX)])
        status, crop_at, model = self._model_checks(job, len(images))
        infos_for: Callable[[int], tuple[PreProcInfo, ...]] = lambda k: ()  # noqa: E731
        if is_image:
            dims = self._model_dims(model, len(images))
            infos_for = lambda k: tuple(  # noqa: E731
                self._info(hdr, dims[i], crops[k] if crops else None)
                for i, (hdr, _) in enumerate(images))
            if status == 0:
                for i, (hdr, _) in enumerate(images):
                    own = tuple(hdr.crop_boxes[:len(crops)]) if crops else ()
                    status, crop_at = image_checks(self.chip, hdr, dims[i][2], dims[i][1], own)
                    if status:
                        break
        if status:
            return [lambda: self._error_result(job, status, infos_for(crop_at), crops, crop_at)]
        count = max(len(crops), 1)
        return [(lambda k=k: self._run_npu(job, model, images, crops, k, infos_for(k)))
                for k in range(count)]

    def _model_checks(self, job: Job, n_images: int) -> tuple[int, int, NefModel | None]:
        loaded = self.loaded
        if loaded is None or job.model_id not in loaded.model_ids:
            return RC.KP_ERROR_MODEL_NOT_LOADED_35, 0, None
        model = loaded.models.get(job.model_id)
        n_inputs = 1 if self.chip is Chip.KL520 or model is None else len(model.inputs)
        if n_images != n_inputs:
            return RC.KP_FW_WRONG_INPUT_BUFFER_COUNT_110, 0, model
        if model is None or not model.inputs or any(
                min(t.shape_npu[-2:] or (0,)) <= 0 for t in model.inputs):
            code = RC.KP_ERROR_INVALID_MODEL_21 if self.chip is Chip.KL720 else RC.KP_ERROR_MODEL_NOT_LOADED_35
            return code, 0, model
        return 0, 0, model

    @staticmethod
    def _model_dims(model: NefModel | None, n: int) -> list[tuple[int, int, int]]:
        """(C, H, W) of each input node; zeros when unknown."""
        dims = []
        for i in range(n):
            if model is not None and i < len(model.inputs):
                shape = tuple(model.inputs[i].shape_npu)
                dims.append((int(shape[-3]), int(shape[-2]), int(shape[-1])))
            else:
                dims.append((0, 0, 0))
        return dims

    @staticmethod
    def _info(hdr: ImageRequestHeader, dims: tuple[int, int, int], crop) -> PreProcInfo:
        src_w, src_h = (crop.width, crop.height) if crop is not None else (hdr.width, hdr.height)
        return pre_proc_info(src_w, src_h, dims[2], dims[1], hdr.resize_mode, hdr.padding_mode, crop)

    def _header(self, job: Job, status: int, total: int, infos, crop_number: int,
                last: bool) -> bytes:
        return ResultHeader(total, job.job_id, int(status), self.dongle.product_id,
                            job.inference_number, crop_number, int(last), tuple(infos)).pack()

    def _error_result(self, job: Job, status: int, infos, crops, crop_at: int) -> bytes:
        crop_number = crops[crop_at].crop_number if crops else 0
        return self._header(job, status, RESULT_HEADER_SIZE, infos, crop_number, True)

    def _run_npu(self, job: Job, model: NefModel, images, crops, k: int, infos) -> bytes:
        """One NPU run; its result is ready ``npu_time`` (+ pre-processing) after it starts.

        The emulator's own work (twin or stand-in compute, result packing) happens inside
        that time, the rest of which is slept, so a pipelined host sees the modelled rate
        rather than model time + emulator time (benchmarks: ``pipeline_efficiency``)."""
        started = time.monotonic()
        timing = self.dongle.timing
        seconds = timing.npu_time(job.model_id) + self.dongle.faults.npu_extra_s()
        if job.job_id == JobId.GENERIC_RAW_IMAGE:
            seconds += timing.preprocess_time(sum(len(p) for _, p in images))
        try:
            return self._npu_result(job, model, images, crops, k, infos)
        finally:
            self._sleep(seconds - (time.monotonic() - started))

    def _npu_result(self, job: Job, model: NefModel, images, crops, k: int, infos) -> bytes:
        is_image = job.job_id == JobId.GENERIC_RAW_IMAGE
        crop_number = crops[k].crop_number if crops else 0
        last = k == max(len(crops), 1) - 1
        if self.dongle.faults.on_npu_run():
            return self._header(job, RC.KP_FW_INFERENCE_TIMEOUT_103, RESULT_HEADER_SIZE, infos,
                                crop_number, True)
        try:
            if not self.ncpu_loaded:
                raise RuntimeError("NCPU firmware not loaded")
            npu_inputs = []
            for i, (hdr, payload) in enumerate(images):
                node = model.inputs[i]
                if is_image:
                    pixels = decode_image(payload, hdr.image_format, hdr.width, hdr.height)
                    own_crop = hdr.crop_boxes[k] if crops and k < len(hdr.crop_boxes) else None
                    fixed = to_npu_input(pixels, infos[i], own_crop, int(node.shape_npu[-3]),
                                         hdr.normalize_mode)
                    npu_inputs.append(encode_npu_input(self.chip, node, fixed))
                else:
                    npu_inputs.append(payload)
            req = ComputeRequest(self.chip, model, tuple(npu_inputs),
                                 b"".join(p for _, p in images), job.inference_number, k)
            raws = self._generate(req)
            payload = self._payload(model, raws)
        except UnsupportedImage:
            code = RC.KP_FW_NCPU_INVALID_IMAGE_201 if self.chip is Chip.KL520 else RC.KP_FW_INFERENCE_ERROR_101
            return self._header(job, code, RESULT_HEADER_SIZE, infos, crop_number, True)
        except Exception as exc:  # NPU error: the twin or the model could not run
            log.warning("virtual dongle %s: NPU error on model %d: %s", self.dongle.port_path,
                        job.model_id, exc)
            return self._header(job, RC.KP_FW_INFERENCE_ERROR_101, RESULT_HEADER_SIZE, infos,
                                crop_number, True)
        return self._header(job, 0, RESULT_HEADER_SIZE + len(payload), infos, crop_number,
                            last) + payload

    def _generate(self, req: ComputeRequest) -> list[bytes]:
        mode = self.dongle.compute
        if callable(mode):
            return list(mode(req))
        if mode == "transcript_pattern":
            return pattern_outputs(req)
        twin: OnnxTwin | None = self.dongle.twins.get(req.model.id)
        if mode == "auto" and twin is not None:
            return twin.outputs(req)
        return pseudo_random_outputs(req)

    def _payload(self, model: NefModel, raws: list[bytes]) -> bytes:
        nodes = []
        for node, raw in zip(model.outputs, raws):
            shape = tuple(int(d) for d in node.shape_npu)
            nodes.append((node.data_layout, shape, node.quantization.radix[0],
                          node.quantization.scale[0], raw))
        output_mem_len = self.loaded.output_mem_len.get(model.id, 0)
        payload = bytearray(build_result_payload(self.chip, nodes, output_mem_len))
        if self.chip is Chip.KL720:
            for i in range(len(nodes)):  # node_id = index, supernum = 1 (the transcripts' choice)
                struct.pack_into("<II", payload, 8 + KL720_NODE_ENTRY_SIZE * i + 8, i, 1)
        return bytes(payload)
