"""``kp-runtime`` command line: providers, run, help and one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from kp_runtime.cli import main

from .models import mlp, sample_feed, two_inputs


@pytest.fixture
def mlp_file(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp(), path)
    x = tmp_path / "x.npy"
    np.save(x, sample_feed("mlp")["x"])
    return path, x


def test_run_prints_and_saves_outputs(mlp_file, tmp_path, capsys):
    model, x = mlp_file
    out = tmp_path / "out.npz"
    assert main(["run", str(model), "--provider", "cpu", "--input", f"x={x}", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "provider: CPUExecutionProvider" in text and "y: float32 [3, 3]" in text
    import kp_runtime as ort

    expected = ort.InferenceSession(mlp(), providers=["cpu"]).run(None, {"x": np.load(x)})[0]
    with np.load(out) as saved:
        assert list(saved) == ["y"]
        np.testing.assert_array_equal(saved["y"], expected)


def test_run_multiple_inputs(tmp_path, capsys):
    model = tmp_path / "two.onnx"
    onnx.save(two_inputs(), model)
    feed = sample_feed("two_inputs")
    args = ["run", str(model)]
    for name, value in feed.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["-i", f"{name}={tmp_path / f'{name}.npy'}"]
    assert main(args) == 0
    assert "idx1: int64 [3]" in capsys.readouterr().out


def test_providers_json(capsys):
    assert main(["providers", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cpu = next(p for p in data["providers"] if p["name"] == "CPUExecutionProvider")
    assert cpu["available"] is True and cpu["aliases"] == ["cpu"] and cpu["devices"][0]["type"] == "CPU"


def _error_line(capsys) -> str:
    """The one error line, last on stderr (log warnings, e.g. a broken plugin, may precede it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("kp-runtime: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert all(ln.startswith("kp-runtime: warning: ") for ln in lines[:-1]), lines
    return errors[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "{tmp}/absent.onnx"], "File doesn't exist"),
        (["run", "{model}", "--input", "x"], "--input expects NAME=FILE.npy"),
        (["run", "{model}", "--input", "x={tmp}/none.npy"], "does not exist"),
        (["run", "{model}", "--input", "x={model}"], "cannot read"),
        (["run", "{model}", "--provider", "tpu", "--input", "x={x}"], "Unknown execution provider 'tpu'"),
        (["run", "{model}"], "Required inputs (['x']) are missing"),
        (["run", "{model}", "--input", "x={x}", "--input", "x={x}"], "given twice"),
        (["run", "{model}", "--input", "x={bad}"], "Unexpected input data type"),
        (["run"], "the following arguments are required: MODEL"),
        (["frobnicate"], "invalid choice"),
        (["providers", "--bogus"], "unrecognized arguments"),
    ],
)
def test_errors_are_one_line_exit_2(argv, expected, mlp_file, tmp_path, capsys):
    model, x = mlp_file
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 4), np.float64))
    argv = [a.format(tmp=tmp_path, model=model, x=x, bad=bad) for a in argv]
    assert main(argv) == 2
    assert expected in _error_line(capsys)


@pytest.mark.parametrize("command", [[], ["providers"], ["run"]])
def test_help_on_every_subcommand(command, capsys):
    assert main([*command, "--help"]) == 0
    assert "usage: kp-runtime" in capsys.readouterr().out


def test_verbose_flag_logs_provider_choice(mlp_file, capsys):
    model, x = mlp_file
    assert main(["-v", "run", str(model), "--input", f"x={x}"]) == 0
    assert "kp-runtime: info: session for" in capsys.readouterr().err
    assert main(["run", str(model), "--input", f"x={x}"]) == 0
    assert "info" not in capsys.readouterr().err


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: kp-runtime" in capsys.readouterr().err


def test_console_script_entry(mlp_file):
    """The installed ``kp-runtime`` script is wired to ``main`` (one subprocess)."""
    script = shutil.which("kp-runtime") or str(Path(sys.executable).parent / "kp-runtime")
    if not Path(script).exists():
        pytest.skip("the kp-runtime console script is not installed (pip install -e .)")
    model, x = mlp_file
    result = subprocess.run(
        [script, "run", str(model), "--input", f"x={x}", "--provider", "nope"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("kp-runtime: error: ValueError: Unknown execution provider 'nope'")
    assert all(ln.startswith("kp-runtime: warning: ") for ln in lines[:-1]), lines


def test_command_modules_are_discovered_and_a_broken_one_is_contained(tmp_path, monkeypatch, capsys):
    """A new command is one module in the cli package; a broken one leaves the others working."""
    import kp_runtime.cli as cli

    (tmp_path / "zz_hello.py").write_text(
        "def register(subparsers):\n"
        "    p = subparsers.add_parser('zz-hello', help='test command')\n"
        "    p.set_defaults(func=lambda args: print('zz hello') or 0)\n"
    )
    (tmp_path / "zz_broken.py").write_text("raise ImportError('missing optional dependency')\n")
    monkeypatch.setattr(cli, "__path__", [*cli.__path__, str(tmp_path)])
    try:
        assert main(["zz-hello"]) == 0
        captured = capsys.readouterr()
        assert captured.out == "zz hello\n"
        assert "command module zz_broken failed to load: ImportError: missing optional dependency" in captured.err
        assert main(["providers"]) == 0
    finally:
        for name in ("kp_runtime.cli.zz_hello", "kp_runtime.cli.zz_broken"):
            sys.modules.pop(name, None)


def test_closed_stdout_is_not_an_error():
    """``kp-runtime providers | head -0``: the reader went away; exit 0, nothing on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from kp_runtime.cli import main; "
         "sys.exit(main(['providers']))"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the child writes anything
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"error" not in err.lower()
