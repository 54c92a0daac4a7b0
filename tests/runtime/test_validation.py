"""Shared input validation (kp_runtime.validation) and NodeArg / type strings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper

from kp_runtime.errors import InvalidArgument
from kp_runtime.node_arg import NodeArg, array_type_string, numpy_dtype_for, type_string
from kp_runtime.validation import validate_feed, validate_output_names

X = NodeArg("x", "tensor(float)", ["batch", 3, None])


def test_nodearg_text_is_onnxruntimes():
    assert str(X) == repr(X) == "NodeArg(name='x', type='tensor(float)', shape=['batch', 3, None])"
    unknown = NodeArg("u", "tensor(int64)")
    assert unknown.shape == [] and not unknown.rank_known
    assert NodeArg("s", "tensor(int64)", []).rank_known
    assert NodeArg("a", "tensor(float)", (np.int64(2),)).shape == [2]
    with pytest.raises(TypeError, match="shape elements"):
        NodeArg("a", "tensor(float)", [2.5])


@pytest.mark.parametrize(
    ("type_proto", "expected"),
    [
        (helper.make_tensor_type_proto(T.FLOAT, [1]), "tensor(float)"),
        (helper.make_tensor_type_proto(T.DOUBLE, [1]), "tensor(double)"),
        (helper.make_tensor_type_proto(T.FLOAT16, [1]), "tensor(float16)"),
        (helper.make_tensor_type_proto(T.BFLOAT16, [1]), "tensor(bfloat16)"),
        (helper.make_tensor_type_proto(T.STRING, [1]), "tensor(string)"),
        (helper.make_tensor_type_proto(T.BOOL, [1]), "tensor(bool)"),
        (helper.make_sequence_type_proto(helper.make_tensor_type_proto(T.FLOAT, None)), "seq(tensor(float))"),
        (helper.make_map_type_proto(T.INT64, helper.make_tensor_type_proto(T.FLOAT, None)), "map(int64,tensor(float))"),
        (helper.make_optional_type_proto(helper.make_tensor_type_proto(T.UINT8, None)), "optional(tensor(uint8))"),
    ],
)
def test_type_strings(type_proto, expected):
    assert type_string(type_proto) == expected


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(np.float32, "tensor(float)"), (np.float64, "tensor(double)"), (np.int8, "tensor(int8)"),
     (np.uint64, "tensor(uint64)"), (np.bool_, "tensor(bool)"), (np.float16, "tensor(float16)"),
     ("<U3", "tensor(string)"), (object, "tensor(string)"), (np.complex64, "tensor(complex64)")],
)
def test_array_type_strings_round_trip(dtype, expected):
    assert array_type_string(np.zeros(1, dtype)) == expected
    if expected != "tensor(string)":
        assert numpy_dtype_for(expected) == np.dtype(dtype)


def test_missing_and_unknown_names():
    with pytest.raises(ValueError) as info:
        validate_feed([X], {"y": np.zeros((1, 3, 1), np.float32)})
    assert str(info.value) == "Required inputs (['x']) are missing from input feed (['y'])."
    with pytest.raises(InvalidArgument) as info:
        validate_feed([X], {"x": np.zeros((1, 3, 1), np.float32), "zz": 1})
    assert info.value.text == "Invalid input name: zz"
    optional = NodeArg("o", "optional(tensor(float))", None)
    assert set(validate_feed([X, optional], {"x": np.zeros((1, 3, 1), np.float32)})) == {"x"}
    extra = NodeArg("w", "tensor(float)", [3])
    out = validate_feed([X], {"x": np.zeros((1, 3, 1), np.float32), "w": [1, 2, 3]}, [extra])
    assert out["w"].dtype == np.float32


def test_type_checked_before_shape_and_texts():
    with pytest.raises(InvalidArgument) as info:
        validate_feed([X], {"x": np.zeros((2,), np.int32)})
    assert info.value.text == "Unexpected input data type. Actual: (tensor(int32)) , expected: (tensor(float))"
    with pytest.raises(InvalidArgument) as info:
        validate_feed([X], {"x": np.zeros((2,), np.float32)})
    assert info.value.text == (
        "Invalid rank for input: x Got: 1 Expected: 3 Please fix either the inputs/outputs or the model."
    )


@settings(max_examples=60, deadline=None)
@given(
    expected=st.lists(st.one_of(st.integers(0, 4), st.none(), st.just("d")), max_size=4),
    got=st.lists(st.integers(0, 4), max_size=4),
)
def test_shape_check_matches_rule(expected, got):
    """Only fixed (int) dims are checked; every mismatching index is listed, in order."""
    arg = NodeArg("t", "tensor(uint8)", expected)
    feed = {"t": np.zeros(got, np.uint8)}
    if len(got) != len(expected):
        with pytest.raises(InvalidArgument, match="Invalid rank for input: t"):
            validate_feed([arg], feed)
        return
    bad = [i for i, (g, e) in enumerate(zip(got, expected)) if isinstance(e, int) and g != e]
    if not bad:
        assert validate_feed([arg], feed)["t"].shape == tuple(got)
        return
    with pytest.raises(InvalidArgument) as info:
        validate_feed([arg], feed)
    lines = info.value.text.split("\n")
    assert lines[0] == "Got invalid dimensions for input: t for the following indices"
    assert lines[1:-1] == [f" index: {i} Got: {got[i]} Expected: {expected[i]}" for i in bad]
    assert lines[-1] == " Please fix either the inputs/outputs or the model."


def test_unknown_rank_is_not_checked():
    arg = NodeArg("t", "tensor(float)", None)
    assert validate_feed([arg], {"t": np.zeros((2, 3, 4), np.float32)})["t"].shape == (2, 3, 4)


def test_conversions():
    arg = NodeArg("t", "tensor(float)", [2, 2])
    view = np.arange(16, dtype=np.float32).reshape(4, 4)[::2, ::2]
    out = validate_feed([arg], {"t": view})["t"]
    assert out.flags.c_contiguous and np.array_equal(out, view)
    swapped = np.array([[1, 2], [3, 4]], dtype=">f4")
    out = validate_feed([arg], {"t": swapped})["t"]
    assert out.dtype.isnative and out.tolist() == [[1, 2], [3, 4]]
    out = validate_feed([arg], {"t": [[1, 2], [3, 4]]})["t"]
    assert out.dtype == np.float32
    nan = np.full((2, 2), np.nan, np.float32)
    assert np.isnan(validate_feed([arg], {"t": nan})["t"]).all()
    scalar_arg = NodeArg("s", "tensor(int64)", [])
    assert validate_feed([scalar_arg], {"s": np.int64(3)})["s"].shape == ()
    strings = NodeArg("w", "tensor(string)", [2])
    assert validate_feed([strings], {"w": ["a", "b"]})["w"].tolist() == ["a", "b"]
    with pytest.raises(RuntimeError, match="Could not create tensor from given input list"):
        validate_feed([arg], {"t": [["a", "b"], ["c", "d"]]})
    with pytest.raises(RuntimeError, match="Unable to handle object of type <class 'tuple'>"):
        validate_feed([arg], {"t": ((1, 2), (3, 4))})
    with pytest.raises(TypeError, match="input_feed must be a dict"):
        validate_feed([arg], [np.zeros((2, 2), np.float32)])


def test_output_names():
    outs = [NodeArg("a", "tensor(float)", [1]), NodeArg("b", "tensor(float)", [1])]
    assert validate_output_names(outs, None) == ["a", "b"]
    assert validate_output_names(outs, []) == ["a", "b"]
    assert validate_output_names(outs, ("b", "a")) == ["b", "a"]
    with pytest.raises(InvalidArgument) as info:
        validate_output_names(outs, ["a", "c"])
    assert str(info.value) == "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Invalid output name:c"
    with pytest.raises(TypeError, match="not a single string"):
        validate_output_names(outs, "a")
