"""The examples: classify.py on kneron (virtual) and cpu, and the onnxruntime port."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import pytest

from kneron_helpers import REPO

PORT = REPO / "examples" / "onnxruntime_port"


def _run(args, env_extra=None, timeout=120):
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_classify_prints_accuracies_and_agreement(virtual):
    out = _run([REPO / "examples" / "classify.py", "--limit", "120",
                "--device", virtual()])
    accuracies = dict(re.findall(r"^(kneron|cpu)\s.*accuracy ([\d.]+)%", out, re.M))
    assert set(accuracies) == {"kneron", "cpu"}, out
    assert float(accuracies["cpu"]) > 95 and float(accuracies["kneron"]) > 93
    agreement = float(re.search(r"top-1 agreement kneron vs cpu: ([\d.]+)%", out).group(1))
    assert agreement >= 95


def _code_lines(path):
    """Source lines outside the module docstring."""
    source = path.read_text()
    tree = ast.parse(source)
    doc_end = tree.body[0].end_lineno if isinstance(tree.body[0], ast.Expr) else 0
    return source.splitlines()[doc_end:]


def test_the_port_changes_only_the_import_and_the_provider_list():
    before, after = _code_lines(PORT / "classify_ort.py"), _code_lines(PORT / "classify_kp.py")
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert changed == [("import onnxruntime as ort", "import kp_runtime as ort"),
                       ('PROVIDERS = ["CPUExecutionProvider"]',
                        'PROVIDERS = ["KneronExecutionProvider"]')]


def test_the_ported_script_runs_on_the_virtual_dongle(virtual):
    out = _run([PORT / "classify_kp.py", REPO / "examples" / "digits" / "digits_cnn.nef"],
               {"KP_VIRTUAL_DEVICES": virtual().partition(":")[2]})
    assert "providers: ['KneronExecutionProvider']" in out
    assert "input input tensor(float) [1, 1, 8, 8] -> output logits tensor(float) [1, 10]" in out
    assert "wrong dtype rejected: InvalidArgument" in out
    assert float(re.search(r"accuracy ([\d.]+)", out).group(1)) > 0.93


def test_the_original_runs_on_onnxruntime():
    pytest.importorskip("onnxruntime")
    out = _run([PORT / "classify_ort.py", REPO / "examples" / "digits" / "digits_cnn.onnx"])
    assert "accuracy 0.9778 (352/360)" in out
