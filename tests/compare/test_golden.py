from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from kp_runtime.compare import compare_to_golden, load_feeds, load_golden, random_feeds, save_golden
from kp_runtime.compare.golden import model_sha256
from kp_runtime.quantization import TensorQuantization

from .models import QuantizedSession, linear, save, session, weights


@pytest.fixture
def model_path(tmp_path):
    return save(linear(weights(), relu=True), tmp_path / "m.onnx")


def test_save_and_load_round_trip(tmp_path, model_path) -> None:
    sess = session(linear(weights(), relu=True))
    feeds = random_feeds(sess, 4, seed=3, shapes={"x": (2, 6)})
    progress = []
    golden = save_golden(sess, feeds, tmp_path / "g", model=model_path, progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (4, 4)
    meta = json.loads((tmp_path / "g" / "golden.json").read_text())
    assert meta["model"] == {"sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(), "name": "m.onnx"}
    assert meta["provider"] == "CPUExecutionProvider" and meta["feeds"] == 4
    assert [o["name"] for o in meta["outputs"]] == ["logits", "act"]
    assert meta["inputs"] == [{"name": "x", "type": "tensor(float)", "shape": ["N", 6]}]
    assert meta["modelmeta"]["producer_name"] == "kp-compare-tests"
    loaded = load_golden(tmp_path / "g")
    assert len(loaded) == 4 and len(golden) == 4
    np.testing.assert_array_equal(loaded.inputs_of(2)["x"], feeds[2]["x"])
    np.testing.assert_array_equal(loaded.outputs_of(2)["act"], sess.run(["act"], feeds[2])[0])
    assert not list((tmp_path / "g").glob("*.tmp"))
    with pytest.raises(IndexError):
        loaded.outputs_of(4)
    loaded.close()


def test_compare_against_golden(tmp_path, model_path) -> None:
    sess = session(linear(weights(), relu=True))
    save_golden(sess, random_feeds(sess, 3), tmp_path / "g", model=model_path)
    report = compare_to_golden(session(linear(weights(), relu=True)), tmp_path / "g", model=model_path)
    assert report.passed and report.feeds == 3 and report.b.label == "golden:CPUExecutionProvider"
    assert not any("hash differs" in n for n in report.notes)
    changed = save(linear(weights() * 1.01, relu=True), tmp_path / "changed.onnx")
    report = compare_to_golden(session(linear(weights() * 1.01, relu=True)), tmp_path / "g", model=changed, limit=2)
    assert not report.passed and report.feeds == 2
    assert any("hash differs" in n for n in report.notes)


def test_golden_keeps_the_recording_session_quantisation(tmp_path) -> None:
    w = weights()
    twin = QuantizedSession(
        session(linear(w)),
        {"x": TensorQuantization("x", 1 / 64)},
        {"logits": TensorQuantization("logits", 1 / 16, qmin=-128, qmax=127)},
    )
    golden = save_golden(twin, random_feeds(twin, 5, value_range=(-1, 1)), tmp_path / "npu")
    assert golden.quantization["outputs"]["logits"].step == 1 / 16
    # a float session checked against NPU outputs gets the quantisation-aware tolerance
    report = compare_to_golden(session(linear(w)), golden)
    assert report.passed, str(report)
    assert report["logits"].tolerance.source == "quantization" and report["logits"].input_effect > 0
    assert not compare_to_golden(session(linear(w)), golden, atol=1e-5).passed


def test_golden_errors(tmp_path, model_path) -> None:
    sess = session(linear(weights()))
    save_golden(sess, random_feeds(sess, 1), tmp_path / "g")
    with pytest.raises(FileExistsError, match="overwrite"):
        save_golden(sess, random_feeds(sess, 1), tmp_path / "g")
    assert len(save_golden(sess, random_feeds(sess, 2), tmp_path / "g", overwrite=True)) == 2
    with pytest.raises(ValueError, match="unknown output"):
        save_golden(sess, random_feeds(sess, 1), tmp_path / "h", output_names=["nope"])
    with pytest.raises(ValueError, match="must hold every input"):
        save_golden(sess, [{"y": np.ones((1, 6), np.float32)}], tmp_path / "h")
    with pytest.raises(ValueError, match="no feeds"):
        save_golden(sess, [], tmp_path / "h")
    assert not (tmp_path / "h" / "golden.json").exists() and not list((tmp_path / "h").glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="not a golden set"):
        load_golden(tmp_path / "h")
    (tmp_path / "g" / "golden.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a kp_runtime golden set"):
        load_golden(tmp_path / "g")


def test_replay_session_refuses_unrecorded_feeds(tmp_path) -> None:
    sess = session(linear(weights()))
    golden = save_golden(sess, random_feeds(sess, 2), tmp_path / "g")
    replay = golden.session()
    recorded = golden.feeds[1]
    np.testing.assert_array_equal(replay.run(None, recorded)[0], golden.outputs_of(1)["logits"])
    with pytest.raises(ValueError, match="not recorded"):
        replay.run(None, {"x": recorded["x"] + 1})
    with pytest.raises(ValueError, match="were not recorded"):
        replay.run(["act"], recorded)


def test_load_feeds_reads_a_golden_folder(tmp_path) -> None:
    sess = session(linear(weights()))
    feeds = random_feeds(sess, 3, seed=9)
    save_golden(sess, feeds, tmp_path / "g")
    loaded = load_feeds(tmp_path / "g", sess, limit=2)
    assert len(loaded) == 2
    np.testing.assert_array_equal(loaded[1]["x"], feeds[1]["x"])


def test_model_hash_sources(tmp_path, model_path) -> None:
    data = model_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert model_sha256(model=model_path) == digest == model_sha256(model=data)
    assert model_sha256(model=linear(weights(), relu=True)) == hashlib.sha256(linear(weights(), relu=True).SerializeToString()).hexdigest()
    import onnxruntime as ort

    from_path = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    assert model_sha256(from_path) == digest
    assert model_sha256(object()) is None
    with pytest.raises(TypeError):
        model_sha256(model=3.5)
