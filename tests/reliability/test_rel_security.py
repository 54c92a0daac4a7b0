"""Security: a model file names no code that the library imports or runs; the udev rule
covers vendor 0x3231 only; paths in options are used literally (no shell or ~/$ expansion)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import kp_runtime as ort
from kp_backend.nef import build_simple_nef, read_nef
from kp_runtime.errors import KpRuntimeError

from rel_helpers import DIGITS, REPO

EVIL_MODULE = "kp_rel_evil_payload"


def _canary(tmp_path: Path) -> Path:
    """A module that, if ever imported, writes a file."""
    marker = tmp_path / "PWNED"
    (tmp_path / f"{EVIL_MODULE}.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n")
    return marker


def test_model_strings_naming_code_are_never_imported(tmp_path, virtual, monkeypatch):
    marker = _canary(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    payload = f"__import__('{EVIL_MODULE}')"
    nef = build_simple_nef("KL520", [{
        "id": 3, "name": payload,
        "inputs": [{"shape": [1, 3, 8, 8], "layout": "4W4C8B", "radix": 7, "name": payload}],
        "outputs": [{"shape": [1, 10, 1, 1], "layout": "16W1C8B", "radix": 4,
                     "name": EVIL_MODULE}]}],
        platform=payload, compiler_version=f"{EVIL_MODULE}:main",
        toolchain_version="$(touch PWNED2)")
    path = tmp_path / "evil.nef"
    path.write_bytes(nef)
    read_nef(nef)
    with ort.InferenceSession(str(path), providers=[("kneron", {"device": virtual()})]) as s:
        s.run(None, {s.get_inputs()[0].name: __import__("numpy").zeros((1, 3, 8, 8), "f4")})
        s.get_modelmeta()
    assert EVIL_MODULE not in sys.modules and not marker.exists()
    assert not (Path.cwd() / "PWNED2").exists()


def test_onnx_metadata_and_domains_naming_code_are_never_imported(tmp_path, monkeypatch):
    import onnx

    marker = _canary(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = onnx.load(str(DIGITS / "digits_cnn.onnx"))
    onnx.helper.set_model_props(model, {"module": EVIL_MODULE, "eval": f"__import__('{EVIL_MODULE}')"})
    model.producer_name = EVIL_MODULE
    path = tmp_path / "evil.onnx"
    onnx.save(model, str(path))
    with ort.InferenceSession(str(path), providers=["cpu"]) as s:
        s.get_modelmeta()
    assert EVIL_MODULE not in sys.modules and not marker.exists()
    # a custom-op domain naming a module is an error, not an import
    node = model.graph.node[0]
    node.domain = EVIL_MODULE
    model.opset_import.append(onnx.helper.make_opsetid(EVIL_MODULE, 1))
    onnx.save(model, str(path))
    with pytest.raises(Exception):
        ort.InferenceSession(str(path), providers=["cpu"]).run(None, {})
    assert EVIL_MODULE not in sys.modules and not marker.exists()


def test_library_has_no_dynamic_code_execution():
    """No eval/exec/pickle/dynamic import/shell in library code."""
    bad = re.compile(r"\b(eval|exec)\(|pickle\.loads?\(|import_module\(|__import__\(|"
                     r"shell=True|os\.system\(|os\.popen\(|subprocess\.")
    hits = []
    for pkg in ("kp_runtime", "kp_backend"):
        for file in (REPO / pkg).rglob("*.py"):
            for n, line in enumerate(file.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if bad.search(code):
                    hits.append(f"{file.relative_to(REPO)}:{n}: {line.strip()}")
    # Reviewed dynamic imports, none fed from a model file: provider plugins named by
    # installed packages' entry points / register calls, the CLI's own subcommand modules
    # (f"{__name__}.{name}" of its package), the benchmark runner (a constant).
    reviewed = ("kp_runtime/plugins.py:", 'import_module(f"{__name__}.{info.name}")',
                'import_module("benchmarks.runner")')
    allowed = [h for h in hits if "import_module(" in h and any(r in h for r in reviewed)]
    assert sorted(set(hits) - set(allowed)) == [], hits


def test_udev_rule_grants_vendor_3231_only():
    from kp_backend.usb import UDEV_RULE_PATH

    rules = [line for line in Path(UDEV_RULE_PATH).read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert rules, "the rule file has no rule"
    for line in rules:
        assert 'ATTRS{idVendor}=="3231"' in line or 'ATTR{idVendor}=="3231"' in line, line
        assert "idProduct" not in line or "3231" in line
        assert "RUN" not in line and "PROGRAM" not in line, line  # runs nothing
        assert "*" not in line.split("idVendor", 1)[1].split(",", 1)[0], line


@pytest.mark.parametrize("name", ["$HOME/x.onnx", "~/x.onnx", "`touch PWNED3`.onnx",
                                  "$(touch PWNED3).onnx", "x.onnx; touch PWNED3"])
def test_paths_in_options_are_not_shell_expanded(tmp_path, virtual, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KpRuntimeError) as info:
        ort.InferenceSession(str(DIGITS / "digits_cnn.nef"),
                             providers=[("kneron", {"device": virtual(), "onnx": name})])
    assert name in str(info.value) or name.split("/")[-1] in str(info.value)
    assert not list(tmp_path.iterdir()), "something was created"
    # the literal name works when it exists
    (tmp_path / "lit").mkdir()
    literal = tmp_path / "lit" / name.replace("/", "_")
    literal.write_bytes((DIGITS / "digits_cnn.onnx").read_bytes())
    with ort.InferenceSession(str(DIGITS / "digits_cnn.nef"),
                              providers=[("kneron", {"device": virtual(), "onnx": str(literal)})]):
        pass


def test_cli_paths_are_literal(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kp_backend.nef", "$(touch PWNED4).nef"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "$(touch PWNED4).nef" in proc.stderr
    assert not (tmp_path / "PWNED4").exists()
