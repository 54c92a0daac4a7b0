from __future__ import annotations

import pytest

from kp_backend.device import DeviceGroup as LowGroup


@pytest.fixture
def short_pauses(monkeypatch):
    """Host pauses after reboots / between searches, shortened (no byte changes)."""
    monkeypatch.setattr(LowGroup, "reconnect_pause_s", 0.02)
    monkeypatch.setattr(LowGroup, "search_interval_s", 0.01)


@pytest.fixture
def virtual(short_pauses):
    """``virtual(*dongle_kwargs)`` -> a VirtualUsbBackend with fast timing, closed after."""
    from kp_backend.emulator import VirtualDongle, VirtualUsbBackend

    made = []

    def make(*specs: dict | str):
        dongles = []
        for spec in specs:
            kw = {"chip": spec} if isinstance(spec, str) else dict(spec)
            kw.setdefault("timing", "fast")
            dongles.append(VirtualDongle(**kw))
        backend = VirtualUsbBackend(dongles)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
