"""Malformed NEFs raise NefError naming the field and the byte offset (NEF.md §11)."""

from __future__ import annotations

import struct
import zlib

import pytest
from nef_fixtures import build

from kp_backend.nef import FwInfoRecord, NefError, models_from_fw_info, read_nef
from kp_backend.nef.container import build_container, parse_container
from kp_backend.nef.flatbuf import Builder
from kp_backend.nef.fw_info import build_fw_info
from kp_backend.nef.setup_legacy import LEGACY_MAGIC
from kp_backend.npu_types import Chip
from kp_runtime.errors import InvalidArgument, InvalidGraph, NoSuchFile

BASE = 0x60000000


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _nef(chip: Chip, fw_info: bytes, all_models: bytes, **kw) -> bytes:
    return build_container(target=chip, schema_version=(0, 0, 0), fw_info=fw_info,
                           all_models=all_models, model_info=[], **kw)


def _record(setup_len: int, **kw) -> FwInfoRecord:
    fields = dict(model_type=1, model_version=1, input_mem_addr=0, input_mem_len=16,
                  output_mem_addr=0, output_mem_len=16, buf_addr=0, buf_len=0,
                  cmd_mem_addr=BASE, cmd_mem_len=0, weight_mem_addr=BASE, weight_mem_len=0,
                  setup_mem_addr=BASE, setup_mem_len=setup_len)
    fields.update(kw)
    return FwInfoRecord(**fields)


def _nef_with_setup(chip: Chip, setup: bytes, **record) -> bytes:
    rec = _record(len(setup), **record)
    return _nef(chip, build_fw_info([rec], setup, [zlib.crc32(setup)]), setup)


def _error(data, **kw) -> NefError:
    with pytest.raises(NefError) as info:
        read_nef(data, **kw)
    err = info.value
    assert isinstance(err, InvalidGraph)
    assert err.field and err.field in str(err)
    if err.offset is not None:
        assert 0 <= err.offset <= len(data)
        assert f"at byte {err.offset}" in str(err)
    return err


def _fw_offset(data: bytes) -> int:
    return parse_container(memoryview(data)).fw_info_offset


def _setup_offset(data: bytes) -> int:
    return parse_container(memoryview(data)).all_models_offset


# --- container -------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\0" * 7])
def test_too_short(data):
    err = _error(data)
    assert (err.field, err.offset) == ("file", 0)


def test_root_offset_outside():
    data = _with_crc(struct.pack("<I", 0x10000) + bytes(12))
    err = _error(data)
    assert err.field == "NEFContent (root offset)" and err.offset == 0


def _root(header=True, schema=True, model_bin=True, all_models=True, target=0,
          header_strings=None) -> bytes:
    b = Builder()
    bin_ref = None
    if model_bin:
        vec = b.create_bytes(b"\1\2\3\4") if all_models else None
        b.start_table()
        b.add_ref(1, vec)
        bin_ref = b.end_table()
    head_ref = None
    if header:
        schema_ref = None
        if schema:
            b.start_table()
            schema_ref = b.end_table()
        extra = header_strings(b) if header_strings else None
        b.start_table()
        b.add(1, "i", target)
        b.add_ref(7, schema_ref)
        if extra is not None:
            b.add_ref(5, extra)
        head_ref = b.end_table()
    b.start_table()
    b.add_ref(1, head_ref)
    b.add_ref(3, bin_ref)
    return _with_crc(b.finish(b.end_table()))


@pytest.mark.parametrize("kw, field", [
    (dict(header=False), "NEFContent.header"),
    (dict(schema=False), "header.schema_version"),
    (dict(model_bin=False), "NEFContent.model_bin"),
    (dict(all_models=False), "model_bin.all_models"),
    (dict(target=41), "header.target"),
    (dict(), "model_bin.fw_info"),  # empty fw_info on a KL520 NEF
    (dict(header_strings=lambda b: b.create_bytes(b"\xff\xfeabc")), "header.compiler_version"),
])
def test_container_structure(kw, field):
    err = _error(_root(**kw))
    assert err.field == field


def test_vtable_and_table_bounds():
    good = bytearray(_root()[:-4])
    root = struct.unpack_from("<I", good, 0)[0]
    bad = bytearray(good)
    struct.pack_into("<i", bad, root, -100000)  # vtable far outside
    assert _error(_with_crc(bytes(bad))).field == "NEFContent (vtable)"
    vt = root - struct.unpack_from("<i", good, root)[0]
    bad = bytearray(good)
    struct.pack_into("<H", bad, vt, 5)  # odd vtable size
    assert _error(_with_crc(bytes(bad))).field == "NEFContent (vtable size)"
    bad = bytearray(good)
    struct.pack_into("<H", bad, vt + 2, 0xFFF0)  # table larger than the file
    assert _error(_with_crc(bytes(bad))).field == "NEFContent (table)"
    bad = bytearray(good)
    struct.pack_into("<H", bad, vt + 6, 200)  # header slot beyond the table
    err = _error(_with_crc(bytes(bad)))
    assert err.field == "NEFContent.header" and err.offset == vt + 6


