"""The writer's output reads back field for field and follows the container rules that
Kneron PLUS checks (NEF.md §3.4, §4, §5, §9)."""

from __future__ import annotations

import struct
import zlib

import pytest
from nef_fixtures import FIXTURES, build, expected_tensor

from kp_backend.nef import (
    DType, ModelSpec, NefError, SetupFormat, build_simple_nef, read_nef, write_nef)
from kp_backend.nef.container import normalise_target, parse_container
from kp_backend.nef.writer import _format, tensor
from kp_backend.npu_types import Chip


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_round_trip(name):
    chip, specs, options, data = build(name)
    nef = read_nef(data)
    assert nef.target_chip is chip and nef.crc_ok
    assert nef.schema_version == options.get("schema_version", (0, 0, 0))
    assert nef.kn_number == options.get("kn_number", 0)
    assert nef.encryption_mode == options.get("encryption_mode", 0)
    assert nef.encrypted == bool(options.get("kn_number") and options.get("encryption_mode"))
    for key in ("platform", "compiler_version", "toolchain_version"):
        assert getattr(nef, key) == options.get(key, "")
    assert [(e.id, e.name) for e in nef.model_info] == [(s.id, s.name) for s in specs]
    assert len(nef.models) == len(specs)
    for spec, model in zip(specs, nef.models):
        fmt = _format(chip, spec)
        assert model.setup_format is fmt
        assert (model.id, model.version, model.target_chip) == (spec.id, spec.version, chip)
        assert (model.input_mem_len, model.output_mem_len) == (spec.input_mem_len,
                                                              spec.output_mem_len)
        assert model.inputs == tuple(expected_tensor(chip, fmt, t) for t in spec.inputs)
        assert model.outputs == tuple(expected_tensor(chip, fmt, t) for t in spec.outputs)
        if fmt is SetupFormat.KNE:
            assert model.setup_schema_version == spec.setup_schema_version or (3, 0, 17)
            assert model.fw_info is None and len(model.command) == 0
            continue
        if fmt is SetupFormat.FLATBUFFER:
            assert model.setup_schema_version == (spec.setup_schema_version or (1, 2, 31))
            assert model.setup_file_schema_version == spec.setup_file_schema_version
        assert bytes(model.command) == spec.command and bytes(model.weight) == spec.weight
        rec = model.fw_info
        assert rec.buf_len == spec.working_mem_len


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_container_rules(name):
    chip, specs, options, data = build(name)
    body, trailer = data[:-4], struct.unpack("<I", data[-4:])[0]
    assert zlib.crc32(body) == trailer
    c = parse_container(memoryview(data))
    assert c.all_models_offset % 32 == 0
    assert c.header_crc == c.uuid == zlib.crc32(c.all_models)
    assert c.magic == 0x012EBD34
    assert normalise_target(c.target_raw, c.schema_version) == chip
    nef = read_nef(data)
    if chip is Chip.KL730:
        assert len(c.fw_info) == 0 and nef.crc == c.header_crc
        assert [e.version for e in nef.model_info] == [f"{s.version:x}" for s in specs]
        return
    n = len(specs)
    assert len(c.fw_info) == 20 + 60 * n
    fw = nef.fw_info_table
    assert fw.model_checksum == nef.crc == c.header_crc
    assert fw.model_total_size == len(c.all_models)
    last = fw.records[-1]
    assert fw.model_dram_addr_end == last.setup_mem_addr + last.setup_mem_len
    assert fw.fw_info_crc == zlib.crc32(c.fw_info[:16 + 60 * n])
    base = fw.records[0].cmd_mem_addr
    ends = [r.cmd_mem_addr - base for r in fw.records[1:]] + [len(c.all_models)]
    for rec, end, crc in zip(fw.records, ends, fw.model_crcs):
        start = rec.cmd_mem_addr - base
        assert start % 16 == 0 and (rec.weight_mem_addr - base) % 16 == 0
        assert (rec.setup_mem_addr - base) % 16 == 0
        assert zlib.crc32(c.all_models[start:end]) == crc
    assert ends[-1] == last.setup_mem_addr - base + last.setup_mem_len  # no tail padding
    assert [e.version for e in nef.model_info] == [str(s.version) for s in specs]


def test_new_target_numbering_and_per_component_rule():
    assert normalise_target(4, (2, 2, 1)) == 4
    assert normalise_target(4, (2, 2, 5)) == 4
    assert normalise_target(3, (2, 3, 0)) == 4  # PLUS's per-component test: "old" numbering
    assert normalise_target(3, (3, 0, 0)) == 4
    assert normalise_target(0, (0, 0, 0)) == 1
    for schema, raw in (((0, 0, 0), 1), ((2, 2, 1), 2)):
        data = build_simple_nef(Chip.KL720, [_simple_model()], schema_version=schema)
        c = parse_container(memoryview(data))
        assert c.target_raw == raw and c.target is Chip.KL720


def _simple_model(**kw):
    model = {"id": 1, "inputs": [{"shape": [1, 3, 8, 8], "layout": "4W4C8B", "radix": 7}],
             "outputs": [{"shape": [1, 10, 1, 1], "layout": "16W1C8B", "radix": 3,
                          "scale": 0.5}], "input_mem_len": 256, "output_mem_len": 160}
    model.update(kw)
    return model


