"""NEF node <-> ONNX tensor mapping: names, shapes, axis permutation, quantisation. Pure.

Shape rules (decisions, written down because no Kneron source fixes them):

* ``axis_permutation_onnx_to_npu`` ``p`` means ``npu = onnx.transpose(p)``, i.e. NPU axis
  ``i`` is ONNX axis ``p[i]``; it is used when it is a permutation of ``range(rank)`` with
  ``rank == len(shape_onnx) == len(shape_npu)``, otherwise elements keep their order
  (a reshape). Legacy setup.bin (all real KL520/KL720 files) has the identity.
* A companion ONNX shape *agrees* with the NEF's ONNX-order shape (``shape_onnx``, which
  legacy files set to ``shape_npu`` = ``[1, C, H, W]``) when both, padded with trailing 1s
  to the same rank, are equal position by position; a symbolic or unknown ONNX dimension
  matches anything and is reported with the NEF's size (the NPU model has fixed shapes).
  So ONNX ``[1, 1000]`` agrees with NPU ``[1, 1000, 1, 1]``, as the toolchain converts it.
* The NPU codecs work on 4-D ``(N, C, H, W)`` nodes: a shorter ``shape_npu`` gets leading
  1s (as the virtual dongle does).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kp_runtime.node_arg import Dim, NodeArg
from kp_runtime.quantization import TensorQuantization

from kp_backend.nef import NefModel, TensorInfo
from kp_backend.npu_types import fixed_dtype

__all__ = ["TensorMap", "match_shape", "npu_dims", "default_names", "describe_node",
           "FLOAT_TYPE", "UINT8_TYPE", "tensor_quantization", "onnx_axis_of_npu_axis"]

FLOAT_TYPE = "tensor(float)"
UINT8_TYPE = "tensor(uint8)"


def npu_dims(node: TensorInfo) -> tuple[int, int, int, int]:
    """The node's ``shape_npu`` as 4-D ``(N, C, H, W)`` (leading 1s added, extra axes folded
    into N)."""
    shape = tuple(int(d) for d in node.shape_npu)
    if len(shape) > 4:
        shape = (math.prod(shape[:-3]),) + shape[-3:]
    return (1,) * (4 - len(shape)) + shape  # type: ignore[return-value]


def _permutation(node: TensorInfo) -> tuple[int, ...] | None:
    perm = tuple(node.axis_permutation_onnx_to_npu)
    rank = len(node.shape_npu)
    if (len(perm) == rank == len(node.shape) and sorted(perm) == list(range(rank))
            and perm != tuple(range(rank))):
        return perm
    return None


def match_shape(onnx_dims: Sequence[Dim], nef_shape: Sequence[int]) -> tuple[int, ...] | None:
    """The ONNX shape with every dimension resolved, or ``None`` when it disagrees with the
    NEF's ONNX-order shape (module docstring)."""
    nef = [int(d) for d in nef_shape]
    rank = max(len(onnx_dims), len(nef))
    padded_onnx = list(onnx_dims) + [1] * (rank - len(onnx_dims))
    padded_nef = nef + [1] * (rank - len(nef))
    for want, have in zip(padded_onnx, padded_nef):
        if isinstance(want, int) and want != have:
            return None
    return tuple(padded_nef[: len(onnx_dims)])


def default_names(model: NefModel, kind: str) -> list[str]:
    """Names from the NEF when every node of ``kind`` has a distinct non-empty one, else
    ``input_0…`` / ``output_0…``."""
    nodes = model.inputs if kind == "input" else model.outputs
    names = [n.name for n in nodes]
    if all(names) and len(set(names)) == len(names):
        return names
    return [f"{kind}_{i}" for i in range(len(nodes))]


def describe_node(node: TensorInfo) -> str:
    """``[1, 1000, 1, 1] 16W1C8B`` (with the ONNX-order shape when it differs)."""
    text = f"{list(node.shape_npu)} {node.data_layout.layout_name}"
    if tuple(node.shape) != tuple(node.shape_npu):
        text += f" (ONNX order {list(node.shape)})"
    return text


def onnx_axis_of_npu_axis(node: TensorInfo, npu_axis: int, onnx_rank: int) -> int:
    """Where NPU axis ``npu_axis`` of ``node`` lies in the ONNX tensor (quantised axis)."""
    perm = _permutation(node)
    axis = perm[npu_axis] if perm is not None else npu_axis
    return min(axis, max(onnx_rank - 1, 0))


def tensor_quantization(name: str, node: TensorInfo, onnx_rank: int) -> TensorQuantization:
    """``step = 1 / (scale * 2**radix)`` per tensor, or per channel along the ONNX axis."""
    q = node.quantization
    steps = [1.0 / (float(s) * 2.0 ** int(r)) for r, s in zip(q.radix, q.scale)]
    dtype = fixed_dtype(node.data_layout)
    info = np.iinfo(dtype) if dtype is not None else None
    bounds = {"qmin": int(info.min), "qmax": int(info.max)} if info is not None else {}
    if len(steps) == 1:
        return TensorQuantization(name, steps[0], **bounds)
    return TensorQuantization(name, np.array(steps), onnx_axis_of_npu_axis(node, q.axis, onnx_rank),
                              **bounds)


@dataclass(frozen=True)
class TensorMap:
    """One model input or output: its user-facing name, type and shape, and its NEF node."""

    name: str
    node: TensorInfo
    onnx_shape: tuple[int, ...]  # resolved ONNX shape (what NodeArg reports)
    onnx_type: str = FLOAT_TYPE

    @property
    def node_arg(self) -> NodeArg:
        return NodeArg(self.name, self.onnx_type, list(self.onnx_shape))

    # cached: the NEF node never changes, and these run on every inference
    @functools.cached_property
    def dims(self) -> tuple[int, int, int, int]:
        return npu_dims(self.node)

    @functools.cached_property
    def _perm(self) -> tuple[int, ...] | None:
        return _permutation(self.node)

    def to_npu(self, x: np.ndarray) -> np.ndarray:
        """An array in the ONNX shape -> the node's ``(N, C, H, W)`` NPU-order array."""
        arr = np.asarray(x)
        perm = self._perm
        if perm is not None:
            arr = arr.reshape(self.node.shape).transpose(perm)
        return arr.reshape(self.dims)

    def from_npu(self, y: np.ndarray) -> np.ndarray:
        """A decoded ``(N, C, H, W)`` (CHW order) array -> the ONNX shape."""
        arr = np.asarray(y)
        perm = self._perm
        if perm is not None:
            arr = arr.reshape(self.node.shape_npu).transpose(np.argsort(perm))
        return arr.reshape(self.onnx_shape)

    def quantization(self) -> TensorQuantization:
        return tensor_quantization(self.name, self.node, len(self.onnx_shape))
