"""Every golden case of ``../shared/golden/layouts`` (computed by Kneron's own code) must be
reproduced bit for bit. One parametrised test, driven by ``index.json``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _shared import SHARED_DIR, require_shared, shared_params

from kp_backend.layouts import (
    build_result_payload,
    decode_node,
    encode_node,
    image_to_npu,
    node_buffer_size,
    parse_result_nodes,
    retrieve_node,
)

GOLDEN = "golden/layouts"
HEADER = 344


def _cases() -> list:
    index = SHARED_DIR / GOLDEN / "index.json"
    if not index.is_file():
        return shared_params(GOLDEN, "index.json")  # one param that skips/fails clearly
    cases = json.loads(index.read_text())["cases"]
    return [pytest.param(case, id=case["file"].removesuffix(".npz")) for case in cases]


def _same(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    if got.tobytes() != expected.tobytes():
        diff = int(np.count_nonzero(got.view(np.uint8) != expected.view(np.uint8)))
        pytest.fail(f"{what}: {diff} bytes differ from Kneron's output")


def _check_outputs(case: dict, arrays, **node) -> None:
    for ordering, info in case["orderings"].items():
        kwargs = dict(node, ordering=ordering)
        for as_float, key in ((False, "fixed"), (True, "float")):
            if not info[f"{key}_ok"]:  # Kneron returned NULL: we raise
                with pytest.raises(ValueError):
                    decode_node(arrays["npu_raw"], as_float=as_float, **kwargs)
                continue
            got = decode_node(arrays["npu_raw"], as_float=as_float, **kwargs)
            _same(got, arrays[f"{key}_{ordering}"], f"{key} {ordering}")
            assert list(got.shape) == info["numpy_shape"]
            if not as_float:
                assert got.dtype == np.dtype(info["fixed_dtype"])
            helper = f"float_helper_{ordering}"
            if as_float and helper in arrays.files:  # helper_fixed_to_floating_node_data
                _same(got, arrays[helper], helper)


def _check_multinode(case: dict, arrays) -> None:
    raw = arrays["raw_out_buffer"].tobytes()
    records = parse_result_nodes(raw)
    assert len(records) == len(case["nodes"])
    for i, (node, record) in enumerate(zip(case["nodes"], records)):
        assert record.shape == tuple(node["shape_nchw"])
        assert record.layout.layout_name == node["layout"]
        assert record.code == node["device_fmt_code"]
        assert bytes(record.data[: node["raw_bytes"]]) == arrays[f"npu_raw_node{i}"].tobytes()
        for as_float, key in ((False, "fixed"), (True, "float")):
            got = retrieve_node(raw, i, case["ordering"], as_float=as_float)
            _same(got, arrays[f"{key}_node{i}_{case['ordering']}"], f"node {i} {key}")
    if case["chip"] in ("KL520", "KL720"):  # the emulator's builder reproduces the buffer
        nodes = [(n["layout"], n["shape_nchw"], n["radix"], n["scale"], arrays[f"npu_raw_node{i}"])
                 for i, n in enumerate(case["nodes"])]
        mem = sum(n["raw_bytes"] for n in case["nodes"])
        assert build_result_payload(case["chip"], nodes, mem) == raw[HEADER:]


@pytest.mark.parametrize("case", _cases())
def test_golden_case(case) -> None:
    if not isinstance(case, dict):  # index.json absent: skip (fail under CI) with the reason
        require_shared(GOLDEN, "index.json")
    arrays = np.load(require_shared(GOLDEN, case["file"]))
    family = case["family"]
    if family == "out_v1":
        _check_outputs(case, arrays, chip=case["chip"], layout=case["layout"],
                       shape=case["shape_nchw"], radix=case["radix"], scale=case["scale"])
    elif family == "out_v2":
        _check_outputs(case, arrays, chip="KL730", layout=case["layout"], shape=case["shape"],
                       radix=case["radix"], scale=case["scale"], strides=case["stride_npu"],
                       quantized_axis=case["quantized_axis"])
    elif family == "out_v1_multinode":
        _check_multinode(case, arrays)
    elif family == "in_v2":
        kwargs = dict(chip="KL730", layout=case["layout"], shape=case["shape"],
                      radix=case["radix"], scale=case["scale"], strides=case["stride_npu"],
                      quantized_axis=case["quantized_axis"])
        if case.get("status", 0) != 0:
            with pytest.raises(ValueError):
                encode_node(arrays["float_in"], **kwargs)
            return
        out = encode_node(arrays["float_in"], **kwargs)
        assert len(out) == case["npu_size_bytes"] == node_buffer_size(
            chip="KL730", layout=case["layout"], shape=case["shape"], strides=case["stride_npu"])
        _same(np.frombuffer(out, np.uint8), arrays["npu_out"], "npu bytes")
    elif family == "in_v1":
        kwargs = dict(chip=case["chip"], layout=case["layout"], shape=case["model_shape_nchw"],
                      radix=case["radix"], scale=case["scale"])
        out = image_to_npu(arrays["rgba_in"], **kwargs)
        _same(np.frombuffer(out, np.uint8), arrays["npu_out"], "C example bytes")
        if "npu_out_python_example" in arrays.files:
            out = image_to_npu(arrays["rgba_in"], rounding="numpy", **kwargs)
            _same(np.frombuffer(out, np.uint8), arrays["npu_out_python_example"],
                  "Python example bytes")
    else:
        pytest.fail(f"unknown golden family {family!r}; the test must learn it")
