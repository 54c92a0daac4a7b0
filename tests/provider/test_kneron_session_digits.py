"""The digits model on virtual dongles through InferenceSession: float and image inputs,
the companion ONNX, outputs, quantisation, options that shape inputs and outputs."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import kp_runtime as ort
from kp_runtime.errors import DeviceError, InvalidArgument, InvalidGraph, NoSuchFile
from kp_runtime.quantization import TensorQuantization

from kp_backend.provider.build_nef import build_nef

from kneron_helpers import DIGITS, kneron, provider_session


def test_signature_from_the_companion(digits, virtual):
    with kneron(digits["nef"], device=virtual()) as s:
        assert s.get_providers() == ["KneronExecutionProvider"]
        assert [str(i) for i in s.get_inputs()] == [
            "NodeArg(name='input', type='tensor(float)', shape=[1, 1, 8, 8])"]
        assert [str(o) for o in s.get_outputs()] == [
            "NodeArg(name='logits', type='tensor(float)', shape=[1, 10])"]
        meta = s.get_modelmeta()
        assert meta.custom_metadata_map["kneron.model_id"] == "32768"
        assert "VIRTUAL DONGLE ONLY" in meta.custom_metadata_map["kneron.toolchain_version"]


def test_float_inputs_match_the_quantised_model(digits, virtual, cpu_logits):
    with kneron(digits["nef"], device=virtual()) as s:
        quant = s.get_quantization()
        step = quant["outputs"]["logits"].step
        got = np.concatenate([s.run(["logits"], {"input": x})[0] for x in digits["x"][:40]])
    assert got.shape == (40, 10) and got.dtype == np.float32
    # The virtual NPU runs the ONNX twin on the int8 input and quantises the logits.
    assert np.max(np.abs(got - cpu_logits)) <= 2 * step
    assert np.mean(got.argmax(1) == cpu_logits.argmax(1)) >= 0.95
    assert np.allclose(got / step, np.round(got / step), atol=1e-3)  # on the output grid


def test_quantization_info(digits, virtual):
    with kneron(digits["nef"], device=virtual()) as s:
        q = s.get_quantization()
    assert isinstance(q["inputs"]["input"], TensorQuantization)
    assert q["inputs"]["input"].step == 1 / 256
    out = q["outputs"]["logits"]
    assert (out.qmin, out.qmax) == (-128, 127) and 0 < out.step < 1


def test_image_inputs_equal_float_inputs(digits, virtual):
    device = virtual()
    with kneron(digits["nef"], device=device) as floats, \
            kneron(digits["nef"], device=device, input_mode="image") as images:
        assert [str(i) for i in images.get_inputs()] == [
            "NodeArg(name='input', type='tensor(uint8)', shape=[])"]
        for i in range(12):
            (a,) = floats.run(None, {"input": digits["x"][i]})
            (b,) = images.run(None, {"input": digits["images"][i]})  # RAW8, KNERON norm
            np.testing.assert_array_equal(a, b)
        # H x W x 1 and 1 x H x W x 1 arrays are the same image
        (c,) = images.run(None, {"input": digits["images"][3][None, :, :, None]})
        (d,) = floats.run(None, {"input": digits["x"][3]})
        np.testing.assert_array_equal(c, d)


def test_auto_input_mode_takes_floats_and_uint8_images(digits, virtual):
    with kneron(digits["nef"], device=virtual()) as s:
        assert [str(i) for i in s.get_inputs()] == [
            "NodeArg(name='input', type='tensor(float)', shape=[1, 1, 8, 8])"]
        (a,) = s.run(None, {"input": digits["x"][2]})          # job 17 (bypass)
        (b,) = s.run(None, {"input": digits["images"][2]})     # job 10 (device pre-processing)
        np.testing.assert_array_equal(a, b)
        # neither form: onnxruntime's message, about the input's own type
        with pytest.raises(InvalidArgument, match=r"Actual: \(tensor\(int32\)\) , expected: "
                                                  r"\(tensor\(float\)\)"):
            s.run(None, {"input": digits["images"][2].astype(np.int32)})


def test_image_options(digits, virtual):
    device = virtual()
    img = digits["images"][5]
    big = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)  # 16 x 16
    with kneron(digits["nef"], device=device, input_mode="image", resize="true",
                padding="symmetric", normalize="kneron", image_format="RAW8") as s:
        (y,) = s.run(None, {"input": big})
        assert y.shape == (1, 10) and np.isfinite(y).all()
    with kneron(digits["nef"], device=device, input_mode="image", normalize="disable") as s:
        (raw,) = s.run(None, {"input": img})
    with kneron(digits["nef"], device=device, input_mode="image") as s:
        (norm,) = s.run(None, {"input": img})
    assert not np.array_equal(raw, norm)
    with kneron(digits["nef"], device=device, input_mode="image", resize="false") as s:
        with pytest.raises(DeviceError, match="107"):  # size must equal the model's
            s.run(None, {"input": big})
        with pytest.raises(InvalidArgument, match="channels"):
            s.run(None, {"input": np.zeros((8, 8, 2), np.uint8)})
    with kneron(digits["nef"], device=device, input_mode="image",
                image_format="RGBA8888") as s:
        with pytest.raises(InvalidArgument, match="RGBA8888"):
            s.run(None, {"input": img})


def test_output_names_and_channel_orderings(digits, virtual):
    device = virtual()
    x = digits["x"][7]
    with kneron(digits["nef"], device=device) as s:
        (ref,) = s.run(["logits"], {"input": x})
        with pytest.raises(InvalidArgument, match="Invalid output name:nope"):
            s.run(["nope"], {"input": x})
    for ordering, shape in (("CHW", (1, 10, 1, 1)), ("HCW", (1, 1, 10, 1)),
                            ("HWC", (1, 1, 1, 10)), ("DEFAULT", (1, 1, 10, 1))):
        with kneron(digits["nef"], device=device, channel_ordering=ordering) as s:
            assert s.get_outputs()[0].shape == list(shape)
            (y,) = s.run(None, {"input": x})
            assert y.shape == shape
            np.testing.assert_array_equal(y.reshape(1, 10), ref)


def test_validation_messages_are_the_shared_ones(digits, virtual):
    x = digits["x"][0]
    bad_feeds = [{"input": x[0]}, {"input": x.astype(np.float64)}, {"inp": x},
                 {"input": np.zeros((1, 1, 8, 9), np.float32)}, {"input": x, "zz": x}]
    with ort.InferenceSession(str(digits["onnx"]), providers=["cpu"]) as cpu, \
            kneron(digits["nef"], device=virtual()) as npu:
        for feed in bad_feeds:
            with pytest.raises(Exception) as want:
                cpu.run(None, feed)
            with pytest.raises(type(want.value)) as got:
                npu.run(None, feed)
            assert str(got.value) == str(want.value)


def test_without_companion_names_come_from_the_nef(digits, virtual, tmp_path):
    nef = tmp_path / "alone.nef"
    shutil.copy(digits["nef"], nef)
    with kneron(nef, device=virtual()) as s:
        assert [(a.name, a.shape) for a in s.get_inputs()] == [("input_0", [1, 1, 8, 8])]
        assert [(a.name, a.shape) for a in s.get_outputs()] == [("output_0", [1, 10, 1, 1])]
        (y,) = s.run(None, {"input_0": digits["x"][0]})
        assert y.shape == (1, 10, 1, 1)  # no twin: deterministic stand-in data
    with kneron(nef, device=virtual(), onnx=str(digits["onnx"])) as s:  # explicit companion
        assert s.get_outputs()[0].name == "logits"


def _other_model(in_shape, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], [name]) for name in outputs], "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(name, TensorProto.INT64, in_shape) for name in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_mismatched_companion_lists_every_disagreement(digits, virtual, tmp_path):
    bad = tmp_path / "bad.onnx"
    onnx.save(_other_model([1, 3, 8, 8], ["a", "b"]), bad)
    with pytest.raises(InvalidGraph) as info:
        kneron(digits["nef"], device=virtual(), onnx=str(bad))
    text = str(info.value)
    assert "input 0 'x' has ONNX shape [1, 3, 8, 8]" in text
    assert "2 output(s)" in text and "tensor(int64)" in text
    with pytest.raises(NoSuchFile, match="nope.onnx"):
        kneron(digits["nef"], device=virtual(), onnx=str(tmp_path / "nope.onnx"))


def test_input_modes(digits, virtual):
    device = virtual()
    with kneron(digits["nef"], device=device, input_mode="float") as s:
        with pytest.raises(InvalidArgument, match=r"Actual: \(tensor\(uint8\)\) , expected: "
                                                  r"\(tensor\(float\)\)"):
            s.run(None, {"input": digits["images"][0][None, None]})
    with kneron(digits["nef"], device=device) as s:  # auto: uint8 given to the provider
        psess = provider_session(s)
        (a,) = psess.run(["logits"], {"input": digits["images"][2]})
        (b,) = psess.run(["logits"], {"input": digits["x"][2]})
    np.testing.assert_array_equal(a, b)


def test_kl720_twin(digits, virtual, tmp_path, cpu_logits):
    nef = tmp_path / "digits720.nef"
    nef.write_bytes(build_nef(digits["onnx"], "KL720", DIGITS / "calibration.npz"))
    shutil.copy(digits["onnx"], tmp_path / "digits720.onnx")  # the companion beside it
    with kneron(nef, device=virtual("KL720")) as s:
        step = s.get_quantization()["outputs"]["logits"].step
        got = np.concatenate([y for (y,) in s.run_many({"input": x} for x in digits["x"][:20])])
    assert np.max(np.abs(got - cpu_logits[:20])) <= 2 * step
