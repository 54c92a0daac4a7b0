"""Fixtures of the reliability tests: a watchdog that turns a hang into a failure, fast
virtual dongles that are always closed, short host pauses, and a thread-leak check."""

from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kp_backend import emulator  # noqa: E402
from kp_backend.device import DeviceGroup  # noqa: E402

from _threads import fail_if_threads_outlive  # noqa: E402
from rel_helpers import LONG, kneron_threads  # noqa: E402

#: Per-test limit: a test still running after this is dumped and the process exits, so a
#: hang fails CI instead of stalling it (tests also bound every wait on their own).
WATCHDOG_S = float(os.environ.get("KP_REL_WATCHDOG_S", 3600 if LONG else 90))

@pytest.fixture(autouse=True)
def watchdog():
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _fast_host(monkeypatch):
    # The provider is available when virtual dongles are configured (docs/kneron_provider.md).
    monkeypatch.setenv("KP_VIRTUAL_DEVICES", "KL520:fast")
    # Host pauses after a reboot are for real hardware; they change no bytes.
    monkeypatch.setattr(DeviceGroup, "reconnect_pause_s", 0.0)
    monkeypatch.setattr(DeviceGroup, "search_interval_s", 0.01)


@pytest.fixture(autouse=True)
def no_thread_leak():
    """Every provider and emulator thread a test started is gone after its teardown."""
    before = set(kneron_threads())
    yield
    fail_if_threads_outlive(kneron_threads, before, "threads")


@pytest.fixture
def emu():
    """``emu(*dongle_kwargs)`` -> ``(backend, [dongles])``: fast virtual dongles, closed after."""
    made = []

    def make(*specs: dict | str):
        dongles = []
        for spec in specs or ("KL520",):
            kw = {"chip": spec} if isinstance(spec, str) else dict(spec)
            kw.setdefault("timing", "fast")
            dongles.append(emulator.VirtualDongle(**kw))
        backend = emulator.VirtualUsbBackend(dongles)
        made.append(backend)
        return backend, dongles

    yield make
    for backend in made:
        backend.close()


