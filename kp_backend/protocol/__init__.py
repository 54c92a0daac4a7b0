"""The Kneron PLUS (KDP2) USB protocol: constants, return codes and wire messages.

Pure data and pure functions; no I/O. The host library (``kp_backend.usb``,
``kp_backend.device``) and the virtual dongle (``kp_backend.emulator``) both build on it.
"""

from kp_backend.protocol.codes import ApiReturnCode, code_name  # noqa: F401