def test_huge_vector_count_is_refused_without_allocating():
    data = bytearray(build("KL520-legacy")[3])
    c = parse_container(memoryview(bytes(data)))
    struct.pack_into("<I", data, c.all_models_offset - 4, 0xFFFFFFFF)
    err = _error(_with_crc(bytes(data[:-4])))
    assert err.field == "model_bin.all_models" and err.offset == c.all_models_offset


# --- fw_info -----------------------------------------------------------------------------


def test_fw_info_model_count():
    data = _nef(Chip.KL520, struct.pack("<I", 17) + bytes(60), b"\0" * 16)
    err = _error(data)
    assert (err.field, err.offset) == ("fw_info.model_num", _fw_offset(data))


def test_fw_info_too_short():
    data = _nef(Chip.KL520, struct.pack("<I", 2) + bytes(60), b"\0" * 16)
    err = _error(data)
    assert err.field == "fw_info" and "2 models need 128" in str(err)


def test_setup_outside_all_models():
    data = _nef_with_setup(Chip.KL520, b"\0" * 64, setup_mem_addr=BASE + 32)
    err = _error(data)
    assert err.field == "fw_info.records[0].setup_mem_addr"
    assert err.offset == _fw_offset(data) + 4 + 48


def test_negative_lengths():
    data = _nef_with_setup(Chip.KL520, b"\0" * 64, output_mem_len=-5)
    assert _error(data).field == "fw_info.records[0].output_mem_len"
    data = _nef_with_setup(Chip.KL520, b"\0" * 64, cmd_mem_len=-1)
    assert _error(data).field == "fw_info.records[0].cmd_mem_addr"


# --- legacy setup.bin --------------------------------------------------------------------


def _kl520_setup(nodes: bytes, output_num: int = 1) -> bytes:
    header = struct.pack("<16IiI", LEGACY_MAGIC, 1, 1, 0, 0, 0, 0, 8, 8, 3, 0, 0, 0, 0, 0, 0,
                         7, output_num)
    return header + nodes


def _output(index: int) -> bytes:
    return struct.pack("<10Iif", 2, 0, 8, 0, 0, 0, 1, 1, 4, index, 3, 1.0)


def test_legacy_good_minimal_reads():
    nef = read_nef(_nef_with_setup(Chip.KL520, _kl520_setup(struct.pack("<2I", 0, 0) + _output(0))))
    assert nef.models[0].outputs[0].shape_npu == (1, 4, 1, 1)


@pytest.mark.parametrize("nodes, output_num, field, node_at", [
    (struct.pack("<I", 9) + bytes(4), 1, "model[0].setup.node", 0),
    (struct.pack("<I", 5) + bytes(32), 1, "model[0].setup.node", 0),  # NetInput on KL520
    (_output(3), 1, "model[0].setup.output_index", 36),
    (_output(0) + _output(0), 2, "model[0].setup.output_index", 48 + 36),
    (_output(1), 2, "model[0].setup.outputs[0]", None),
    (_output(0)[:20], 1, "model[0].setup.node", 0),
    (b"", 0x10000000, "model[0].setup.header.output_num", None),
])
def test_legacy_nodes(nodes, output_num, field, node_at):
    data = _nef_with_setup(Chip.KL520, _kl520_setup(nodes, output_num))
    err = _error(data)
    assert err.field == field
    if node_at is not None:
        assert err.offset == _setup_offset(data) + 72 + node_at


def test_legacy_header_truncated_and_wrong_chip():
    data = _nef_with_setup(Chip.KL720, struct.pack("<I", LEGACY_MAGIC) + bytes(40))
    assert _error(data).field == "model[0].setup.header"
    data = _nef_with_setup(Chip.KL630, _kl520_setup(_output(0)))
    assert "only valid for KL520 and KL720" in str(_error(data))


# --- FlatBuffer setup.bin --------------------------------------------------------------


def _inf(magic=None, header=True, inputs=True, quant=True, name=None, target=2) -> bytes:
    b = Builder()
    q = None
    if quant:
        b.start_table()
        b.add(0, "f", 1.0)
        fxp = b.create_table_vector([b.end_table()])
        b.start_table()
        b.add_ref(0, fxp)
        q = b.end_table()
    name_ref = b.create_bytes(name) if name is not None else None
    b.start_table()
    b.add_ref(0, name_ref)
    b.add_ref(4, q)
    vec = b.create_table_vector([b.end_table()])
    head = None
    if header:
        b.start_table()
        b.add(1, "i", target)
        head = b.end_table()
    b.start_table()
    b.add(0, "I", magic)
    b.add_ref(1, head)
    b.add_ref(2, vec if inputs else None)
    b.add_ref(3, vec)
    return b.finish(b.end_table())


def test_flatbuffer_setup_minimal_reads():
    nef = read_nef(_nef_with_setup(Chip.KL720, _inf(name=b"x")))
    assert nef.models[0].inputs[0].name == "x"


