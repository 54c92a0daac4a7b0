"""kp_backend: everything Kneron.

NEF model containers (:mod:`kp_backend.nef`), NPU tensor layouts
(:mod:`kp_backend.layouts`), the Kneron PLUS USB protocol (:mod:`kp_backend.protocol`),
the pyusb transport and device group, the Kneron PLUS Python API
(:mod:`kp_backend.kp`), the virtual dongle (:mod:`kp_backend.emulator`) and the
``kneron`` execution provider for :mod:`kp_runtime`.
"""

__version__ = "0.1.0"
