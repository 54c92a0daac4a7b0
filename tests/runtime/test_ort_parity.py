"""Parity with onnxruntime 1.32 (a test peer only) on the same models.

Descriptions (inputs, outputs, metadata), outputs (allclose) and, for the common
input mistakes, the exception class names and message texts must be equal.
"""

from __future__ import annotations

import numpy as np
import pytest

import kp_runtime

from .models import ALL, sample_feed

ort = pytest.importorskip("onnxruntime")


def _sessions(name: str, tmp_path):
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(ALL[name]().SerializeToString())
    theirs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = kp_runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return theirs, ours


def _describe(args):
    return [(a.name, a.type, a.shape, str(a)) for a in args]


@pytest.mark.parametrize("name", sorted(ALL))
def test_description_and_outputs_match(name, tmp_path):
    theirs, ours = _sessions(name, tmp_path)
    assert _describe(ours.get_inputs()) == _describe(theirs.get_inputs())
    assert _describe(ours.get_outputs()) == _describe(theirs.get_outputs())
    assert _describe(ours.get_overridable_initializers()) == _describe(
        theirs.get_overridable_initializers()
    )
    assert ours.get_providers() == theirs.get_providers()
    assert ours.get_provider_options() == theirs.get_provider_options()
    for seed in range(3):
        feed = sample_feed(name, np.random.default_rng(seed))
        expected = theirs.run(None, feed)
        got = ours.run(None, feed)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.dtype == e.dtype and g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    # Selecting outputs by name, in a different order.
    names = [o.name for o in theirs.get_outputs()][::-1]
    for g, e in zip(ours.run(names, feed), theirs.run(names, feed)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_metadata_matches(tmp_path):
    theirs, ours = _sessions("overridable", tmp_path)
    fields = ["producer_name", "graph_name", "domain", "description", "graph_description",
              "version", "custom_metadata_map"]
    assert {f: getattr(ours.get_modelmeta(), f) for f in fields} == {
        f: getattr(theirs.get_modelmeta(), f) for f in fields
    }


def test_overridable_initializer_can_be_fed(tmp_path):
    theirs, ours = _sessions("overridable", tmp_path)
    feed = {"x": np.ones((2, 2), np.float32), "s": np.array([5.0, 7.0], np.float32)}
    np.testing.assert_array_equal(ours.run(None, feed)[0], theirs.run(None, feed)[0])


def _bad_feeds():
    f = np.ones((3, 4), np.float32)
    return {
        "missing": ("mlp", {}, None),
        "wrong_name": ("mlp", {"xx": f}, None),
        "extra_name": ("mlp", {"x": f, "zz": f}, None),
        "dtype": ("mlp", {"x": f.astype(np.float64)}, None),
        "dtype_int": ("two_inputs", {"table": np.ones((5, 2), np.float32), "idx": np.array([1], np.int32)}, None),
        "dtype_string": ("mlp", {"x": np.array([["a"] * 4])}, None),
        "rank": ("mlp", {"x": np.ones((3, 4, 1), np.float32)}, None),
        "rank0": ("conv", {"x": np.ones((), np.float32)}, None),
        "fixed_dim": ("mlp", {"x": np.ones((3, 5), np.float32)}, None),
        "several_dims": ("conv", {"x": np.ones((2, 3, 9, 8), np.float32)}, None),
        "bad_list": ("mlp", {"x": [[1.0, 2.0], [3.0]]}, None),
        "python_scalar": ("mlp", {"x": 1.5}, None),
        "output_name": ("mlp", {"x": f}, ["nope"]),
        "second_output_name": ("two_inputs", sample_feed("two_inputs"), ["rows", "nope"]),
        "bool_for_double": ("logic", {"cond": np.array([True, False, True]), "a": np.array([True] * 3)}, None),
    }


@pytest.mark.parametrize("case", sorted(_bad_feeds()))
def test_bad_inputs_raise_like_onnxruntime(case, tmp_path):
    name, feed, output_names = _bad_feeds()[case]
    theirs, ours = _sessions(name, tmp_path)
    with pytest.raises(Exception) as expected:
        theirs.run(output_names, feed)
    with pytest.raises(Exception) as got:
        ours.run(output_names, feed)
    assert type(got.value).__name__ == type(expected.value).__name__
    assert str(got.value) == str(expected.value)
    if type(expected.value).__name__ == "InvalidArgument":
        from kp_runtime.capi.onnxruntime_pybind11_state import InvalidArgument

        assert isinstance(got.value, InvalidArgument)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize(
    "value",
    [
        pytest.param([[1, 2, 3, 4]] * 3, id="int-list"),
        pytest.param([[0.5, 2.0, 3.0, 4.0]] * 3, id="float-list"),
        pytest.param(np.ones((4, 3), np.float32).T, id="non-contiguous"),
        pytest.param(np.arange(12, dtype=">f4").reshape(3, 4), id="big-endian"),
        pytest.param(np.full((3, 4), np.nan, np.float32), id="nan"),
        pytest.param(np.full((3, 4), np.inf, np.float32), id="inf"),
        pytest.param(np.zeros((0, 4), np.float32), id="empty-batch"),
    ],
)
def test_accepted_inputs_match(value, tmp_path):
    theirs, ours = _sessions("mlp", tmp_path)
    peer_value = value
    if isinstance(value, np.ndarray) and not value.dtype.isnative:
        # onnxruntime 1.32 reads big-endian buffers as if native (wrong numbers); we
        # convert, so compare with onnxruntime on the native-order equivalent.
        peer_value = value.astype(value.dtype.newbyteorder("="))
    np.testing.assert_array_equal(ours.run(None, {"x": value})[0], theirs.run(None, {"x": peer_value})[0])


def test_terminate_flag_matches(tmp_path):
    theirs, ours = _sessions("mlp", tmp_path)
    options = {}
    for module, session in (("theirs", theirs), ("ours", ours)):
        run_options = (ort if module == "theirs" else kp_runtime).RunOptions()
        run_options.terminate = True
        with pytest.raises(Exception) as info:
            session.run(None, sample_feed("mlp"), run_options)
        options[module] = (type(info.value).__name__, str(info.value))
    assert options["ours"] == options["theirs"]


@pytest.mark.parametrize("kind", ["missing_file", "garbage_file", "garbage_bytes", "bad_type"])
def test_load_errors_match(kind, tmp_path):
    if kind == "missing_file":
        source = str(tmp_path / "absent.onnx")
    elif kind == "garbage_file":
        source = str(tmp_path / "garbage.onnx")
        (tmp_path / "garbage.onnx").write_bytes(b"\x00garbage\xff")
    elif kind == "garbage_bytes":
        source = b"\x00garbage\xff"
    else:
        source = 42
    with pytest.raises(Exception) as expected:
        ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    with pytest.raises(Exception) as got:
        kp_runtime.InferenceSession(source, providers=["CPUExecutionProvider"])
    assert (type(got.value).__name__, str(got.value)) == (type(expected.value).__name__, str(expected.value))


def test_options_defaults_match():
    ours, theirs = kp_runtime.SessionOptions(), ort.SessionOptions()
    for attr in ["enable_cpu_mem_arena", "enable_mem_pattern", "enable_mem_reuse", "enable_profiling",
                 "profile_file_prefix", "optimized_model_filepath", "logid", "log_severity_level",
                 "log_verbosity_level", "intra_op_num_threads", "inter_op_num_threads",
                 "use_deterministic_compute", "use_per_session_threads"]:
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    for attr in ["execution_mode", "execution_order", "graph_optimization_level"]:
        assert int(getattr(ours, attr)) == int(getattr(theirs, attr)), attr
        assert getattr(ours, attr).name == getattr(theirs, attr).name, attr
    for ro_attr in ["log_severity_level", "log_verbosity_level", "logid", "only_execute_path_to_fetches", "terminate"]:
        assert getattr(kp_runtime.RunOptions(), ro_attr) == getattr(ort.RunOptions(), ro_attr)
    for obj_ours, obj_theirs, method in [
        (ours, theirs, "get_session_config_entry"),
        (kp_runtime.RunOptions(), ort.RunOptions(), "get_run_config_entry"),
    ]:
        with pytest.raises(RuntimeError) as a:
            getattr(obj_ours, method)("absent.key")
        with pytest.raises(RuntimeError) as b:
            getattr(obj_theirs, method)("absent.key")
        assert str(a.value) == str(b.value)


def test_run_async_callback_shape_matches(tmp_path):
    import threading

    theirs, ours = _sessions("mlp", tmp_path)
    feed = sample_feed("mlp")
    results = {}
    for label, session in (("theirs", theirs), ("ours", ours)):
        done = threading.Event()

        def callback(outputs, user_data, err, label=label, done=done):
            results[label] = (outputs, user_data, err)
            done.set()

        assert session.run_async(None, feed, callback, {"tag": label}) is None
        assert done.wait(30)
    (o_out, o_data, o_err), (t_out, t_data, t_err) = results["ours"], results["theirs"]
    assert (o_err, t_err) == ("", "")
    assert o_data == {"tag": "ours"} and t_data == {"tag": "theirs"}
    np.testing.assert_allclose(o_out[0], t_out[0], rtol=1e-6)


def test_error_classes_mirror_onnxruntime():
    from onnxruntime.capi import onnxruntime_pybind11_state as theirs

    from kp_runtime.capi import onnxruntime_pybind11_state as ours

    names = ["Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
             "InvalidProtobuf", "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail",
             "ModelLoadCanceled", "ModelRequiresCompilation", "NotFound"]
    for name in names:
        theirs_cls, ours_cls = getattr(theirs, name), getattr(ours, name)
        assert ours_cls.__name__ == theirs_cls.__name__
        # Like onnxruntime's, not ValueError/RuntimeError subclasses (except clauses keep meaning).
        assert not issubclass(ours_cls, (ValueError, RuntimeError)), name
