"""``kp-runtime build-nef``: the quantisation rule, the file it writes, its CLI."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from kp_runtime.cli import main as cli
from kp_runtime.errors import InvalidArgument, InvalidGraph
from kp_backend.nef import read_nef
from kp_backend.npu_types import Chip, DataLayout
from kp_backend.provider.build_nef import (
    VIRTUAL_ONLY_NOTE, build_nef, calibration_ranges, input_quant, output_quant)

from kneron_helpers import DIGITS


@pytest.mark.parametrize("max_abs, radix", [(0.5, 8), (0.49609375, 8), (1.0, 7), (0.9, 7),
                                            (1.01, 6), (127.0, 0), (300.0, -2), (0.0, 7)])
def test_input_rule(max_abs, radix):
    q = input_quant(max_abs)
    assert (q.radix, q.scale) == (radix, 1.0)


@pytest.mark.parametrize("max_abs", [0.001, 0.37, 1.0, 2.5, 27.3, 127.0, 1000.0])
def test_output_rule_maps_the_range_onto_127(max_abs):
    q = output_quant(max_abs)
    assert 1.0 <= q.scale < 2.0
    # The (rounded-up) range maps to 127 exactly, the true range just below.
    assert 126.9 <= max_abs * q.scale * 2 ** q.radix <= 127.0 + 1e-9


def test_digits_nef_reads_back_with_the_rule(digits):
    nef = read_nef(build_nef(digits["onnx"], "KL520", DIGITS / "calibration.npz"))
    assert nef.target_chip is Chip.KL520 and VIRTUAL_ONLY_NOTE in nef.toolchain_version
    (model,) = nef.models
    (inp,), (out,) = model.inputs, model.outputs
    assert inp.shape_npu == (1, 1, 8, 8) and inp.data_layout is DataLayout.L4W4C8B
    assert inp.quantization.radix == (8,) and inp.quantization.scale == (1.0,)
    assert out.shape_npu == (1, 10, 1, 1) and out.data_layout is DataLayout.L16W1C8B
    _, (logits,) = calibration_ranges(onnx.load(digits["onnx"]),
                                      dict(np.load(DIGITS / "calibration.npz")))
    expected = output_quant(logits.max_abs)
    assert out.quantization.radix == (expected.radix,)
    assert out.quantization.scale[0] == pytest.approx(expected.scale, rel=1e-6)


def test_rebuilding_reproduces_the_committed_nef(digits, tmp_path):
    out = tmp_path / "digits_cnn.nef"
    assert cli(["build-nef", str(digits["onnx"]), "--chip", "KL520", "--calibration",
                str(DIGITS / "calibration.npz"), "-o", str(out)]) == 0
    assert out.read_bytes() == digits["nef"].read_bytes()


def test_kl720_build_and_inspect(digits, tmp_path, capsys):
    out = tmp_path / "d720.nef"
    assert cli(["build-nef", str(digits["onnx"]), "--chip", "kl720", "--calibration",
                str(DIGITS / "calibration.npz"), "-o", str(out), "--model-id", "7"]) == 0
    nef = read_nef(out)
    assert nef.target_chip is Chip.KL720 and [m.id for m in nef.models] == [7]
    assert cli(["inspect", str(out)]) == 0
    assert "VIRTUAL DONGLE ONLY" in capsys.readouterr().out


def test_help_says_virtual_only(capsys):
    assert cli(["build-nef", "--help"]) == 0
    assert "VIRTUAL dongle only" in " ".join(capsys.readouterr().out.split())


def _two_input_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "add",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 2, 2]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_multi_input_on_kl720_and_refused_on_kl520():
    samples = {"a": np.full((3, 1, 2, 2, 2), 0.25, np.float32),
               "b": np.full((3, 1, 2, 2, 2), -3.0, np.float32)}
    nef = read_nef(build_nef(_two_input_model(), "KL720", samples))
    assert [t.quantization.radix for t in nef.models[0].inputs] == [(9,), (5,)]
    with pytest.raises(InvalidGraph, match="exactly one input"):
        build_nef(_two_input_model(), "KL520", samples)


@pytest.mark.parametrize("samples, message", [
    ({"input": np.zeros((2, 1, 1, 8, 8), np.float32), "extra": np.zeros(3)}, "unexpected"),
    ({}, "missing"),
    ({"input": np.zeros((2, 1, 8, 8), np.float32)}, r"expected \[samples, 1, 1, 8, 8\]"),
    ({"input": np.zeros((0, 1, 1, 8, 8), np.float32)}, "samples"),
])
def test_bad_calibration(digits, samples, message):
    with pytest.raises(InvalidArgument, match=message):
        build_nef(digits["onnx"], "KL520", samples)


def test_bad_chip_and_file(digits, tmp_path):
    with pytest.raises(InvalidArgument, match="KL730"):
        build_nef(digits["onnx"], "KL730", DIGITS / "calibration.npz")
    bad = tmp_path / "c.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(InvalidArgument, match="npz"):
        build_nef(digits["onnx"], "KL520", bad)
