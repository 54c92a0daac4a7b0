"""Cross-provider accuracy test of the digits example model (examples/digits/).

Every selected provider runs the digits CNN and is compared with the CPU
reference on real test images: element-wise within the default tolerances
(quantisation-aware on an NPU: a couple of LSBs of each output plus the
measured effect of input rounding), cosine similarity, and top-1 agreement.
Unavailable providers (no dongle plugged in) are reported as skipped with the
reason::

    python -m pytest examples/test_accuracy.py --kp-providers=kneron,cpu -rs

(add ``-p kp_runtime.pytest_plugin`` when kp-runtime is not installed, since the
plugin is normally loaded through its ``pytest11`` entry point; ``-s`` prints the
comparison tables).

A provider runs the model file whose suffix is one of its ``model_formats``
(``digits_cnn.onnx``, ``digits_cnn.nef``...); the test skips when there is none.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from kp_runtime import InferenceSession, plugins
from kp_runtime.testing import assert_sessions_close

DIGITS = Path(__file__).resolve().parent / "digits"
MODEL_STEM = "digits_cnn"
N_IMAGES = 60  # enough for a stable top-1 agreement, quick on the CPU reference


def _load_digits_data():
    path = DIGITS / "digits_data.py"
    if not path.is_file():
        pytest.skip(f"the digits example is absent ({path} not found)")
    spec = importlib.util.spec_from_file_location("digits_data", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def model_for(provider_name: str) -> Path:
    """The digits model file this provider can run (first of its formats that exists), or skip."""
    provider = plugins.find_provider(provider_name)
    candidates = [DIGITS / f"{MODEL_STEM}.{fmt}" for fmt in provider.model_formats]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    pytest.skip(f"no digits model for {provider.name}: none of {[c.name for c in candidates]} exists in {DIGITS}")


@pytest.fixture(scope="module")
def digits_feeds() -> list[dict[str, np.ndarray]]:
    data = _load_digits_data()
    if not data.TEST_SET_PATH.is_file():
        pytest.skip(f"the digits test set is absent ({data.TEST_SET_PATH} not found)")
    images, _labels = data.load_test_set()
    inputs = data.to_model_input(images[:N_IMAGES])
    return [{data.INPUT_NAME: x} for x in inputs]


@pytest.fixture(scope="module")
def reference_session(kp_reference_provider: str) -> InferenceSession:
    return InferenceSession(model_for(kp_reference_provider), providers=[kp_reference_provider])


def test_matches_cpu_reference(kp_provider: str, reference_session: InferenceSession, digits_feeds) -> None:
    session = InferenceSession(model_for(kp_provider), providers=[kp_provider])
    report = assert_sessions_close(
        session,
        reference_session,
        digits_feeds,
        min_cosine=0.999,  # the logits point the same way on every image
        min_top1=0.97,  # at most ~1 image in 60 may change its predicted digit
    )
    print(report)
    logits = report["logits"]
    assert logits.feeds == len(digits_feeds)
