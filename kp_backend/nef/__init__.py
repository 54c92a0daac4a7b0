"""NEF model containers (NEF.md): read them, write them, inspect them.

``read_nef(path_or_bytes)`` gives an immutable :class:`NefFile` whose models carry
Kneron PLUS's ``ModelNefDescriptor`` content; ``write_nef``/``build_simple_nef`` make
NEF bytes for tests and the virtual dongle; ``python -m kp_backend.nef MODEL.nef``
prints what a file holds. Every malformed input raises :class:`NefError`.
"""

from kp_backend.nef.errors import NefError
from kp_backend.nef.model import (
    DType, FwInfo, FwInfoRecord, ModelInfoEntry, NefFile, NefModel, Quantization,
    SetupFormat, TensorInfo)
from kp_backend.nef.reader import max_raw_out_size, models_from_fw_info, read_nef
from kp_backend.nef.writer import ModelSpec, build_simple_nef, write_nef

__all__ = [
    "NefError", "DType", "FwInfo", "FwInfoRecord", "ModelInfoEntry", "NefFile", "NefModel",
    "Quantization", "SetupFormat", "TensorInfo", "read_nef", "models_from_fw_info",
    "max_raw_out_size", "write_nef", "build_simple_nef", "ModelSpec",
]