def test_build_simple_nef_uses_layout_buffer_sizes():
    # The real KL520 MobileNet: 3x224x224 4W4C8B in, 1000x1x1 16W1C8B out.
    data = build_simple_nef("KL520", [{
        "id": 18, "inputs": [{"shape": [1, 3, 224, 224], "layout": "4W4C8B", "radix": 7}],
        "outputs": [{"shape": [1, 1000, 1, 1], "layout": "16W1C8B", "radix": 3,
                     "scale": 1.157313346862793}]}])
    model = read_nef(data).model(18)
    assert (model.input_mem_len, model.output_mem_len) == (200704, 16000)  # as the real file
    assert model.max_raw_out_size == 344 + 4 + 24 + 16000
    assert len(model.command) > 0 and len(model.weight) > 0


def test_build_simple_nef_custom_buffer_size_and_options():
    calls = []

    def size(chip, t, output):
        calls.append((chip, t.shape_npu, output))
        return 64

    data = build_simple_nef("kl720", [_simple_model(input_mem_len=None, output_mem_len=None)],
                            buffer_size=size, kn_number=7)
    nef = read_nef(data)
    assert nef.kn_number == 7 and nef.models[0].output_mem_len == 64
    assert calls == [(Chip.KL720, (1, 3, 8, 8), False), (Chip.KL720, (1, 10, 1, 1), True)]


def test_kl730_simple_nef_gets_layout_strides():
    data = build_simple_nef("KL730", [{
        "id": 5, "inputs": [{"shape": [1, 3, 8, 8], "layout": "4W4C8B", "radix": 7}],
        "outputs": [{"shape": [1, 4, 3, 5], "layout": "16W1C8B", "radix": 3}],
        "input_mem_len": 256, "output_mem_len": 192}])
    out = read_nef(data).model(5).outputs[0]
    assert out.stride_npu == (4 * 3 * 16, 3 * 16, 16, 1)
    assert out.stride_onnx == (60, 15, 5, 1)
    assert out.shape_info_version == 2


def test_kl730_max_raw_out_size():
    chip, specs, _, data = build("KL730-kne")
    model = read_nef(data).model(211)
    spec = specs[0]
    dsize = {DType.FLOAT32: 4, DType.INT16: 2, DType.BFLOAT16: 2, DType.DOUBLE64: 8}
    per_out = sum(len(t.name) + 1 + len(t.quantization.radix) * (dsize[t.quantization.scale_dtype] + 1)
                  + 12 * len(t.shape_npu) for t in spec.outputs)
    assert model.max_raw_out_size == (52 + 60 * len(spec.inputs) + 12 + 76 * len(spec.outputs)
                                      + per_out + spec.output_mem_len)


def test_kl630_max_raw_out_size_and_kl530_has_none():
    for chip, expected in ((Chip.KL630, lambda m: 344 + 2088 + m.output_mem_len),
                           (Chip.KL530, lambda m: 0)):
        nef = read_nef(build(f"{chip.name}-flatbuffer")[3])
        for m in nef.models:
            assert m.max_raw_out_size == expected(m)


@pytest.mark.parametrize("bad, message", [
    (dict(inputs=[tensor([1, 3, 8, 8], "16W1C8B")]), "exactly one 4W4C8B input"),
    (dict(inputs=[tensor([1, 3, 8, 8], "4W4C8B", scale=0.5)]), "input scale"),
    (dict(outputs=[tensor([1, 4, 1, 1], "16W1C8B", radix=[1, 2])]), "per-tensor"),
    (dict(outputs=[tensor([4, 4], "16W1C8B")]), "[1, C, H, W]"),
    (dict(outputs=[tensor([1, 4, 1, 1], "8W1C16B")]), "no format code on KL520"),
    (dict(setup_format=SetupFormat.KNE), "KL730 only"),
])
def test_writer_refuses_what_a_kl520_nef_cannot_hold(bad, message):
    base = dict(id=1, inputs=[tensor([1, 3, 8, 8], "4W4C8B")],
                outputs=[tensor([1, 4, 1, 1], "16W1C8B")], input_mem_len=1, output_mem_len=1)
    base.update(bad)
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        write_nef("KL520", [ModelSpec(**base)])


def test_writer_refuses_bad_counts_and_values():
    spec = ModelSpec(id=1, inputs=[tensor([1, 3, 8, 8], "4W4C8B")],
                     outputs=[tensor([1, 4, 1, 1], "16W1C8B", radix=300)],
                     input_mem_len=1, output_mem_len=1)
    with pytest.raises(ValueError, match="1..16 models"):
        write_nef("KL520", [])
    with pytest.raises(ValueError, match="cannot store"):
        write_nef("KL730", [spec])  # radix 300 does not fit the KNE's int8
    with pytest.raises(ValueError, match="cannot write a NEF for target UNKNOWN"):
        write_nef(Chip.UNKNOWN, [spec])


def test_read_nef_accepts_path_bytes_bytearray_memoryview(tmp_path):
    data = build("KL520-legacy")[3]
    path = tmp_path / "m.nef"
    path.write_bytes(data)
    mutable = bytearray(data)
    results = [read_nef(x) for x in (path, str(path), data, mutable, memoryview(data))]
    mutable[:] = bytes(len(mutable))  # the result holds its own copy
    assert all(r.models == results[0].models for r in results)
    assert results[3].models[0].inputs[0].shape_npu == (1, 3, 200, 200)


def test_crc_mismatch_can_be_ignored():
    data = bytearray(build("KL520-legacy")[3])
    data[-1] ^= 0xFF
    with pytest.raises(NefError) as info:
        read_nef(bytes(data))
    assert info.value.field == "crc" and info.value.offset == len(data) - 4
    nef = read_nef(bytes(data), verify_crc=False)
    assert not nef.crc_ok and len(nef.models) == 2
