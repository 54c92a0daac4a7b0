"""ONNX's own backend test suite (node tests shipped with ``onnx``) on the CPU provider.

The suite runs through ``onnx.backend.test.BackendTest`` with our
``kp_runtime.onnx_backend.KpRuntimeBackend``, and the same suite with a plain
``onnx.reference.ReferenceEvaluator`` backend; the target is that every node
test the reference evaluator passes also passes through kp_runtime.

By default a deterministic selection of about a third of the node tests runs
(CI budget); ``KP_FULL_ONNX_SUITE=1`` runs all of them and prints the figures
written into ``docs/conformance.md``.
"""

from __future__ import annotations

import io
import os
import unittest
import warnings
import zlib

import numpy as np
import pytest
from onnx.backend.base import Backend, BackendRep
from onnx.backend.test import BackendTest
from onnx.reference import ReferenceEvaluator

from kp_runtime.onnx_backend import KpRuntimeBackend

FULL = os.environ.get("KP_FULL_ONNX_SUITE", "") not in ("", "0")
NODE_CASE = "OnnxBackendNodeModelTest"


class _ReferenceRep(BackendRep):
    def __init__(self, model):
        self._names = [i.name for i in model.graph.input]
        self._evaluator = ReferenceEvaluator(model)

    def run(self, inputs, **kwargs):
        return self._evaluator.run(None, dict(zip(self._names, inputs)))


class ReferenceBackend(Backend):
    """onnx.reference used directly: the yardstick."""

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        return _ReferenceRep(model)

    @classmethod
    def supports_device(cls, device):
        return device == "CPU"


def _selected(name: str) -> bool:
    return FULL or zlib.crc32(name.encode()) % 3 == 0


def _run_suite(backend) -> tuple[set[str], set[str], dict[str, str]]:
    """Run the node tests (CPU) that :func:`_selected` picks; return (passed, ran, failures)."""
    case = BackendTest(backend, __name__).test_cases[NODE_CASE]
    loader = unittest.TestLoader()
    names = [n for n in loader.getTestCaseNames(case) if n.endswith("_cpu") and _selected(n)]
    suite = unittest.TestSuite(case(n) for n in names)
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    failed = {t.id().rsplit(".", 1)[1]: text for t, text in result.failures + result.errors}
    skipped = {t.id().rsplit(".", 1)[1] for t, _ in result.skipped}
    ran = set(names) - skipped
    return ran - set(failed), ran, failed


@pytest.mark.slow
def test_node_tests_pass_wherever_the_reference_passes():
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        ours, ran, our_failures = _run_suite(KpRuntimeBackend)
        reference, _, _ = _run_suite(ReferenceBackend)
    assert len(ran) > (1500 if FULL else 400), f"only {len(ran)} node tests ran"
    regressions = sorted(reference - ours)
    details = "\n".join(f"{n}: {our_failures[n].strip().splitlines()[-1]}" for n in regressions[:10])
    assert not regressions, f"{len(regressions)} node tests pass on onnx.reference but not here:\n{details}"
    print(
        f"\nONNX node tests ({'full' if FULL else 'selection'}): kp_runtime CPU passes {len(ours)} "
        f"of {len(ran)}; onnx.reference passes {len(reference)}"
    )
