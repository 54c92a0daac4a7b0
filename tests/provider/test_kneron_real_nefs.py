"""The real NEFs of ../shared/models/nef (no ONNX twins: the virtual NPU's stand-in data),
single- and multi-model, KL520 and KL720, float and image inputs; a two-input model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from kp_runtime.errors import InvalidArgument
from kp_backend.provider.build_nef import build_nef

from kneron_helpers import kneron


def _nef(shared_dir, name):
    path = shared_dir / "models" / "nef" / name
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


def test_multi_model_needs_model_id_and_lists_ids_and_shapes(shared_dir, virtual):
    nef = _nef(shared_dir, "KL520/ssd_fd_lm_plus.nef")
    with pytest.raises(InvalidArgument) as info:
        kneron(nef, device=virtual())
    text = str(info.value)
    assert "model_id" in text and "[32, 5]" in text
    assert "[1, 3, 200, 200] 4W4C8B" in text and "[1, 10, 1, 1] 16W1C8B" in text
    with pytest.raises(InvalidArgument, match=r"model_id 7 is not in .* \[32, 5\]"):
        kneron(nef, device=virtual(), model_id=7)


def test_two_models_of_one_nef_share_the_dongle(shared_dir, virtual):
    nef = _nef(shared_dir, "KL520/ssd_fd_lm_plus.nef")
    device = virtual()
    rng = np.random.default_rng(1)
    with kneron(nef, device=device, model_id=32) as det, \
            kneron(nef, device=device, model_id=5) as lm:
        assert [o.shape for o in lm.get_outputs()] == [[1, 2, 1, 1], [1, 10, 1, 1]]
        assert len(det.get_outputs()) == 8 and det.get_inputs()[0].shape == [1, 3, 200, 200]
        x = rng.uniform(-0.5, 0.49, (1, 3, 56, 56)).astype(np.float32)
        first = lm.run(None, {"input_0": x})
        boxes = det.run(None, {"input_0": rng.uniform(-0.5, 0.49, (1, 3, 200, 200))
                               .astype(np.float32)})
        again = lm.run(None, {"input_0": x})
    assert [a.shape for a in boxes] == [tuple(o) for o in
                                        ([1, 6, 3, 3], [1, 8, 3, 3], [1, 6, 6, 6], [1, 8, 6, 6],
                                         [1, 6, 12, 12], [1, 8, 12, 12], [1, 6, 25, 25],
                                         [1, 8, 25, 25])]
    for a, b in zip(first, again):  # same NPU input, same (stand-in) output
        np.testing.assert_array_equal(a, b)


def test_kl720_multi_model(shared_dir, virtual):
    nef = _nef(shared_dir, "KL720/fdfr_hostlib.nef")
    with kneron(nef, device=virtual("KL720"), model_id=10) as s:
        (emb,) = s.run(None, {"input_0": np.zeros((1, 3, 112, 112), np.float32)})
    assert emb.shape == (1, 512, 1, 1) and emb.dtype == np.float32


def test_image_and_float_paths_agree_on_a_real_model(shared_dir, virtual):
    """mobilenet (KL520, radix 7): an RGB image with TENSOR_FLOW normalisation gives the NPU
    the same int8 input as the float tensor (p - 128) / 128, hence the same output."""
    nef = _nef(shared_dir, "KL520/mobilenet_hostlib.nef")
    device = virtual()
    rgb = np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    x = ((rgb.astype(np.float32) - 128) / 128).transpose(2, 0, 1)[None]
    with kneron(nef, device=device) as floats, \
            kneron(nef, device=device, input_mode="image", resize="false") as images:
        (a,) = floats.run(None, {"input_0": x})
        (b,) = images.run(None, {"input_0": rgb})  # normalize auto: radix 7 -> tensorflow
    assert a.shape == (1, 1000, 1, 1)
    np.testing.assert_array_equal(a, b)


def test_two_input_model_on_kl720(virtual, tmp_path):
    """Several input nodes: one header + data pair per input with one inference number."""
    graph = helper.make_graph(
        [helper.make_node("Sub", ["a", "b"], ["y"])], "sub",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 4, 4]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "sub.onnx")
    rng = np.random.default_rng(3)
    samples = {n: rng.uniform(-1, 1, (8, 1, 2, 4, 4)).astype(np.float32) for n in "ab"}
    (tmp_path / "sub.nef").write_bytes(build_nef(model, "KL720", samples))
    a, b = (rng.uniform(-1, 1, (1, 2, 4, 4)).astype(np.float32) for _ in "ab")
    with kneron(tmp_path / "sub.nef", device=virtual("KL720")) as s:
        assert [i.name for i in s.get_inputs()] == ["a", "b"]
        (y,) = s.run(None, {"a": a, "b": b})
        step = s.get_quantization()["outputs"]["y"].step
    assert np.max(np.abs(y - (a - b))) <= step + 2 / 128  # output LSB + input rounding
