"""Every legacy-example port runs on the virtual dongle selected by one environment variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _shared import require_shared

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kp_legacy"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def run(script: str, spec: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KP_VIRTUAL_DEVICES=spec)
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_examples_exist():
    assert {"generic_inference.py", "generic_inference_bypass_pre_processing.py",
            "generic_inference_multi_thread.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("spec", ["KL520:fast", "KL720:fast"])
def test_example_runs_on_the_virtual_dongle(script, spec):
    proc = run(script, spec, "-n", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("done"), proc.stdout
    assert "error" not in proc.stdout


def test_example_with_a_real_nef():
    model = str(require_shared("models", "nef", "KL520", "ssd_fd_lm_plus.nef"))
    proc = run("generic_inference.py", "KL520:fast", "--format", "RGBA8888", "--model", model)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[upload model] ids [32, 5]" in proc.stdout and "8 output nodes" in proc.stdout
