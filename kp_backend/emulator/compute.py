"""What the virtual NPU computes: output node bytes for one inference (PROTOCOL.md §6).

Three generators, chosen per dongle with ``compute=``:

* ``"auto"`` (default): the model id's ONNX **twin** when one is set
  (:meth:`VirtualDongle.set_twin`), else pseudo-random data;
* ``"pseudo_random"``: deterministic bytes. Every output element is drawn from numpy's
  PCG64 generator seeded with the first 8 bytes (little-endian) of
  ``sha256(u32 model_id || NPU input bytes)``; int8 layouts get uniform values in
  [-128, 127], int16 layouts in [-32768, 32767]; padding bytes are 0. Same model and same
  input -> same output, on every run and platform;
* ``"transcript_pattern"``: the test pattern of the golden USB transcripts (their README,
  "Device-side choices"): with ``seed = crc32(request payload) + 17·inference_number +
  5·crop_index (mod 2^32)``, element (c, h, w) of output node n is
  ``((7·seed + 31·n + 11·c + 5·h + 3·w) mod 256) − 128`` (int8) or
  ``((7·seed + 31·n + 1031·c + 257·h + 3·w) mod 65536) − 32768`` (int16), padding
  positions included.

Twin execution: each NPU input node is decoded from its NPU layout, dequantised with the
node's radix/scale (``float = q / (scale · 2^radix)``), reshaped to the ONNX input's
shape and run with ``onnx.reference.ReferenceEvaluator``; output k (graph order) is
quantised with NEF output node k's radix/scale into its NPU layout.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from kp_backend.layouts import encode_output_node, layout_plan
from kp_backend.layouts.decode import gather
from kp_backend.layouts.encode import scatter
from kp_backend.layouts.quant import dequantize, element_factors
from kp_backend.nef import NefModel, TensorInfo
from kp_backend.npu_types import Chip, DataLayout, fixed_dtype

__all__ = [
    "ComputeRequest",
    "COMPUTE_MODES",
    "OnnxTwin",
    "pattern_outputs",
    "pseudo_random_outputs",
    "npu_input_size",
    "encode_npu_input",
]

COMPUTE_MODES = ("auto", "pseudo_random", "transcript_pattern")


@dataclass(frozen=True)
class ComputeRequest:
    """One inference as the NPU sees it."""

    chip: Chip
    model: NefModel
    npu_inputs: tuple[bytes, ...]  # one NPU-layout buffer per input node
    payload: bytes  # request payload (image bytes for job 10, data for job 17)
    inference_number: int
    crop_index: int = 0


def _node_dims(t: TensorInfo) -> tuple[int, int, int, int]:
    shape = tuple(int(d) for d in t.shape_npu)
    shape = (1,) * (4 - len(shape)) + shape[-4:]
    return shape  # (N, C, H, W)


def _qparams(t: TensorInfo) -> tuple[int, float]:
    return int(t.quantization.radix[0]), float(t.quantization.scale[0])


def _padded_dims(chip: Chip, layout: DataLayout, c: int, h: int, w: int) -> tuple[int, int, int]:
    """The (C, H, W) grid covering every byte of a v1 output node, padding included."""
    ru = lambda n, m: -(-n // m) * m  # noqa: E731
    if layout is DataLayout.L8W1C16B:
        return c, h, ru(w, 8)
    if layout is DataLayout.L1W16C8B:
        return ru(c, 16), h, w
    return c, h, ru(w, 16)  # 16W1C8B and the layouts the host reads as 16W1C8B


def pattern_outputs(req: ComputeRequest) -> list[bytes]:
    """The golden transcripts' output pattern (module docstring)."""
    seed = (zlib.crc32(req.payload) + 17 * req.inference_number + 5 * req.crop_index) % 2**32
    out = []
    for n, node in enumerate(req.model.outputs):
        _, c, h, w = _node_dims(node)
        layout = node.data_layout
        wide = fixed_dtype(layout) == np.dtype(np.int16)
        cp, hp, wp = _padded_dims(req.chip, layout, c, h, w)
        ci, hi, wi = np.meshgrid(np.arange(cp, dtype=np.int64), np.arange(hp, dtype=np.int64),
                                 np.arange(wp, dtype=np.int64), indexing="ij")
        base = 7 * seed + 31 * n
        if wide:
            values = (base + 1031 * ci + 257 * hi + 3 * wi) % 65536 - 32768
        else:
            values = (base + 11 * ci + 5 * hi + 3 * wi) % 256 - 128
        plan = layout_plan(chip=req.chip, layout=layout, shape=(1, cp, hp, wp), output=True)
        raw = scatter(values.reshape(-1), plan)
        size = layout_plan(chip=req.chip, layout=layout, shape=(1, c, h, w), output=True).nbytes
        out.append(raw[:size])
    return out


