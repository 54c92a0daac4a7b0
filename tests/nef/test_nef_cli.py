"""``inspect``: the table, the fixed JSON schema, one-line errors with exit status 2."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from nef_fixtures import build

from _shared import require_shared
from kp_backend.nef.cli import main, register_commands


def _write(tmp_path, name="KL730-kne"):
    path = tmp_path / f"{name}.nef"
    path.write_bytes(build(name)[3])
    return path


def test_json_schema_real_file(capsys):
    path = require_shared("models/nef/KL520/ssd_fd_lm_plus.nef")
    assert main([str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["chip", "models"] and doc["chip"] == "KL520"
    first = doc["models"][0]
    assert list(first) == ["id", "version", "max_raw_out_size", "inputs", "outputs"]
    assert (first["id"], first["version"], first["max_raw_out_size"]) == (32, 45197, 16444)
    assert first["inputs"] == [{
        "index": 0, "name": "", "shape_npu": [1, 3, 200, 200], "shape_onnx": [1, 3, 200, 200],
        "layout": "4W4C8B", "quantization": {"axis": 1, "radix": [8], "scale": [1.0]}}]
    out = first["outputs"][0]
    assert list(out) == ["index", "name", "shape_npu", "shape_onnx", "layout", "quantization"]
    assert list(out["quantization"]) == ["axis", "radix", "scale"]
    assert out["quantization"]["scale"] == [1.058646559715271]
    assert [m["id"] for m in doc["models"]] == [32, 5]
    assert [o["index"] for o in first["outputs"]] == list(range(8))


def test_json_per_channel_and_names(tmp_path, capsys):
    assert main([str(_write(tmp_path)), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["chip"] == "KL730"
    out0 = doc["models"][0]["outputs"][0]
    assert out0["name"] == "out0" and out0["layout"] == "16W1C8B"
    assert out0["quantization"] == {"axis": 1, "radix": [1, 2, 3, 4], "scale": [1.0, 0.5, 0.25, 2.0]}
    assert doc["models"][0]["version"] == 0x1A2B


def test_table(tmp_path, capsys):
    assert main([str(_write(tmp_path, "KL630-flatbuffer"))]) == 0
    text = capsys.readouterr().out
    assert "KL630 NEF, schema 0.0.0, 2 model(s)" in text
    assert "kn_number 0x00001234, encryption mode 2" in text
    assert "model 32768  version 0x1  max_raw_out_size" in text
    assert "conv/out:0" in text and "[1,5,7,6]" in text and "4W4C8BHL" in text


@pytest.mark.parametrize("make, needle", [
    (lambda p: p / "missing.nef", "cannot read NEF file"),
    (lambda p: (p / "bad.nef").write_bytes(b"\0" * 40) and p / "bad.nef", "NEF crc at byte 36"),
])
def test_errors_are_one_line_exit_2(tmp_path, capsys, make, needle):
    assert main([str(make(tmp_path))]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("python -m kp_backend.nef")


def test_usage_error_exit_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_register_commands(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="kp-runtime")
    register_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["inspect", str(tmp_path / "nope.nef")])
    assert args.func(args) == 2
    assert capsys.readouterr().err.startswith("kp-runtime inspect: error: ")
    args = parser.parse_args(["inspect", str(_write(tmp_path, "KL520-legacy")), "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["chip"] == "KL520"


def test_python_dash_m(tmp_path):
    path = _write(tmp_path, "KL720-legacy")
    done = subprocess.run([sys.executable, "-m", "kp_backend.nef", str(path), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["models"][0]["id"] == 3
