"""Every real NEF in ../shared/models/nef reads exactly as MANIFEST.md lists it."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import astuple

import pytest

from _shared import SHARED_DIR, require_shared, shared_file, shared_params
from nef_manifest import parse_manifest

from kp_backend.nef import SetupFormat, models_from_fw_info, read_nef
from kp_backend.nef.container import parse_container
from kp_backend.nef.fw_info import build_fw_info
from kp_backend.nef.writer import pack_all_models
from kp_backend.npu_types import Chip, DataLayout, parse_layout

SUBDIR = "models/nef"
FILES = shared_params(SUBDIR, "*/*.nef")


@pytest.fixture(scope="module")
def manifest():
    return parse_manifest(require_shared(SUBDIR, "MANIFEST.md"))


_cache: dict = {}


def _load(param):
    path = shared_file(param, SUBDIR)
    if path not in _cache:
        _cache[path] = (path.read_bytes(), read_nef(path))
    return path, *_cache[path]


def _entry(manifest, path):
    key = str(path.relative_to(SHARED_DIR / SUBDIR))
    assert key in manifest, f"{key} is not described in MANIFEST.md"
    return manifest[key]


def _model_params():
    """One parameter per (file, model) so that each model is its own test."""
    params = []
    for p in FILES:
        path = p.values[0]
        if path is None:
            params.append(pytest.param(None, 0, id=p.id))
            continue
        try:
            ids = [m.id for m in read_nef(path).models]
        except Exception:  # the file-level test reports the failure
            ids = [None]
        params += [pytest.param(path, i, id=f"{p.id}-model{mid}") for i, mid in enumerate(ids)]
    return params


def test_manifest_lists_every_file(manifest):
    on_disk = {str(p.relative_to(SHARED_DIR / SUBDIR)) for p in (SHARED_DIR / SUBDIR).glob("*/*.nef")}
    assert on_disk == set(manifest)


@pytest.mark.parametrize("param", FILES)
def test_container(param, manifest):
    path, data, nef = _load(param)
    e = _entry(manifest, path)
    assert len(data) == e.size
    assert hashlib.sha256(data).hexdigest() == e.sha256
    assert nef.target_chip is Chip[e.chip]
    assert nef.target_raw == e.target_raw
    assert nef.schema_version == (0, 0, 0)
    assert nef.header_crc == e.header["crc"]
    assert nef.kn_number == e.header["kn_number"]
    assert nef.encryption_mode == e.header["encryption_mode"]
    assert not nef.encrypted
    assert nef.uuid == e.header["uuid"]
    assert nef.compiler_version == e.header["compiler_version"]
    assert nef.toolchain_version == e.header["toolchain_version"]
    assert nef.platform == e.header["platform"]
    assert nef.magic == 0x012EBD34 and not e.magic_stored
    assert nef.file_crc == e.trailer_crc and nef.crc_ok
    assert len(nef.all_models) == e.all_models_len
    assert parse_container(memoryview(data)).all_models_offset == e.all_models_offset
    assert zlib.crc32(nef.all_models) == e.all_models_crc == nef.crc
    assert len(nef.fw_info) == e.fw_info_len
    fw = nef.fw_info_table
    assert (fw.model_dram_addr_end, fw.model_total_size, fw.model_checksum) == (
        e.tail["end"], e.tail["total"], e.tail["checksum"])
    assert [*fw.model_crcs, fw.fw_info_crc] == e.tail["words"]
    assert [(m.id, m.version, m.name) for m in nef.model_info] == e.model_info
    assert [m.id for m in nef.models] == [m.id for m in e.models]


@pytest.mark.parametrize("param,index", _model_params())
def test_model(param, index, manifest):
    path, data, nef = _load(param)
    expected = _entry(manifest, path).models[index]
    model = nef.models[index]
    assert model.id == expected.id and model.version == expected.version
    assert model.target_chip is nef.target_chip
    assert model.setup_format is SetupFormat.LEGACY
    assert model.setup_schema_version == model.setup_file_schema_version == (0, 0, 0)
    rec = model.fw_info
    got = {"input": (rec.input_mem_addr, rec.input_mem_len),
           "output": (rec.output_mem_addr, rec.output_mem_len),
           "working": (rec.buf_addr, rec.buf_len), "cmd": (rec.cmd_mem_addr, rec.cmd_mem_len),
           "weight": (rec.weight_mem_addr, rec.weight_mem_len),
           "setup": (rec.setup_mem_addr, rec.setup_mem_len)}
    assert got == expected.fw
    assert (model.input_mem_len, model.output_mem_len) == (rec.input_mem_len, rec.output_mem_len)
    assert bytes(model.fw_info_bytes) == bytes(nef.fw_info[4 + 56 * index:60 + 56 * index])
    base = nef.models[0].fw_info.cmd_mem_addr
    assert rec.setup_mem_addr - base == expected.setup_offset
    assert bytes(model.setup) == bytes(nef.all_models[expected.setup_offset:][:expected.setup_len])
    assert len(model.command) == rec.cmd_mem_len and len(model.weight) == rec.weight_mem_len
    assert bytes(model.command) == bytes(nef.all_models[rec.cmd_mem_addr - base:][:rec.cmd_mem_len])
    nodes = [("input", t) for t in model.inputs] + [("output", t) for t in model.outputs]
    assert len(nodes) == len(expected.nodes)
    for (kind, t), want in zip(nodes, expected.nodes):
        assert (kind, t.index) == (want.kind, want.index)
        assert t.name == ""
        assert t.shape_npu == t.shape_onnx == want.shape
        assert t.axis_permutation_onnx_to_npu == (0, 1, 2, 3)
        assert t.data_layout is parse_layout(want.layout) and t.format_code == want.code
        assert t.quantization.axis == 1
        assert t.quantization.radix == (want.radix,)
        assert t.quantization.scale == (want.scale,)  # bit-exact float32
        assert t.quantization.scale_dtype == 9
        assert t.shape_info_version == 1


@pytest.mark.parametrize("param", FILES)
def test_max_raw_out_size(param):
    _, _, nef = _load(param)
    for m in nef.models:
        if nef.target_chip is Chip.KL520:
            assert m.max_raw_out_size == 344 + 4 + 24 * len(m.outputs) + m.output_mem_len
        else:
            assert m.max_raw_out_size == 344 + 2248 + m.output_mem_len


def test_max_raw_out_size_observed_with_plus_2_2():
    # KP_PYTHON_API.md §5.9: PLUS 2.2 reported 16444 for model 32 of this file.
    nef = read_nef(require_shared(SUBDIR, "KL520", "ssd_fd_lm_plus.nef"))
    assert nef.model(32).max_raw_out_size == 16444


@pytest.mark.parametrize("param", FILES)
def test_writer_packing_reproduces_real_bytes(param):
    """Section 5 packing and the (inferred) fw_info CRC words, byte for byte."""
    _, _, nef = _load(param)
    parts = [(bytes(m.command), bytes(m.weight), bytes(m.setup)) for m in nef.models]
    all_models, blocks = pack_all_models(parts)
    assert all_models == bytes(nef.all_models)
    fw_info = build_fw_info(list(nef.fw_info_table.records), all_models,
                            [zlib.crc32(b) for b in blocks])
    assert fw_info == bytes(nef.fw_info)


@pytest.mark.parametrize("param", FILES)
def test_device_view_matches_file(param):
    """GET_MODEL_INFO gives fw_info without the CRC tail plus the setup blobs."""
    _, _, nef = _load(param)
    n = len(nef.models)
    fw_info = bytearray(nef.fw_info[:16 + 56 * n])
    # The firmware zeroes model 0's input_mem_addr in its copy (PROTOCOL.md §4.2, which
    # says "byte offset 8"; the record layout puts input_mem_addr at 4 + 8 = 12).
    fw_info[12:16] = bytes(4)
    setups = [bytes(m.setup) for m in nef.models]
    for blobs in (b"".join(setups), setups):
        models = models_from_fw_info(nef.target_chip, bytes(fw_info), blobs)
        assert [m.id for m in models] == [m.id for m in nef.models]
        for got, want in zip(models, nef.models):
            assert (got.inputs, got.outputs) == (want.inputs, want.outputs)
            assert got.max_raw_out_size == want.max_raw_out_size
            assert got.version == want.version and len(got.command) == 0


@pytest.mark.parametrize("param", FILES)
def test_views_are_read_only_and_objects_frozen(param):
    _, _, nef = _load(param)
    assert nef.all_models.readonly and nef.models[0].setup.readonly
    with pytest.raises(AttributeError):
        nef.models[0].id = 1  # type: ignore[misc]
    assert isinstance(nef.models, tuple) and isinstance(nef.models[0].inputs, tuple)
    assert nef.models[0].inputs[0].data_layout is DataLayout.L4W4C8B
    assert astuple(nef.models[0].fw_info)[0] == nef.models[0].id
