"""The immutable model-container objects that :func:`~kp_backend.nef.read_nef` returns.

They mirror Kneron PLUS's ``kp_model_nef_descriptor_t`` (NEF.md §8.3): a :class:`NefFile`
holds header metadata and one :class:`NefModel` per model; each model holds
:class:`TensorInfo` input and output descriptors with :class:`Quantization` parameters.
All containers are tuples and all byte parts read-only memoryviews into the file's bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from kp_backend.npu_types import Chip, DataLayout

__all__ = [
    "DType",
    "SetupFormat",
    "Quantization",
    "TensorInfo",
    "FwInfoRecord",
    "FwInfo",
    "ModelInfoEntry",
    "NefModel",
    "NefFile",
    "EMPTY",
]

EMPTY = memoryview(b"")


class DType(enum.IntEnum):
    """``kp_dtype_t`` / the setup and KNE ``DataType``: the type of a quantisation scale."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT32 = 9
    BFLOAT16 = 10
    DOUBLE64 = 11


class SetupFormat(str, enum.Enum):
    """Where a model's I/O description came from (NEF.md §6, §7)."""

    LEGACY = "legacy"          # C-struct setup.bin (KL520, KL720)
    FLATBUFFER = "flatbuffer"  # INFContent setup.bin (KL530, KL630, KL720 flatbuffer mode)
    KNE = "kne"                # KL730 KNE model header


@dataclass(frozen=True)
class Quantization:
    """``QuantizationParametersV1``: entry k applies to index k along ``axis`` when there
    are several entries (per-channel), to the whole tensor when there is one.
    ``float = fixed / (scale * 2**radix)``."""

    axis: int = 1
    radix: tuple[int, ...] = (0,)
    scale: tuple[float, ...] = (1.0,)
    scale_dtype: DType = DType.FLOAT32

    def __post_init__(self) -> None:
        if len(self.radix) != len(self.scale):
            raise ValueError(
                f"quantisation needs one radix per scale; got {len(self.radix)} radix "
                f"and {len(self.scale)} scale values")

    @property
    def per_channel(self) -> bool:
        return len(self.radix) > 1

    @property
    def entries(self) -> tuple[tuple[int, float], ...]:
        """``(radix, scale)`` pairs, Kneron's ``quantized_fixed_point_descriptor_list``."""
        return tuple(zip(self.radix, self.scale))