def pseudo_random_outputs(req: ComputeRequest) -> list[bytes]:
    """Deterministic output bytes seeded by (model id, NPU input bytes)."""
    sha = hashlib.sha256(struct.pack("<I", req.model.id & 0xFFFFFFFF))
    for data in req.npu_inputs:  # fed piece by piece: no copy of the inputs
        sha.update(data)
    digest = sha.digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    out = []
    for node in req.model.outputs:
        plan = layout_plan(chip=req.chip, layout=node.data_layout, shape=_node_dims(node),
                           output=True)
        count = int(np.prod(plan.out_shape))
        if fixed_dtype(node.data_layout) == np.dtype(np.int16):
            values = rng.integers(-32768, 32768, size=count, dtype=np.int64)
        else:
            values = rng.integers(-128, 128, size=count, dtype=np.int64)
        out.append(scatter(values, plan))
    return out


def npu_input_size(chip: Chip, node: TensorInfo) -> int:
    """Bytes of one input node in its NPU layout (what a job-17 request carries)."""
    return layout_plan(chip=chip, layout=node.data_layout, shape=_node_dims(node)).nbytes


def encode_npu_input(chip: Chip, node: TensorInfo, fixed: np.ndarray) -> bytes:
    """Fixed-point NCHW values (e.g. from pre-processing) -> the node's NPU input bytes."""
    plan = layout_plan(chip=chip, layout=node.data_layout, shape=_node_dims(node))
    return scatter(np.asarray(fixed).reshape(-1), plan)


def _decode_npu_input(chip: Chip, node: TensorInfo, raw: bytes) -> np.ndarray:
    dims = _node_dims(node)
    plan = layout_plan(chip=chip, layout=node.data_layout, shape=dims)
    buf = np.zeros(plan.nbytes, dtype=np.uint8)
    data = np.frombuffer(raw, dtype=np.uint8)[: plan.nbytes]
    buf[: data.size] = data  # a short buffer reads as zeros (open question 7)
    fixed = gather(buf, plan)
    radix, scale = _qparams(node)
    factors = element_factors(radix, scale, dims, per_channel=False)
    return dequantize(fixed, factors).reshape(dims)


class OnnxTwin:
    """An ONNX model standing in for one NEF model id (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        if hasattr(model, "graph"):
            proto = model
        elif isinstance(model, (bytes, bytearray, memoryview)):
            proto = onnx.load_from_string(bytes(model))
        else:
            proto = onnx.load(str(model))
        self.proto = proto
        initialisers = {i.name for i in proto.graph.initializer}
        self.input_names = [i.name for i in proto.graph.input if i.name not in initialisers]
        self.input_shapes = [
            tuple(d.dim_value if d.HasField("dim_value") else -1
                  for d in i.type.tensor_type.shape.dim)
            for i in proto.graph.input if i.name not in initialisers
        ]
        self.output_names = [o.name for o in proto.graph.output]
        self._evaluator = ReferenceEvaluator(proto)

    def check(self, model: NefModel) -> None:
        """Raise ``ValueError`` when the twin's I/O counts do not match the NEF model's."""
        if len(self.input_names) != len(model.inputs) or len(self.output_names) != len(model.outputs):
            raise ValueError(
                f"ONNX twin has {len(self.input_names)} inputs / {len(self.output_names)} outputs; "
                f"NEF model {model.id} has {len(model.inputs)} / {len(model.outputs)}")

    def outputs(self, req: ComputeRequest) -> list[bytes]:
        self.check(req.model)
        feeds = {}
        for name, shape, node, raw in zip(self.input_names, self.input_shapes,
                                          req.model.inputs, req.npu_inputs):
            x = _decode_npu_input(req.chip, node, raw)
            if all(d > 0 for d in shape) and int(np.prod(shape)) == x.size:
                x = x.reshape(shape)
            feeds[name] = x.astype(np.float32)
        results = self._evaluator.run(None, feeds)
        out = []
        for node, value in zip(req.model.outputs, results):
            dims = _node_dims(node)
            value = np.asarray(value, dtype=np.float32)
            if value.size != int(np.prod(dims)):
                raise ValueError(f"twin output of shape {value.shape} does not fit NEF output "
                                 f"node {node.index} of shape {dims}")
            radix, scale = _qparams(node)
            out.append(encode_output_node(value.reshape(dims), chip=req.chip,
                                          layout=node.data_layout, shape=dims, radix=radix,
                                          scale=scale))
        return out


Generator = Callable[[ComputeRequest], Sequence[bytes]]
