"""A virtual Kneron KL520 / KL720 dongle behind a pyusb backend (``docs/emulator.md``).

>>> import usb.core
>>> from kp_backend.emulator import VirtualDongle, VirtualUsbBackend
>>> backend = VirtualUsbBackend([VirtualDongle("KL520", timing="fast")])
>>> [hex(d.idProduct) for d in usb.core.find(find_all=True, idVendor=0x3231, backend=backend)]
['0x100']
>>> backend.close()

``virtual_backend_from_spec("KL520,KL720")`` builds a backend from a spec string (grammar in
:mod:`kp_backend.emulator.spec`); ``get_shared_virtual_backend()`` returns one process-wide
backend per spec, the default spec coming from the environment variable
``KP_VIRTUAL_DEVICES`` (else ``"KL520"``), so repeated scans and connects in one process see
the same dongles.
"""

from __future__ import annotations

import os
import threading

from kp_backend.emulator.compute import ComputeRequest, OnnxTwin
from kp_backend.emulator.dongle import VirtualDongle
from kp_backend.emulator.faults import Fault, FaultPlan
from kp_backend.emulator.spec import SpecError, dongles_from_spec, parse_spec
from kp_backend.emulator.timing import TimingModel
from kp_backend.emulator.usb_backend import VirtualUsbBackend

__all__ = [
    "VirtualDongle",
    "VirtualUsbBackend",
    "ComputeRequest",
    "OnnxTwin",
    "Fault",
    "FaultPlan",
    "TimingModel",
    "SpecError",
    "parse_spec",
    "virtual_backend_from_spec",
    "get_shared_virtual_backend",
    "close_shared_virtual_backends",
    "ENV_VAR",
    "DEFAULT_SPEC",
]

ENV_VAR = "KP_VIRTUAL_DEVICES"
DEFAULT_SPEC = "KL520"

_shared: dict[str, VirtualUsbBackend] = {}
_shared_lock = threading.Lock()


def virtual_backend_from_spec(spec: str) -> VirtualUsbBackend:
    """A new backend with the dongles ``spec`` describes (e.g. ``"2xKL520"``)."""
    return VirtualUsbBackend(dongles_from_spec(spec))


def get_shared_virtual_backend(spec: str | None = None) -> VirtualUsbBackend:
    """The process-wide backend for ``spec`` (default: ``$KP_VIRTUAL_DEVICES`` or
    ``"KL520"``), created on first use and cached per spec string."""
    key = (spec if spec is not None else os.environ.get(ENV_VAR) or DEFAULT_SPEC).strip()
    with _shared_lock:
        backend = _shared.get(key)
        if backend is None or backend._closed:
            backend = _shared[key] = virtual_backend_from_spec(key)
        return backend


def close_shared_virtual_backends() -> None:
    """Close and forget every shared backend (tests use it to avoid leaking threads)."""
    with _shared_lock:
        backends = list(_shared.values())
        _shared.clear()
    for b in backends:
        b.close()
