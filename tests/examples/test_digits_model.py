"""The committed digits example model and its data files (``examples/digits``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

DIGITS_DIR = Path(__file__).resolve().parents[2] / "examples" / "digits"
MAX_DATA_BYTES = 100_000


def _load_digits_data():
    path = DIGITS_DIR / "digits_data.py"
    spec = importlib.util.spec_from_file_location("_examples_digits_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dd = _load_digits_data()


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return onnx.load(dd.MODEL_PATH)


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    return dd.load_test_set()


def _ort_logits(model_path: Path, feeds: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run([dd.OUTPUT_NAME], {dd.INPUT_NAME: x})[0] for x in feeds])


# ---------------------------------------------------------------- the ONNX file


def test_model_passes_checker_with_fixed_batch_io(model):
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version <= 9, "onnx 1.15 / onnxruntime 1.17 read IR versions up to 9"
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 13)}
    (inp,), (out,) = model.graph.input, model.graph.output
    def sig(v: onnx.ValueInfoProto) -> tuple:
        tensor = v.type.tensor_type
        return v.name, [d.dim_value for d in tensor.shape.dim], tensor.elem_type

    assert sig(inp) == ("input", [1, 1, 8, 8], onnx.TensorProto.FLOAT)
    assert sig(out) == ("logits", [1, 10], onnx.TensorProto.FLOAT)
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["Conv", "Relu", "MaxPool", "Conv", "Relu", "Flatten", "Gemm"]
    assert dd.MODEL_PATH.stat().st_size < 32_000


def test_model_metadata_names_dataset_and_accuracy(model, test_set):
    props = {p.key: p.value for p in model.metadata_props}
    assert "load_digits" in props["dataset"] and "CC BY 4.0" in props["dataset"]
    assert f"{len(test_set[1])} test" in props["split"]
    assert 0.95 <= float(props["test_accuracy"]) <= 1.0
    assert model.producer_name and "radix 8" in model.doc_string


# ---------------------------------------------------------------- accuracy on both runtimes


def test_accuracy_onnxruntime_and_reference_agree(model, test_set):
    images, labels = test_set
    feeds = dd.to_model_input(images)
    ort_logits = _ort_logits(dd.MODEL_PATH, feeds)
    ref = ReferenceEvaluator(model)
    ref_logits = np.concatenate([ref.run([dd.OUTPUT_NAME], {dd.INPUT_NAME: x})[0] for x in feeds])
    assert ort_logits.shape == ref_logits.shape == (len(labels), 10)

    ort_top1, ref_top1 = ort_logits.argmax(axis=1), ref_logits.argmax(axis=1)
    ort_acc, ref_acc = (ort_top1 == labels).mean(), (ref_top1 == labels).mean()
    assert ort_acc >= 0.95 and ref_acc >= 0.95, (ort_acc, ref_acc)
    assert (ort_top1 == ref_top1).mean() >= 0.99
    np.testing.assert_allclose(ort_logits, ref_logits, rtol=1e-4, atol=1e-4)
    recorded = float({p.key: p.value for p in model.metadata_props}["test_accuracy"])
    assert abs(ort_acc - recorded) <= 0.01, "the model's recorded accuracy is stale"


# ---------------------------------------------------------------- data files


def test_data_files_small_and_well_formed(test_set):
    images, labels = test_set
    for path in (dd.TEST_SET_PATH, dd.CALIBRATION_PATH):
        assert path.stat().st_size < MAX_DATA_BYTES, path
    assert images.dtype == np.uint8 and images.shape == (len(labels), 8, 8) and len(labels) >= 300
    assert labels.dtype == np.int64 and np.array_equal(np.unique(labels), np.arange(10))
    calib = dd.load_calibration()
    assert calib.dtype == np.float32 and calib.shape[1:] == (1, 1, 8, 8) and 50 <= len(calib) <= 200


def _all_levels() -> np.ndarray:
    """``encode_pixels`` of every digits value: ``[17, 8, 8]``, image i filled with value i."""
    return dd.encode_pixels(np.repeat(np.arange(17), 64).reshape(17, 64))


def test_data_values_lie_on_the_encoding_grid(test_set):
    grid = set(_all_levels()[:, 0, 0].tolist())
    assert len(grid) == 17
    assert set(np.unique(test_set[0]).tolist()) <= grid
    calib_u = dd.from_model_input(dd.load_calibration())  # raises if any value is off u/256 - 0.5
    assert set(np.unique(calib_u).tolist()) <= grid
    assert len({u.tobytes() for u in calib_u}) == len(calib_u), "calibration samples repeat"


# ---------------------------------------------------------------- the encoding


def test_encode_pixels_is_rounded_255_over_16():
    x = np.arange(17)
    u = _all_levels()
    assert u.dtype == np.uint8 and u.shape == (17, 8, 8)
    assert np.array_equal(u, np.broadcast_to(u[:, :1, :1], u.shape))
    assert np.array_equal(u[:, 0, 0], np.round(x * 255 / 16))
    assert (u[0, 0, 0], u[8, 0, 0], u[16, 0, 0]) == (0, 128, 255)


def test_model_input_is_kneron_normalisation_radix_8_and_round_trips():
    u = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    x = dd.to_model_input(u)
    assert x.dtype == np.float32 and x.shape == (4, 1, 1, 8, 8)
    # the device with a RAW8 image and KP_NORMALIZE_KNERON: int8 p - 128, read with radix 8
    npu_int8 = (u.astype(np.int16) - 128).astype(np.int8)
    assert np.array_equal(x.reshape(u.shape), npu_int8.astype(np.float32) / 256)
    assert np.array_equal(x.reshape(u.shape), u / 256 - 0.5)
    # the bypass path quantises the float with radix 8: lossless, same int8
    assert np.array_equal(np.round(x.reshape(u.shape) * 256).astype(np.int8), npu_int8)
    assert np.array_equal(dd.from_model_input(x), u)
    assert dd.to_model_input(u[0]).shape == (1, 1, 1, 8, 8)


@pytest.mark.parametrize(
    ("call", "arg", "error", "match"),
    [
        ("to_model_input", np.zeros((2, 8, 8), np.int64), TypeError, "uint8"),
        ("to_model_input", np.zeros((2, 8, 8), np.float32), TypeError, "uint8"),
        ("to_model_input", np.zeros((2, 64), np.uint8), ValueError, r"\[N, 8, 8\]"),
        ("from_model_input", np.full((1, 8, 8), 0.001, np.float32), ValueError, "u/256 - 0.5"),
        ("from_model_input", np.full((1, 8, 8), 0.75, np.float32), ValueError, "0..255"),
        ("from_model_input", np.zeros((1, 8, 8), np.uint8), TypeError, "float"),
        ("from_model_input", np.zeros((1, 4, 4), np.float32), ValueError, r"\[\.\.\., 8, 8\]"),
        ("encode_pixels", np.full((1, 64), 17), ValueError, "0..16"),
        ("encode_pixels", np.full((1, 64), 2.5), ValueError, "0..16"),
        ("encode_pixels", np.full((1, 64), "a"), TypeError, "0..16"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, arg, error, match):
    with pytest.raises(error, match=match):
        getattr(dd, call)(arg)


def test_loaders_report_missing_or_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.py"):
        dd.load_test_set(tmp_path / "absent.npz")
    np.savez(tmp_path / "wrong.npz", images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="missing \\['labels'\\]"):
        dd.load_test_set(tmp_path / "wrong.npz")
    images = np.zeros((2, 8, 8), np.uint8)
    np.savez(tmp_path / "wrong_dtype.npz", images=images, labels=np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="int64"):
        dd.load_test_set(tmp_path / "wrong_dtype.npz")
    np.savez(tmp_path / "calib.npz", input=np.zeros((3, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\[S, 1, 1, 8, 8\]"):
        dd.load_calibration(tmp_path / "calib.npz")


# ---------------------------------------------------------------- re-training


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("KP_SLOW") != "1", reason="re-training is opt-in: set KP_SLOW=1")
def test_training_reproduces_the_committed_model(tmp_path, model, test_set):
    pytest.importorskip("sklearn", reason="train.py needs scikit-learn (developer tool, not a dep)")
    result = subprocess.run(
        [sys.executable, str(DIGITS_DIR / "train.py"), "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]

    images, labels = dd.load_test_set(tmp_path / dd.TEST_SET_PATH.name)
    assert np.array_equal(images, test_set[0]) and np.array_equal(labels, test_set[1])
    new_calibration = dd.load_calibration(tmp_path / dd.CALIBRATION_PATH.name)
    assert np.array_equal(new_calibration, dd.load_calibration())
    new_path = tmp_path / dd.MODEL_PATH.name
    onnx.checker.check_model(onnx.load(new_path), full_check=True)
    feeds = dd.to_model_input(images)
    new_acc = (_ort_logits(new_path, feeds).argmax(axis=1) == labels).mean()
    old_acc = (_ort_logits(dd.MODEL_PATH, feeds).argmax(axis=1) == labels).mean()
    assert abs(new_acc - old_acc) <= 0.01, (new_acc, old_acc)
