"""``kp.v1``: PLUS 2.x's home of the generic raw inference calls and their value classes.

The same objects as ``kp.inference.generic_raw_*`` and ``kp.GenericRaw*`` (2.x scripts call
``kp.v1.inference.generic_raw_inference_send(...)``). ``kp.v1.inference`` has no retrieve
functions, as in Kneron's package; those stay in ``kp.inference``.
"""

from kp_backend.kp.inference import inference as _inference
from kp_backend.kp.value import (
    GenericRawBypassPreProcImageHeader,
    GenericRawBypassPreProcResult,
    GenericRawBypassPreProcResultHeader,
    GenericRawImageHeader,
    GenericRawResult,
    GenericRawResultHeader,
)

__all__ = [
    "inference", "GenericRawImageHeader", "GenericRawResultHeader", "GenericRawResult",
    "GenericRawBypassPreProcImageHeader", "GenericRawBypassPreProcResultHeader",
    "GenericRawBypassPreProcResult",
]


class inference:  # noqa: N801 - Kneron's name
    """``kp.v1.inference``: the four legacy generic raw calls."""

    generic_raw_inference_send = staticmethod(_inference.generic_raw_inference_send)
    generic_raw_inference_receive = staticmethod(_inference.generic_raw_inference_receive)
    generic_raw_inference_bypass_pre_proc_send = staticmethod(
        _inference.generic_raw_inference_bypass_pre_proc_send)
    generic_raw_inference_bypass_pre_proc_receive = staticmethod(
        _inference.generic_raw_inference_bypass_pre_proc_receive)
