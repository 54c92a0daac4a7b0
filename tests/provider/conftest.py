"""Fixtures of the Kneron provider tests: virtual dongles (fast timing) and the digits model.

Every test that opens dongles gets its own virtual-dongle spec (a unique KN number), so
faults, unplugs and loaded NEFs never leak into another test; the backends are closed at
teardown. Tests go through the real path: kp_runtime.InferenceSession -> the provider ->
device group -> pyusb -> the virtual dongle's pyusb backend.
"""

from __future__ import annotations

import numpy as np
import pytest

import kp_runtime as ort
from kp_backend.device import DeviceGroup

from kneron_helpers import DIGITS, digits_data

@pytest.fixture(autouse=True)
def _virtual_dongles(monkeypatch):
    # Sessions that name no device (and `providers=None` selection) find virtual dongles.
    monkeypatch.setenv("KP_VIRTUAL_DEVICES", "KL520:fast")
    # A second model load reboots the dongle; the host's 0.5 s pause is for real hardware.
    monkeypatch.setattr(DeviceGroup, "reconnect_pause_s", 0.0)
    monkeypatch.setattr(DeviceGroup, "search_interval_s", 0.01)


@pytest.fixture(scope="session")
def digits():
    images, labels = digits_data.load_test_set()
    return {"onnx": DIGITS / "digits_cnn.onnx", "nef": DIGITS / "digits_cnn.nef",
            "images": images, "labels": labels, "x": digits_data.to_model_input(images)}


@pytest.fixture(scope="session")
def cpu_logits(digits):
    with ort.InferenceSession(str(digits["onnx"]), providers=["cpu"]) as cpu:
        return np.concatenate([cpu.run(None, {"input": x})[0] for x in digits["x"][:40]])
