"""Pure NEF <-> ONNX mapping: shape agreement, permutations, quantisation steps."""

from __future__ import annotations

import numpy as np
import pytest

from kp_backend.nef.writer import tensor
from kp_backend.provider.io_map import TensorMap, match_shape, npu_dims


@pytest.mark.parametrize("onnx, nef, resolved", [
    ([1, 1000], [1, 1000, 1, 1], (1, 1000)),
    (["N", 1000], [1, 1000, 1, 1], (1, 1000)),
    ([1, 3, 224, 224], [1, 3, 224, 224], (1, 3, 224, 224)),
    (["batch", 3, None, 224], [1, 3, 224, 224], (1, 3, 224, 224)),
    ([1, 10, 1, 1], [1, 10], (1, 10, 1, 1)),
    ([1, 3, 224, 224], [1, 224, 224, 3], None),
    ([1, 1001], [1, 1000, 1, 1], None),
    ([2, 10], [1, 10, 1, 1], None),
])
def test_match_shape(onnx, nef, resolved):
    assert match_shape(onnx, nef) == resolved


def test_identity_mapping_reshapes():
    node = tensor([1, 10, 1, 1], "16W1C8B", radix=2, scale=1.5)
    tmap = TensorMap("logits", node, (1, 10))
    y = np.arange(10, dtype=np.float32).reshape(1, 10, 1, 1)
    assert tmap.from_npu(y).shape == (1, 10)
    np.testing.assert_array_equal(tmap.to_npu(tmap.from_npu(y)), y)
    assert npu_dims(node) == (1, 10, 1, 1)


def test_permutation_mapping():
    # ONNX NHWC [1, 4, 5, 3] laid out on the NPU as NCHW [1, 3, 4, 5]: perm (0, 3, 1, 2).
    node = tensor([1, 3, 4, 5], "4W4C8B", shape_onnx=[1, 4, 5, 3], permutation=[0, 3, 1, 2])
    tmap = TensorMap("x", node, (1, 4, 5, 3))
    x = np.random.default_rng(0).standard_normal((1, 4, 5, 3)).astype(np.float32)
    npu = tmap.to_npu(x)
    np.testing.assert_array_equal(npu, x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(tmap.from_npu(npu), x)


def test_quantization_per_tensor_and_per_channel():
    node = tensor([1, 10, 1, 1], "16W1C8B", radix=3, scale=1.25)
    q = TensorMap("y", node, (1, 10)).quantization()
    assert q.step == pytest.approx(1 / (1.25 * 8)) and (q.qmin, q.qmax) == (-128, 127)
    wide = TensorMap("w", tensor([1, 4, 2, 2], "8W1C16B", radix=[1, 2, 3, 4], scale=1.0),
                     (1, 4, 2, 2)).quantization()
    assert wide.axis == 1 and (wide.qmin, wide.qmax) == (-32768, 32767)
    np.testing.assert_allclose(wide.step, [0.5, 0.25, 0.125, 0.0625])
