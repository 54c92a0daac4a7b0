"""NPU tensor codecs (LAYOUTS.md): raw node buffers <-> Kneron fixed-point / float32 tensors,
float tensors and images -> NPU input bytes (returned, or written into a caller's
buffer by ``encode_node_into``), and the node tables of v1 result messages.

All functions are pure and vectorised; per-node index plans are cached
(:mod:`kp_backend.layouts.plans`). Chips and layouts are accepted as
:class:`~kp_backend.npu_types.Chip` / :class:`~kp_backend.npu_types.DataLayout`, their
numbers, or names (``"KL720"``, ``"16W1C8B"``). Bad input raises ``ValueError``.
"""

from kp_backend.layouts.decode import NodeDecoder, decode_node
from kp_backend.layouts.encode import (
    NodeEncoder,
    default_rounding,
    encode_node,
    encode_node_into,
    encode_output_node,
)
from kp_backend.layouts.image import image_to_npu, normalize_image
from kp_backend.layouts.params import ChannelOrdering, parse_ordering
from kp_backend.layouts.plans import Plan, decode_plan, default_strides, layout_plan, node_buffer_size
from kp_backend.layouts.quant import ROUNDING_MODES
from kp_backend.layouts.result import (
    NodeRecord,
    build_result_payload,
    parse_result_nodes,
    result_payload_size,
    retrieve_node,
)

__all__ = [
    "ChannelOrdering",
    "NodeDecoder",
    "NodeEncoder",
    "NodeRecord",
    "Plan",
    "ROUNDING_MODES",
    "build_result_payload",
    "decode_node",
    "decode_plan",
    "default_rounding",
    "default_strides",
    "encode_node",
    "encode_node_into",
    "encode_output_node",
    "image_to_npu",
    "layout_plan",
    "node_buffer_size",
    "normalize_image",
    "parse_ordering",
    "parse_result_nodes",
    "result_payload_size",
    "retrieve_node",
]
