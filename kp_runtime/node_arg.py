"""``NodeArg``, ``ModelMetadata`` and onnxruntime's type strings.

Type strings follow onnxruntime exactly: ``tensor(float)``, ``tensor(double)``,
``seq(tensor(float))``, ``map(int64,tensor(float))``, ``optional(tensor(float))``
(the element name is the lower-cased ``onnx.TensorProto.DataType`` name, which is
what onnxruntime prints).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

Dim = int | str | None

_STRING_KINDS = frozenset("USO")


def elem_type_name(elem_type: int) -> str:
    """``TensorProto.FLOAT`` -> ``'float'`` (onnxruntime's spelling)."""
    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return "undefined"


def tensor_type_string(elem_type: int) -> str:
    return f"tensor({elem_type_name(elem_type)})"


def dtype_elem_type(dtype: np.dtype) -> int | None:
    """The ONNX element type of a numpy dtype, or ``None`` when it has none."""
    dtype = np.dtype(dtype)
    if dtype.kind in _STRING_KINDS:
        return TensorProto.STRING
    try:
        return onnx.helper.np_dtype_to_tensor_dtype(dtype)
    except (KeyError, TypeError, ValueError):
        return None


def array_type_string(array: np.ndarray) -> str:
    """The type string onnxruntime reports for a numpy array (``'tensor(double)'``)."""
    return _dtype_type_string(array.dtype)


@functools.lru_cache(maxsize=256)  # per-run hot path: no protobuf lookups after the first
def _dtype_type_string(dtype: np.dtype) -> str:
    elem = dtype_elem_type(dtype)
    if elem is None:
        return f"tensor({dtype})"
    return tensor_type_string(elem)


@functools.lru_cache(maxsize=256)
def numpy_dtype_for(type_string: str) -> np.dtype | None:
    """numpy dtype for a ``tensor(...)`` type string (``None`` if not a plain tensor)."""
    if not (type_string.startswith("tensor(") and type_string.endswith(")")):
        return None
    name = type_string[len("tensor(") : -1].upper()
    try:
        elem = TensorProto.DataType.Value(name)
    except ValueError:
        return None
    if elem == TensorProto.STRING:
        return np.dtype(object)
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    except (KeyError, TypeError, ValueError):
        return None


def type_string(type_proto: onnx.TypeProto) -> str:
    """onnxruntime's type string for an ONNX ``TypeProto``."""
    which = type_proto.WhichOneof("value")
    if which == "tensor_type":
        return tensor_type_string(type_proto.tensor_type.elem_type)
    if which == "sparse_tensor_type":
        return f"sparse_tensor({elem_type_name(type_proto.sparse_tensor_type.elem_type)})"
    if which == "sequence_type":
        return f"seq({type_string(type_proto.sequence_type.elem_type)})"
    if which == "map_type":
        key = elem_type_name(type_proto.map_type.key_type)
        return f"map({key},{type_string(type_proto.map_type.value_type)})"
    if which == "optional_type":
        return f"optional({type_string(type_proto.optional_type.elem_type)})"
    return "undefined"


class NodeArg:
    """An input or output of a model: ``name``, ``type`` and ``shape``, as onnxruntime's.

    ``shape`` elements are ``int`` (fixed), ``str`` (symbolic ``dim_param``) or
    ``None`` (unknown). Passing ``shape=None`` means the rank itself is unknown:
    ``shape`` then reads ``[]`` as in onnxruntime, and :attr:`rank_known` is False
    so input validation does not check rank or dimensions.
    """

    __slots__ = ("name", "type", "shape", "rank_known")

    def __init__(self, name: str, type: str, shape: Iterable[Dim] | None = None) -> None:  # noqa: A002
        self.name = name
        self.type = type
        self.rank_known = shape is not None
        self.shape: list[Dim] = [_dim(d) for d in shape] if shape is not None else []

    @classmethod
    def from_value_info(cls, value_info: onnx.ValueInfoProto) -> NodeArg:
        t = value_info.type
        which = t.WhichOneof("value")
        shape: list[Dim] | None = None
        holder = t.tensor_type if which == "tensor_type" else (
            t.sparse_tensor_type if which == "sparse_tensor_type" else None
        )
        if holder is not None and holder.HasField("shape"):
            shape = []
            for d in holder.shape.dim:
                if d.HasField("dim_value"):
                    shape.append(d.dim_value)
                elif d.HasField("dim_param"):
                    shape.append(d.dim_param)
                else:
                    shape.append(None)
        return cls(value_info.name, type_string(t), shape)

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeArg):
            return NotImplemented
        return (self.name, self.type, self.shape) == (other.name, other.type, other.shape)

    def __hash__(self) -> int:
        return hash((self.name, self.type, tuple(self.shape)))


def _dim(d: Any) -> Dim:
    if d is None or isinstance(d, str):
        return d
    if isinstance(d, (int, np.integer)) and not isinstance(d, bool):
        return int(d)
    raise TypeError(f"NodeArg shape elements must be int, str or None, got {d!r}")


class ModelMetadata:
    """Model metadata with onnxruntime's attribute names (``get_modelmeta()``)."""

    def __init__(
        self,
        producer_name: str = "",
        graph_name: str = "",
        domain: str = "",
        description: str = "",
        graph_description: str = "",
        version: int = 0,
        custom_metadata_map: Mapping[str, str] | None = None,
    ) -> None:
        self.producer_name = producer_name
        self.graph_name = graph_name
        self.domain = domain
        self.description = description
        self.graph_description = graph_description
        self.version = version
        self.custom_metadata_map = dict(custom_metadata_map or {})

    @classmethod
    def from_onnx(cls, model: onnx.ModelProto) -> ModelMetadata:
        return cls(
            producer_name=model.producer_name,
            graph_name=model.graph.name,
            domain=model.domain,
            description=model.doc_string,
            graph_description=model.graph.doc_string,
            version=model.model_version,
            custom_metadata_map={p.key: p.value for p in model.metadata_props},
        )

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"ModelMetadata({fields})"