@pytest.mark.parametrize("kw, field", [
    (dict(magic=0x1234), "model[0].setup.magic"),
    (dict(header=False), "model[0].setup.header"),
    (dict(inputs=False), "model[0].setup.inputs"),
    (dict(quant=False), "model[0].setup.inputs[0].quantization"),
    (dict(name=b"\xc3\x28"), "model[0].setup.inputs[0].name"),
    (dict(target=99), "model[0].setup.header.target"),
])
def test_flatbuffer_setup_errors(kw, field):
    assert _error(_nef_with_setup(Chip.KL720, _inf(**kw))).field == field


# --- KNE ----------------------------------------------------------------------------------


def _kne(scale_type=9, radix=(1,), scale=struct.pack("<f", 1.0), scale_count=1,
         shape=(1, 2), stride=(2, 1), out_buffer=True, schema=True) -> bytes:
    b = Builder()
    r = b.create_vector("b", radix)
    s = b.create_bytes(scale)
    b.start_table()
    b.add_ref(0, r)
    b.add_ref(1, s)
    b.add(2, "I", scale_count)
    b.add(3, "b", scale_type)
    q = b.end_table()
    sh, st = b.create_vector("i", shape), b.create_vector("I", stride)
    b.start_table()
    b.add_ref(5, sh)
    b.add_ref(6, st)
    b.add_ref(7, q)
    tensors = b.create_table_vector([b.end_table()])
    b.start_table()
    b.add(0, "b", 2 if out_buffer else 1)
    b.add(2, "Q", 64)
    buffers = b.create_table_vector([b.end_table()])
    sv = None
    if schema:
        b.start_table()
        sv = b.end_table()
    b.start_table()
    b.add(0, "i", 9)
    b.add_ref(1, tensors)
    b.add_ref(2, tensors)
    b.add_ref(8, sv)
    b.add_ref(9, buffers)
    header = b.end_table()
    b.start_table()
    b.add_ref(0, header)
    models = b.create_table_vector([b.end_table()])
    b.start_table()
    kne_header = b.end_table()
    b.start_table()
    b.add_ref(1, kne_header)
    b.add_ref(2, models)
    return b.finish(b.end_table())


def _kne_nef(**kw) -> bytes:
    return _nef(Chip.KL730, b"", _kne(**kw))


def test_kne_minimal_reads_and_broadcasts():
    scales = struct.pack("<3h", 2, 3, 4)
    model = read_nef(_kne_nef(scale_type=2, radix=(5,), scale=scales, scale_count=3)).models[0]
    q = model.outputs[0].quantization
    assert q.radix == (5, 5, 5) and q.scale == (2.0, 3.0, 4.0) and q.scale_dtype == 2
    assert model.output_mem_len == 64 and model.id == 9


@pytest.mark.parametrize("kw, field", [
    (dict(scale_type=12), "kne.models[0].header.inputs[0].quantization.scale_type"),
    (dict(scale_type=0), "kne.models[0].header.inputs[0].quantization.scale_type"),
    (dict(stride=(1,)), "kne.models[0].header.inputs[0].stride_aligned"),
    (dict(radix=(1, 2), scale_count=3, scale=bytes(12)),
     "kne.models[0].header.inputs[0].quantization.radix"),
    (dict(scale=b"\0\0", scale_count=1), "kne.models[0].header.inputs[0].quantization.scale"),
    (dict(scale=bytes(8), scale_count=0x40000000),
     "kne.models[0].header.inputs[0].quantization.scale"),
    (dict(out_buffer=False), "kne.models[0].header.buffer_info"),
    (dict(schema=False), "kne.models[0].header.schema_version"),
])
def test_kne_errors(kw, field):
    assert _error(_kne_nef(**kw)).field == field


# --- other entry points ------------------------------------------------------------------


def test_models_from_fw_info_errors():
    setup = _kl520_setup(_output(0))
    fw = build_fw_info([_record(len(setup))], setup, [0])
    assert models_from_fw_info(Chip.KL520, fw[:72], setup)[0].outputs[0].index == 0
    with pytest.raises(NefError) as info:
        models_from_fw_info(Chip.KL520, fw[:72], setup[:-8])
    assert info.value.field == "fw_info.records[0].setup_mem_len" and info.value.offset == 56
    with pytest.raises(NefError, match="2 setup blobs for 1"):
        models_from_fw_info(Chip.KL520, fw[:72], [setup, setup])
    with pytest.raises(NefError, match="fw_info"):
        models_from_fw_info(Chip.KL520, fw[:40], setup)
    with pytest.raises(NefError, match="target 9 is not a known chip"):
        models_from_fw_info(9, fw[:72], setup)


def test_bad_arguments(tmp_path):
    with pytest.raises(NoSuchFile, match="cannot read NEF file"):
        read_nef(tmp_path / "missing.nef")
    with pytest.raises(InvalidArgument, match="path or bytes"):
        read_nef(12)  # type: ignore[arg-type]