@dataclass(frozen=True)
class TensorInfo:
    """``TensorDescriptor``: one input or output node.

    ``shape_info_version`` 1 (KL520/720/530/630): ``shape_npu``, ``shape_onnx``,
    ``axis_permutation_onnx_to_npu``. Version 2 (KL730 KNE): ``shape`` with ``stride_npu``
    and ``stride_onnx``; there ``shape_npu`` and ``shape_onnx`` both hold the KNE shape
    (it is in ONNX order) and the permutation is the KNE ``shape_intrp_dim`` or identity.
    ``format_code`` is the raw per-chip id the file stores.
    """

    index: int
    name: str
    shape_npu: tuple[int, ...]
    data_layout: DataLayout
    quantization: Quantization = field(default_factory=Quantization)
    shape_onnx: tuple[int, ...] = ()
    axis_permutation_onnx_to_npu: tuple[int, ...] = ()
    format_code: int | None = None
    shape_info_version: int = 1
    stride_npu: tuple[int, ...] = ()
    stride_onnx: tuple[int, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        """The ONNX-order shape (``shape_onnx``, falling back to ``shape_npu``)."""
        return self.shape_onnx or self.shape_npu

    @property
    def layout_name(self) -> str:
        return self.data_layout.layout_name


@dataclass(frozen=True)
class FwInfoRecord:
    """One 56-byte fw_info model record (NEF.md §4.2): device DRAM addresses and lengths."""

    model_type: int
    model_version: int
    input_mem_addr: int
    input_mem_len: int
    output_mem_addr: int
    output_mem_len: int
    buf_addr: int
    buf_len: int
    cmd_mem_addr: int
    cmd_mem_len: int
    weight_mem_addr: int
    weight_mem_len: int
    setup_mem_addr: int
    setup_mem_len: int


@dataclass(frozen=True)
class FwInfo:
    """The fw_info blob: records plus the tail words (NEF.md §4.1). ``model_crcs`` and
    ``fw_info_crc`` are the inferred trailing words, empty/``None`` when not present."""

    records: tuple[FwInfoRecord, ...]
    model_dram_addr_end: int
    model_total_size: int
    model_checksum: int
    model_crcs: tuple[int, ...] = ()
    fw_info_crc: int | None = None


@dataclass(frozen=True)
class ModelInfoEntry:
    """One ``NEFContent.model_info`` entry: source model file name, id, version string."""

    name: str
    id: int
    version: str


@dataclass(frozen=True)
class NefModel:
    """``SingleModelDescriptor`` plus the model's raw parts.

    ``max_raw_out_size`` follows PLUS 2.2 for KL520 (see :mod:`kp_backend.nef.reader`).
    ``fw_info`` is ``None`` for KNE models; ``command``/``weight``/``setup`` are views
    into the file (empty for KNE models, whose program lives inside the KNE).
    """

    id: int
    version: int
    target_chip: Chip
    max_raw_out_size: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    setup_format: SetupFormat
    setup_schema_version: tuple[int, int, int] = (0, 0, 0)
    setup_file_schema_version: tuple[int, int, int] = (0, 0, 0)
    input_mem_len: int = 0
    output_mem_len: int = 0
    fw_info: FwInfoRecord | None = None
    fw_info_bytes: memoryview = field(default=EMPTY, repr=False, compare=False)
    command: memoryview = field(default=EMPTY, repr=False, compare=False)
    weight: memoryview = field(default=EMPTY, repr=False, compare=False)
    setup: memoryview = field(default=EMPTY, repr=False, compare=False)

    @property
    def input_nodes(self) -> tuple[TensorInfo, ...]:
        return self.inputs

    @property
    def output_nodes(self) -> tuple[TensorInfo, ...]:
        return self.outputs


@dataclass(frozen=True)
class NefFile:
    """``ModelNefDescriptor`` plus the header fields and raw byte vectors of a NEF.

    ``crc`` is PLUS's descriptor ``crc`` (fw_info ``model_checksum``, or the header ``crc``
    for KL730 KNE); ``header_crc`` the ``NEFHeader.crc``; ``file_crc`` the trailer word.
    ``fw_info`` and ``all_models`` are exactly the two vectors a KL520/KL720 load sends.
    """

    target_chip: Chip
    target_raw: int
    schema_version: tuple[int, int, int]
    models: tuple[NefModel, ...]
    crc: int
    header_crc: int
    file_crc: int
    crc_ok: bool
    kn_number: int = 0
    encryption_mode: int = 0
    uuid: int = 0
    magic: int = 0x012EBD34
    platform: str = ""
    compiler_version: str = ""
    toolchain_version: str = ""
    solution_id: str = ""
    solution_tag: str = ""
    model_info: tuple[ModelInfoEntry, ...] = ()
    fw_info_table: FwInfo | None = None
    fw_info: memoryview = field(default=EMPTY, repr=False, compare=False)
    all_models: memoryview = field(default=EMPTY, repr=False, compare=False)
    data: memoryview = field(default=EMPTY, repr=False, compare=False)

    @property
    def encrypted(self) -> bool:
        """PLUS's rule: refused unless the device KN number matches (NEF.md §8.3 step 7)."""
        return self.kn_number != 0 and self.encryption_mode != 0

    @property
    def is_kne(self) -> bool:
        return bool(self.models) and self.models[0].setup_format is SetupFormat.KNE

    def model(self, model_id: int) -> NefModel:
        """The model with ``id == model_id``; ``KeyError`` naming the ids present."""
        for m in self.models:
            if m.id == model_id:
                return m
        raise KeyError(f"model id {model_id} not in this NEF; ids: {[m.id for m in self.models]}")
