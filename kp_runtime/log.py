"""onnxruntime's logging switch, mapped onto the ``kp_runtime`` logger."""

from __future__ import annotations

import logging

_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR, 4: logging.CRITICAL}


def set_default_logger_severity(severity: int) -> None:
    """0 Verbose, 1 Info, 2 Warning, 3 Error, 4 Fatal (onnxruntime's scale and range check)."""
    if isinstance(severity, bool) or severity not in _LEVELS:
        raise RuntimeError("Invalid logging severity. 0:Verbose, 1:Info, 2:Warning, 3:Error, 4:Fatal")
    logging.getLogger("kp_runtime").setLevel(_LEVELS[severity])
