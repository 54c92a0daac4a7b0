"""The Kneron execution provider (``docs/kneron_provider.md``).

``KneronExecutionProvider`` runs one model id of a NEF on KL520 / KL720 dongles, real or
virtual, behind kp_runtime's onnxruntime-shaped API; ``build_nef`` makes virtual-only NEF
twins of ONNX models (``kp-runtime build-nef``).
"""

from kp_backend.provider.build_nef import build_nef
from kp_backend.provider.options import OPTION_DOCS, KneronOptions, parse_options
from kp_backend.provider.provider import KneronExecutionProvider
from kp_backend.provider.session import KneronSession

__all__ = ["KneronExecutionProvider", "KneronSession", "KneronOptions", "OPTION_DOCS",
           "parse_options", "build_nef"]
