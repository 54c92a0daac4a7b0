"""Which pyusb backend the host library talks to.

* ``None`` — the virtual dongles of ``KP_VIRTUAL_DEVICES`` (e.g. ``KL520,KL720``) when that
  environment variable is set, otherwise real USB through libusb-1.0: the system library
  when pyusb finds one, else the copy bundled by the ``libusb-package`` wheel.
* a string — ``"libusb"`` (real USB) or a virtual-device spec such as ``"KL520"``; the same
  spec always gives the same virtual devices within a process, so ``scan_devices`` and
  ``connect_devices`` see one bus.
* any other object — used as a pyusb backend (``usb.backend.IBackend``) as is.

The emulator package is imported lazily, only when a virtual backend is requested.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["ENV_VIRTUAL_DEVICES", "REAL_USB_NAMES", "resolve_backend", "libusb_backend"]

ENV_VIRTUAL_DEVICES = "KP_VIRTUAL_DEVICES"
REAL_USB_NAMES = frozenset({"libusb", "libusb1", "usb", "real"})

_lock = threading.Lock()
_libusb: Any = None


def libusb_backend() -> Any:
    """The libusb-1.0 pyusb backend (system library first, then ``libusb_package``)."""
    global _libusb
    with _lock:
        if _libusb is None:
            import usb.backend.libusb1 as libusb1

            backend = libusb1.get_backend()
            if backend is None:
                try:
                    import libusb_package

                    backend = libusb_package.get_libusb1_backend()
                except ImportError:  # pragma: no cover - declared dependency
                    backend = None
            if backend is None:
                import usb.core

                raise usb.core.NoBackendError(
                    "no libusb-1.0 found: install the 'libusb-package' wheel or the system "
                    "libusb-1.0 package"
                )
            _libusb = backend
        return _libusb


def _virtual_backend(spec: str) -> Any:
    # The emulator caches one backend per spec string, so a scan and a later connect with
    # the same spec see the same dongles.
    from kp_backend import emulator

    log.debug("using virtual Kneron devices %r", spec)
    return emulator.get_shared_virtual_backend(spec.strip())


def resolve_backend(backend: Any = None) -> Any:
    """A pyusb backend object for ``backend`` (see the module docstring)."""
    if backend is None:
        spec = os.environ.get(ENV_VIRTUAL_DEVICES, "").strip()
        return _virtual_backend(spec) if spec else libusb_backend()
    if isinstance(backend, str):
        if backend.strip().lower() in REAL_USB_NAMES:
            return libusb_backend()
        if not backend.strip():
            raise ValueError("empty backend spec; expected 'libusb' or e.g. 'KL520,KL720'")
        return _virtual_backend(backend)
    return backend
