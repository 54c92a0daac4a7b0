"""Describe an ONNX model the way onnxruntime does: inputs, outputs, overridable initializers.

Used by the CPU provider, and by any provider that wants ORT-shaped ``NodeArg``\\ s
for an ONNX model (e.g. an ONNX twin of a compiled model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import onnx

from kp_runtime.node_arg import ModelMetadata, NodeArg

log = logging.getLogger(__name__)


@dataclass
class OnnxSignature:
    inputs: list[NodeArg]
    outputs: list[NodeArg]
    overridable_initializers: list[NodeArg]
    metadata: ModelMetadata


def describe(model: onnx.ModelProto) -> OnnxSignature:
    """Inputs (initializers excluded), outputs and metadata of ``model``.

    Outputs declared without a shape get one from ONNX shape inference where it
    can infer it, as onnxruntime reports inferred output shapes.
    """
    graph = model.graph
    init_names = {t.name for t in graph.initializer} | {
        t.values.name for t in graph.sparse_initializer
    }
    inputs = [NodeArg.from_value_info(v) for v in graph.input if v.name not in init_names]
    overridable = [NodeArg.from_value_info(v) for v in graph.input if v.name in init_names]
    outputs = [NodeArg.from_value_info(v) for v in graph.output]
    if any(not o.rank_known for o in outputs):
        inferred = _inferred_outputs(model)
        outputs = [
            inferred.get(o.name, o) if not o.rank_known and inferred.get(o.name, o).type == o.type else o
            for o in outputs
        ]
    return OnnxSignature(inputs, outputs, overridable, ModelMetadata.from_onnx(model))


def _inferred_outputs(model: onnx.ModelProto) -> dict[str, NodeArg]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as exc:  # noqa: BLE001 - inference is a nicety, never a failure
        log.debug("shape inference failed: %s", exc)
        return {}
    found = {}
    for value_info in inferred.graph.output:
        arg = NodeArg.from_value_info(value_info)
        if arg.rank_known:
            # Inference names the dims it cannot know ``unk__N``; ORT shows those as None.
            arg.shape = [None if isinstance(d, str) and d.startswith("unk__") else d for d in arg.shape]
        found[value_info.name] = arg
    return found
