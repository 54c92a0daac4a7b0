"""The compare command line: standalone (python -m kp_runtime.compare) and as `kp-runtime compare`."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from kp_runtime.compare import CompareReport
from kp_runtime.compare.cli import ProgressBar, main

from .models import linear, save, weights


@pytest.fixture
def models(tmp_path):
    return (
        save(linear(weights(), relu=True), tmp_path / "m.onnx"),
        save(linear(weights() * 1.01, relu=True), tmp_path / "changed.onnx"),
    )


def test_two_providers_pass_and_write_a_report(models, tmp_path, capsys) -> None:
    model, _ = models
    out = tmp_path / "r.json"
    assert main([str(model), "--providers", "cpu", "CPUExecutionProvider", "-n", "3", "--report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "logits" in text and text.strip().endswith("PASSED (2 output(s))")
    report = CompareReport.from_json(out)
    assert report.passed and report.feeds == 3


def test_failing_comparison_exits_1(models, capsys) -> None:
    model, changed = models
    code = main([str(changed), "--providers", "cpu", "cpu", "--reference-model", str(model), "-n", "2"])
    assert code == 1
    assert "FAILED | mismatched outputs: ['logits', 'act']" in capsys.readouterr().out
    assert main([str(changed), "--providers", "cpu", "cpu", "--reference-model", str(model), "-n", "2",
                 "--atol", "1", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == "PASSED (2 output(s))"
    assert main([str(changed), "--providers", "cpu", "cpu", "--reference-model", str(model), "-n", "2",
                 "--atol", "1", "act:0", "-q"]) == 1


def test_golden_save_and_compare(models, tmp_path, capsys) -> None:
    model, changed = models
    golden = tmp_path / "golden"
    assert main([str(model), "--providers", "cpu", "--save-golden", str(golden), "-n", "4", "--seed", "3"]) == 0
    assert "saved 4 feed(s) of CPUExecutionProvider outputs" in capsys.readouterr().out
    assert main([str(model), "--providers", "cpu", "--save-golden", str(golden)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main([str(model), "--providers", "cpu", "--golden", str(golden)]) == 0
    assert "vs  b = golden:CPUExecutionProvider" in capsys.readouterr().out
    assert main([str(changed), "--providers", "cpu", "--golden", str(golden), "-n", "1"]) == 1
    assert "model hash differs" in capsys.readouterr().out


def test_inputs_from_files(models, tmp_path, capsys) -> None:
    model, _ = models
    folder = tmp_path / "feeds"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"{i}.npy", np.full((2, 6), i, np.float32))
    assert main([str(model), "--providers", "cpu", "cpu", "--inputs", str(folder), "--report", str(tmp_path / "r.json")]) == 0
    assert CompareReport.from_json(tmp_path / "r.json")["logits"].shape_a == (2, 6)[:1] + (5,)
    assert main([str(model), "--providers", "cpu", "cpu", "--inputs", str(folder), "-n", "2", "--report",
                 str(tmp_path / "r.json")]) == 0
    assert CompareReport.from_json(tmp_path / "r.json").feeds == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--providers", "cpu"], "exactly two providers"),
        (["--providers", "cpu", "cpu", "cpu"], "exactly two providers"),
        (["--providers", "cpu", "cpu", "--golden", "g"], "exactly one provider"),
        (["--providers", "cpu", "cpu", "--atol", "big"], "--atol"),
        (["--providers", "cpu", "cpu", "--min-cosine", "2"], "min_cosine"),
        (["--providers", "cpu", "cpu", "--provider-option", "novalue"], "KEY=VALUE"),
        (["--providers", "cpu", "cpu", "--provider-option", "gpu:a=1"], "not one of --providers"),
        (["--providers", "cpu", "cpu", "--shape", "x"], "--shape"),
        (["--providers", "cpu", "cpu", "-n", "0"], "-n must be"),
        (["--providers", "cpu", "cpu", "--overwrite"], "--overwrite"),
        (["--providers", "cpu", "--golden", "g", "--inputs", "x.npz"], "--inputs"),
        (["--providers", "nosuch", "cpu"], "nosuch"),
        (["--providers", "cpu", "cpu", "--inputs", "/no/such/feeds"], "does not exist"),
    ],
)
def test_usage_and_model_errors_exit_2(models, capsys, args, message) -> None:
    model, _ = models
    assert main([str(model), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kp-runtime compare: error:") and message in err and err.count("\n") == 1


def test_missing_model_and_argparse_errors_exit_2(tmp_path, capsys) -> None:
    assert main([str(tmp_path / "absent.onnx"), "--providers", "cpu", "cpu"]) == 2
    assert "NoSuchFile" in capsys.readouterr().err
    assert main(["--providers", "cpu", "cpu"]) == 2  # no MODEL


def test_registered_as_a_kp_runtime_subcommand(models, capsys) -> None:
    from kp_runtime.cli import main as kp_main

    model, _ = models
    assert kp_main(["compare", str(model), "--providers", "cpu", "cpu", "-n", "1", "-q"]) == 0
    assert capsys.readouterr().out.strip() == "PASSED (2 output(s))"
    assert kp_main(["compare", str(model), "--providers", "cpu"]) == 2


def test_python_dash_m_entry_point(models) -> None:
    model, changed = models
    done = subprocess.run(
        [sys.executable, "-m", "kp_runtime.compare", str(changed), "--providers", "cpu", "cpu",
         "--reference-model", str(model), "-n", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "FAILED" in done.stdout and "[#" not in done.stderr  # no progress bar when not a terminal


def test_progress_bar() -> None:
    stream = io.StringIO()
    bar = ProgressBar("compare", stream=stream, enabled=True, width=10)
    bar(5, 10)
    bar(10, 10)
    bar.close()
    assert stream.getvalue() == "\rcompare [#####-----] 5/10 feeds\rcompare [##########] 10/10 feeds\n"
    unknown = io.StringIO()
    ProgressBar("compare", stream=unknown, enabled=True)(3, None)
    assert unknown.getvalue() == "\rcompare 3 feeds"
    silent = io.StringIO()  # not a TTY: off by default
    ProgressBar("compare", stream=silent)(1, 2)
    assert silent.getvalue() == ""


def test_report_json_is_written_even_when_failing(models, tmp_path) -> None:
    model, changed = models
    out = tmp_path / "fail.json"
    assert main([str(changed), "--providers", "cpu", "cpu", "--reference-model", str(model), "-n", "1", "-q",
                 "--report", str(out)]) == 1
    data = json.loads(out.read_text())
    assert data["passed"] is False and data["min_atol"] > 0
