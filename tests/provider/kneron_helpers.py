"""Helpers shared by the Kneron provider tests."""

from __future__ import annotations

import sys
from pathlib import Path

import kp_runtime as ort
from kp_backend import emulator

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "examples" / "digits"
sys.path.insert(0, str(DIGITS))

import digits_data  # noqa: E402

__all__ = ["REPO", "DIGITS", "digits_data", "kneron", "dongles", "provider_session"]


def kneron(model, **options) -> ort.InferenceSession:
    """An InferenceSession on the Kneron provider with ``options``."""
    return ort.InferenceSession(str(model), providers=[("kneron", options)])


def dongles(device: str) -> list:
    """The VirtualDongle objects behind a ``virtual:SPEC`` device option."""
    return emulator.get_shared_virtual_backend(device.partition(":")[2]).dongles


def provider_session(session: ort.InferenceSession):
    """The KneronSession behind an InferenceSession (its devices, in_flight, counters)."""
    return session._psess
