"""Fixtures of the emulator tests: a dongle factory that always closes what it made, a
check that no emulator thread outlives its test, and small generated NEFs."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kp_backend.emulator import VirtualDongle, VirtualUsbBackend, close_shared_virtual_backends  # noqa: E402
from kp_backend.nef import build_simple_nef  # noqa: E402

from _emu_host import KL520_MODEL, KL720_MODEL, TWIN_MODEL  # noqa: E402
from _threads import fail_if_threads_outlive  # noqa: E402

THREAD_PREFIX = "kp-emu-"


def _emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.fixture(autouse=True)
def no_thread_leak():
    """Every dongle thread a test started must be gone once its backend is closed."""
    before = set(_emulator_threads())
    yield
    close_shared_virtual_backends()
    fail_if_threads_outlive(_emulator_threads, before, "emulator threads")


@pytest.fixture
def emu():
    """``emu(chip="KL520", **kwargs) -> (backend, dongle)`` with fast timing by default."""
    backends: list[VirtualUsbBackend] = []

    def make(chip: str = "KL520", **kwargs):
        kwargs.setdefault("timing", "fast")
        dongle = VirtualDongle(chip, **kwargs)
        backend = VirtualUsbBackend([dongle])
        backends.append(backend)
        return backend, dongle

    yield make
    for b in backends:
        b.close()




@pytest.fixture(scope="session")
def kl520_nef() -> bytes:
    """KL520: model 7, input 3x8x8 (radix 7), outputs 2x3x5 (radix 5) and 1x1x10 (radix 4,
    scale 0.5); model 8, input 3x16x16, one output 1x1x4; model 12 (for twins), input and
    output 3x4x4."""
    return build_simple_nef("KL520", [
        {"id": KL520_MODEL,
         "inputs": [{"shape": [1, 3, 8, 8], "layout": "4W4C8B", "radix": 7}],
         "outputs": [{"shape": [1, 2, 3, 5], "layout": "16W1C8B", "radix": 5},
                     {"shape": [1, 1, 1, 10], "layout": "16W1C8B", "radix": 4, "scale": 0.5}]},
        {"id": 8,
         "inputs": [{"shape": [1, 3, 16, 16], "layout": "4W4C8B", "radix": 8}],
         "outputs": [{"shape": [1, 1, 1, 4], "layout": "16W1C8B", "radix": 0}]},
        {"id": TWIN_MODEL,
         "inputs": [{"shape": [1, 3, 4, 4], "layout": "4W4C8B", "radix": 7}],
         "outputs": [{"shape": [1, 3, 4, 4], "layout": "16W1C8B", "radix": 5}]},
    ])


@pytest.fixture(scope="session")
def kl720_nef() -> bytes:
    """KL720: model 9, input 3x8x8, output 4x2x3; model 11 with a 1024-wide input."""
    return build_simple_nef("KL720", [
        {"id": KL720_MODEL,
         "inputs": [{"shape": [1, 3, 8, 8], "layout": "4W4C8B", "radix": 7}],
         "outputs": [{"shape": [1, 4, 2, 3], "layout": "16W1C8B", "radix": 6}]},
        {"id": 11,
         "inputs": [{"shape": [1, 3, 2, 1024], "layout": "4W4C8B", "radix": 7}],
         "outputs": [{"shape": [1, 1, 1, 2], "layout": "16W1C8B", "radix": 0}]},
    ])
