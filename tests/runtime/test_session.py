"""InferenceSession behaviour on the CPU reference provider (no peer needed)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading

import numpy as np
import onnx
import pytest

import kp_runtime as ort
from kp_runtime.errors import RuntimeException

from .models import ALL, mlp, sample_feed, two_inputs


def _numpy_mlp(x: np.ndarray, model: onnx.ModelProto) -> np.ndarray:
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return np.maximum(x @ inits["W"] + inits["b"], 0)


@pytest.mark.parametrize("form", ["str", "pathlike", "bytes", "proto"])
def test_model_sources(form, tmp_path):
    model = mlp()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    source = {"str": str(path), "pathlike": path, "bytes": model.SerializeToString(), "proto": model}[form]
    session = ort.InferenceSession(source, providers=["cpu"])
    x = sample_feed("mlp")["x"]
    np.testing.assert_allclose(session.run(None, {"x": x})[0], _numpy_mlp(x, model), rtol=1e-5, atol=1e-6)


def test_output_selection_and_duplicates():
    session = ort.InferenceSession(two_inputs(), providers=["cpu"])
    feed = sample_feed("two_inputs")
    rows, idx1 = session.run(None, feed)
    np.testing.assert_array_equal(rows, feed["table"][feed["idx"]])
    np.testing.assert_array_equal(idx1, feed["idx"] + 1)
    only = session.run(["idx1"], feed)
    assert len(only) == 1 and np.array_equal(only[0], idx1)
    assert len(session.run([], feed)) == 2
    twice = session.run(["idx1", "idx1"], feed)
    assert len(twice) == 2


def test_submit_run_many_and_async_agree_with_run():
    session = ort.InferenceSession(mlp(), providers=["cpu"])
    rng = np.random.default_rng(5)
    feeds = [{"x": rng.standard_normal((i + 1, 4)).astype(np.float32)} for i in range(6)]
    expected = [session.run(None, f)[0] for f in feeds]
    futures = [session.submit(f) for f in feeds]
    for fut, exp in zip(futures, expected):
        np.testing.assert_array_equal(fut.result(timeout=30)[0], exp)
    many = list(session.run_many(iter(feeds)))
    assert len(many) == len(feeds)
    for got, exp in zip(many, expected):
        np.testing.assert_array_equal(got[0], exp)
    done = threading.Event()
    seen = {}

    def callback(results, user_data, err):
        seen.update(results=results, user_data=user_data, err=err, thread=threading.current_thread())
        done.set()

    session.run_async(["y"], feeds[0], callback, "token")
    assert done.wait(30)
    assert seen["err"] == "" and seen["user_data"] == "token"
    assert seen["thread"] is not threading.main_thread()
    np.testing.assert_array_equal(seen["results"][0], expected[0])


def test_validation_happens_before_dispatch():
    session = ort.InferenceSession(mlp(), providers=["cpu"])
    bad = {"x": np.ones((2, 4), np.float64)}
    with pytest.raises(ort.InvalidArgument):
        session.submit(bad)
    with pytest.raises(ort.InvalidArgument):
        session.run_async(None, bad, lambda *a: pytest.fail("callback must not run"))
    with pytest.raises(ort.InvalidArgument, match="Invalid output name:nope"):
        session.run_many([sample_feed("mlp")], ["nope"])
    results = session.run_many([sample_feed("mlp"), bad])
    assert len(next(results)) == 1
    with pytest.raises(ort.InvalidArgument, match="Unexpected input data type"):
        next(results)


def test_run_async_reports_provider_errors_through_callback():
    # A model whose run fails inside the evaluator: Gather with an out-of-range index.
    session = ort.InferenceSession(two_inputs(), providers=["cpu"])
    feed = {"table": np.ones((5, 2), np.float32), "idx": np.array([99], np.int64)}
    with pytest.raises(ort.Fail, match="CPUExecutionProvider"):
        session.run(None, feed)
    done = threading.Event()
    seen = {}
    session.run_async(None, feed, lambda r, u, e: (seen.update(r=r, e=e), done.set()))
    assert done.wait(30)
    assert seen["r"] == [] and "FAIL" in seen["e"]


def test_concurrent_runs_from_threads():
    session = ort.InferenceSession(mlp(), providers=["cpu"])
    feeds = [sample_feed("mlp", np.random.default_rng(i)) for i in range(16)]
    expected = [session.run(None, f)[0] for f in feeds]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda f: session.run(None, f)[0], feeds))
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_close_and_context_manager():
    with ort.InferenceSession(mlp(), providers=["cpu"]) as session:
        session.run(None, sample_feed("mlp"))
    with pytest.raises(RuntimeException, match="closed"):
        session.run(None, sample_feed("mlp"))
    session.close()  # idempotent
    assert session.get_inputs()[0].name == "x"  # description stays readable


def test_set_providers_recreates_session():
    session = ort.InferenceSession(mlp(), providers=["cpu"])
    session.set_providers(["CPUExecutionProvider"], [{"some_option": 1}])
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_provider_options() == {"CPUExecutionProvider": {"some_option": "1"}}
    session.run(None, sample_feed("mlp"))


def test_session_options_are_kept_and_providers_from_options():
    options = ort.SessionOptions()
    options.add_session_config_entry("session.custom", 12)
    options.add_provider("cpu", {"a": 1})
    session = ort.InferenceSession(mlp(), options)
    assert session.get_session_options() is options
    assert options.get_session_config_entry("session.custom") == "12"
    assert session.get_provider_options() == {"CPUExecutionProvider": {"a": "1"}}


def test_profiling_writes_chrome_trace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = "prof"
    session = ort.InferenceSession(mlp(), options, providers=["cpu"])
    for _ in range(3):
        session.run(None, sample_feed("mlp"))
    name = session.end_profiling()
    assert name.startswith("prof_") and name.endswith(".json")
    events = json.loads((tmp_path / name).read_text())
    runs = [e for e in events if e["name"] == "model_run"]
    assert len(runs) == 3
    assert all(e["cat"] == "Session" and e["ph"] == "X" and e["dur"] >= 0 for e in runs)
    assert runs[0]["args"]["provider"] == "CPUExecutionProvider"
    assert session.end_profiling() == ""  # stopped
    plain = ort.InferenceSession(mlp(), providers=["cpu"])
    assert plain.end_profiling() == ""
    assert os.listdir(tmp_path) == [name]


def test_metadata_and_overridable():
    session = ort.InferenceSession(ALL["overridable"](), providers=["cpu"])
    meta = session.get_modelmeta()
    assert (meta.producer_name, meta.domain, meta.version) == ("p", "kp.test", 7)
    assert meta.custom_metadata_map == {"author": "tests", "license": "none"}
    assert [str(a) for a in session.get_overridable_initializers()] == [
        "NodeArg(name='s', type='tensor(float)', shape=[2])"
    ]
    assert [a.name for a in session.get_inputs()] == ["x"]


def test_module_functions():
    assert "CPUExecutionProvider" in ort.get_available_providers()
    assert "CPUExecutionProvider" in ort.get_all_providers()
    assert ort.get_device() in ("CPU", "NPU")


def test_sequence_inputs_pass_through():
    from onnx import TensorProto as T
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("SequenceLength", ["s"], ["n"])], "seq",
        [helper.make_tensor_sequence_value_info("s", T.FLOAT, None)],
        [helper.make_tensor_value_info("n", T.INT64, [])],
    )
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), providers=["cpu"])
    assert session.get_inputs()[0].type == "seq(tensor(float))"
    assert int(session.run(None, {"s": [np.ones(2, np.float32)] * 3})[0]) == 3
    with pytest.raises(ort.InvalidArgument, match="received a tensor"):
        session.run(None, {"s": np.ones(2, np.float32)})


def test_set_default_logger_severity():
    import logging

    logger = logging.getLogger("kp_runtime")
    before = logger.level
    try:
        ort.set_default_logger_severity(3)
        assert logger.level == logging.ERROR
        for bad in (5, -1):
            with pytest.raises(RuntimeError, match="Invalid logging severity"):
                ort.set_default_logger_severity(bad)
    finally:
        logger.setLevel(before)


def test_onnx_backend_adapter_accepts_list_dict_and_single_array():
    from kp_runtime.onnx_backend import backend_for

    backend = backend_for("cpu")
    assert backend.supports_device("cpu") and not backend.supports_device("CUDA")
    x = sample_feed("mlp")["x"]
    rep = backend.prepare(mlp())
    expected = ort.InferenceSession(mlp(), providers=["cpu"]).run(None, {"x": x})[0]
    for inputs in ([x], {"x": x}, x):
        np.testing.assert_array_equal(rep.run(inputs)[0], expected)
    np.testing.assert_array_equal(backend.run_model(mlp(), [x])[0], expected)


def test_closing_from_the_async_callback_does_not_deadlock():
    session = ort.InferenceSession(mlp(), providers=["cpu"])
    done = threading.Event()
    errors = []

    def callback(results, user_data, err):
        try:
            session.close()
        except Exception as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)
        done.set()

    session.run_async(None, sample_feed("mlp"), callback)
    assert done.wait(30) and not errors
    with pytest.raises(RuntimeException):
        session.run(None, sample_feed("mlp"))
