"""Which NEF model a session runs, and its companion ONNX: find it, check it, name the I/O.

The companion ONNX (option ``onnx=PATH``, else ``X.onnx`` beside ``X.nef``) gives input
and output names, ONNX shapes and dtypes. It must agree with the NEF model: the same
numbers of inputs and outputs, float tensors, and shapes that agree after the NEF's axis
permutation (:func:`kp_backend.provider.io_map.match_shape`). Every disagreement is
collected and reported at once in one :class:`~kp_runtime.errors.InvalidGraph`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from kp_runtime.errors import InvalidArgument, InvalidGraph, NoSuchFile
from kp_runtime.model_source import ModelSource
from kp_runtime.node_arg import ModelMetadata
from kp_runtime.onnx_model import describe

from kp_backend.nef import NefFile, NefModel
from kp_backend.provider.io_map import (
    FLOAT_TYPE, TensorMap, default_names, describe_node, match_shape)

__all__ = ["Signature", "select_model", "find_companion", "load_companion", "build_signature",
           "describe_models"]

log = logging.getLogger(__name__)


@dataclass
class Signature:
    """The session's view of one NEF model: ordered inputs/outputs and metadata."""

    inputs: list[TensorMap]
    outputs: list[TensorMap]
    metadata: ModelMetadata
    onnx_model: onnx.ModelProto | None = None
    onnx_path: Path | None = None
    warnings: list[str] = field(default_factory=list)


def describe_models(nef: NefFile) -> str:
    """``32: input [1, 3, 200, 200] 4W4C8B -> 8 outputs [1, 6, 3, 3] 16W1C8B, …; 5: …``."""
    parts = []
    for m in nef.models:
        ins = ", ".join(describe_node(t) for t in m.inputs)
        outs = ", ".join(describe_node(t) for t in m.outputs)
        parts.append(f"{m.id}: {len(m.inputs)} input(s) {ins} -> {len(m.outputs)} "
                     f"output(s) {outs}")
    return "; ".join(parts)


def select_model(nef: NefFile, model_id: int | None, display: str) -> NefModel:
    """The model the session runs (``InvalidArgument`` listing the ids and node shapes)."""
    ids = [m.id for m in nef.models]
    if model_id is None:
        if len(nef.models) == 1:
            return nef.models[0]
        raise InvalidArgument(
            f"{display} holds {len(ids)} models (ids {ids}); choose one with the provider "
            f"option model_id. Models: {describe_models(nef)}")
    for m in nef.models:
        if m.id == model_id:
            return m
    raise InvalidArgument(f"model_id {model_id} is not in {display}; it holds model ids {ids}. "
                          f"Models: {describe_models(nef)}")


def find_companion(model: ModelSource, option: str | None) -> Path | None:
    """The companion ONNX path: the ``onnx`` option (must exist), else ``X.onnx`` beside
    ``X.nef`` when the NEF came from a file and that file exists, else ``None``."""
    if option is not None:
        path = Path(option).expanduser()
        if not path.is_file():
            raise NoSuchFile(f"companion ONNX {option} (provider option onnx) does not exist")
        return path
    if model.path is None:
        return None
    beside = model.path.with_suffix(".onnx")
    return beside if beside.is_file() else None


def load_companion(path: Path) -> onnx.ModelProto:
    """Parse the companion (``InvalidGraph`` naming it when it is not ONNX)."""
    source = ModelSource(str(path))
    try:
        return source.onnx_model()
    except Exception as exc:  # InvalidProtobuf and friends, re-labelled with the role
        raise InvalidGraph(f"companion ONNX {path} cannot be read: "
                           f"{getattr(exc, 'text', exc)}") from exc


def _nef_metadata(nef: NefFile, model: NefModel) -> dict[str, str]:
    meta = {"kneron.chip": model.target_chip.name, "kneron.model_id": str(model.id),
            "kneron.model_version": str(model.version)}
    for key, value in (("kneron.toolchain_version", nef.toolchain_version.strip()),
                       ("kneron.compiler_version", nef.compiler_version.strip()),
                       ("kneron.platform", nef.platform.strip())):
        if value:
            meta[key] = value
    return meta


def build_signature(nef: NefFile, model: NefModel, companion: onnx.ModelProto | None,
                    companion_name: str = "companion ONNX") -> Signature:
    """Inputs/outputs of ``model``, named and shaped by ``companion`` when given.

    Raises ``InvalidGraph`` listing every disagreement between the companion and the NEF."""
    meta = _nef_metadata(nef, model)
    if companion is None:
        ins = [TensorMap(n, t, tuple(int(d) for d in t.shape))
               for n, t in zip(default_names(model, "input"), model.inputs)]
        outs = [TensorMap(n, t, tuple(int(d) for d in t.shape))
                for n, t in zip(default_names(model, "output"), model.outputs)]
        metadata = ModelMetadata(producer_name="kp_backend", graph_name=f"nef_model_{model.id}",
                                 custom_metadata_map=meta)
        return Signature(ins, outs, metadata)
    onnx_sig = describe(companion)
    problems: list[str] = []
    maps: dict[str, list[TensorMap]] = {}
    for kind, args, nodes in (("input", onnx_sig.inputs, model.inputs),
                              ("output", onnx_sig.outputs, model.outputs)):
        if len(args) != len(nodes):
            problems.append(f"the ONNX has {len(args)} {kind}(s) "
                            f"{[a.name for a in args]}, NEF model {model.id} has "
                            f"{len(nodes)}: " + ", ".join(describe_node(t) for t in nodes))
        maps[kind] = []
        for i, (arg, node) in enumerate(zip(args, nodes)):
            if arg.type != FLOAT_TYPE:
                problems.append(f"{kind} {i} '{arg.name}' is {arg.type}; the NPU model's "
                                f"{kind}s are {FLOAT_TYPE}")
            if not arg.rank_known:
                problems.append(f"{kind} {i} '{arg.name}' has no shape in the ONNX; the NEF "
                                f"node is {describe_node(node)}")
                continue
            resolved = match_shape(arg.shape, node.shape)
            if resolved is None:
                problems.append(f"{kind} {i} '{arg.name}' has ONNX shape {arg.shape}, the NEF "
                                f"node is {describe_node(node)}")
                continue
            maps[kind].append(TensorMap(arg.name, node, resolved))
    if problems:
        raise InvalidGraph(f"{companion_name} does not match NEF model {model.id} "
                           f"({model.target_chip.name}): " + "; ".join(problems))
    metadata = onnx_sig.metadata
    metadata.custom_metadata_map = {**meta, **metadata.custom_metadata_map}
    return Signature(maps["input"], maps["output"], metadata, companion)
