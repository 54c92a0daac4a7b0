"""Provider options: defaults, every key's parsing, unknown keys and bad values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kp_runtime.errors import InvalidArgument
from kp_backend.protocol.constants import ImageFormat, NormalizeMode, PaddingMode
from kp_backend.provider.options import (
    DEFAULT_TIMEOUT_MS, OPTION_DOCS, KneronOptions, options_table, parse_options)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "kneron_provider.md"


def test_defaults():
    o = parse_options({})
    assert o == KneronOptions()
    assert (o.device.kind, o.model_id, o.onnx, o.timeout_ms, o.in_flight, o.frame_drop) == (
        "auto", None, None, DEFAULT_TIMEOUT_MS, None, False)
    assert (o.input_mode, o.image_format, o.resize, o.padding, o.normalize) == (
        "auto", None, True, PaddingMode.KP_PADDING_CORNER, None)
    assert (o.channel_ordering, o.allow_reload) == ("onnx", False)


def test_every_field_is_documented_and_in_the_docs():
    fields = {f.name for f in dataclasses.fields(KneronOptions)}
    assert fields == set(OPTION_DOCS)
    text = DOCS.read_text()
    assert options_table() in text  # the docs' table is the code's


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(InvalidArgument) as info:
        parse_options({"devcie": "virtual", "model_id": "1"})
    assert "devcie" in str(info.value)
    for key in OPTION_DOCS:
        assert key in str(info.value)


@pytest.mark.parametrize("value, kind, spec, ports", [
    ("auto", "auto", "", ()),
    ("virtual", "virtual", "", ()),
    ("virtual:KL720", "virtual", "KL720", ()),
    ("virtual:2xKL520:fast", "virtual", "2xKL520:fast", ()),
    ("13", "ports", "", (13,)),
    (13, "ports", "", (13,)),
    ("[13, 17]", "ports", "", (13, 17)),
    ("13,17", "ports", "", (13, 17)),
    ([13, 17], "ports", "", (13, 17)),
])
def test_device(value, kind, spec, ports):
    d = parse_options({"device": value}).device
    assert (d.kind, d.virtual_spec, d.port_ids) == (kind, spec, ports)


@pytest.mark.parametrize("value", ["virtual:KL730", "virtual:nonsense", "usb", "13,13",
                                   "[1, 'x']", "-3", ""])
def test_bad_device(value):
    with pytest.raises(InvalidArgument, match="device"):
        parse_options({"device": value})


@pytest.mark.parametrize("options, field, expected", [
    ({"model_id": "32"}, "model_id", 32),
    ({"model_id": 0x8000}, "model_id", 32768),
    ({"onnx": "m.onnx"}, "onnx", "m.onnx"),
    ({"timeout_ms": "250"}, "timeout_ms", 250),
    ({"in_flight": "3"}, "in_flight", 3),
    ({"in_flight": "device"}, "in_flight", None),
    ({"frame_drop": "True"}, "frame_drop", True),
    ({"frame_drop": "0"}, "frame_drop", False),
    ({"input_mode": "image"}, "input_mode", "image"),
    ({"image_format": "raw8"}, "image_format", ImageFormat.KP_IMAGE_FORMAT_RAW8),
    ({"image_format": "KP_IMAGE_FORMAT_RGB565"}, "image_format",
     ImageFormat.KP_IMAGE_FORMAT_RGB565),
    ({"resize": "false"}, "padding", PaddingMode.KP_PADDING_DISABLE),
    ({"padding": "symmetric"}, "padding", PaddingMode.KP_PADDING_SYMMETRIC),
    ({"normalize": "tensorflow"}, "normalize", NormalizeMode.KP_NORMALIZE_TENSOR_FLOW),
    ({"normalize": "customized_sub128_div2"}, "normalize",
     NormalizeMode.KP_NORMALIZE_CUSTOMIZED_SUB128_DIV2),
    ({"channel_ordering": "hwc"}, "channel_ordering", "HWC"),
    ({"allow_reload": "yes"}, "allow_reload", True),
])
def test_values(options, field, expected):
    assert getattr(parse_options(options), field) == expected


@pytest.mark.parametrize("options", [
    {"model_id": "-1"}, {"model_id": "x"}, {"onnx": ""}, {"timeout_ms": "0"},
    {"in_flight": "0"}, {"frame_drop": "maybe"}, {"input_mode": "tensor"},
    {"image_format": "JPEG"}, {"image_format": "unknown"}, {"resize": "2"},
    {"padding": "left"}, {"normalize": "imagenet"}, {"channel_ordering": "NCHW"},
    {"resize": "false", "padding": "corner"},
])
def test_bad_values_name_the_key(options):
    key = list(options)[-1]
    with pytest.raises(InvalidArgument, match=key):
        parse_options(options)
