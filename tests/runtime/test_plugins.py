"""Plugin discovery: in-process registration, entry points, broken plugins, the docs' example."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import kp_runtime as ort
from kp_runtime import plugins
from kp_runtime.cli import main

from .models import mlp, sample_feed

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO / "examples" / "third_party_provider"


def _make_dist(root: Path, dist: str, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution (``.dist-info``) declaring ``kp_runtime`` entry points."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[kp_runtime]\n{lines}")


@pytest.fixture
def site(tmp_path, monkeypatch, registry):
    """A temporary site directory on sys.path; modules imported from it are forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    importlib.invalidate_caches()
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith(("kp_ort_provider", "kp_test_")):
            del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def example_on_path(monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    yield
    sys.modules.pop("kp_ort_provider", None)


def _check_example_runs(session: ort.InferenceSession) -> None:
    assert session.get_providers() == ["OrtExecutionProvider"]
    cpu = ort.InferenceSession(mlp(), providers=["cpu"])
    feed = sample_feed("mlp")
    np.testing.assert_allclose(session.run(None, feed)[0], cpu.run(None, feed)[0], rtol=1e-5, atol=1e-6)
    assert [str(a) for a in session.get_inputs()] == [str(a) for a in cpu.get_inputs()]


def test_cpu_provider_comes_from_the_entry_point(registry):
    names = [p.name for p in registry.providers()]
    assert names == ["CPUExecutionProvider"]
    assert registry.pm.get_plugin("cpu") is importlib.import_module("kp_runtime.providers.cpu")


def test_example_provider_registered_in_process(example_on_path, registry):
    import kp_ort_provider

    plugins.register(kp_ort_provider)
    assert ort.get_available_providers()[0] == "OrtExecutionProvider"
    _check_example_runs(ort.InferenceSession(mlp(), providers=["ort"]))
    _check_example_runs(ort.InferenceSession(mlp()))  # priority 10 beats CPU's 0
    plugins.unregister(kp_ort_provider)
    assert "OrtExecutionProvider" not in ort.get_all_providers()


def test_example_provider_found_by_entry_point(example_on_path, site, capsys):
    _make_dist(site, "kp-ort-provider", {"ort": "kp_ort_provider"})
    _check_example_runs(ort.InferenceSession(mlp(), providers=["OrtExecutionProvider"]))
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    assert "OrtExecutionProvider (ort)  priority=10  formats=onnx  available" in out


def test_autoload_can_be_disabled(example_on_path, site, monkeypatch):
    _make_dist(site, "kp-ort-provider", {"ort": "kp_ort_provider"})
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD_ENV, "1")
    plugins.reset()
    names = ort.get_all_providers()
    assert "CPUExecutionProvider" in names and "OrtExecutionProvider" not in names  # own plugins load
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD_ENV, "0")
    plugins.reset()
    assert "OrtExecutionProvider" in ort.get_all_providers()


def test_broken_plugins_are_reported_and_isolated(site, capsys):
    (site / "kp_test_raising_hook.py").write_text(textwrap.dedent("""
        from kp_runtime import hookimpl

        @hookimpl
        def kp_runtime_providers():
            raise RuntimeError("driver library missing")
    """))
    (site / "kp_test_not_a_provider.py").write_text(textwrap.dedent("""
        from kp_runtime import hookimpl

        @hookimpl
        def kp_runtime_providers():
            return ["not a provider"]
    """))
    _make_dist(site, "kp-test-broken", {
        "kp_test_missing": "kp_test_no_such_module",
        "kp_test_raising": "kp_test_raising_hook",
        "kp_test_bogus": "kp_test_not_a_provider",
    })
    assert ort.get_all_providers() == ["CPUExecutionProvider"]
    ort.InferenceSession(mlp()).run(None, sample_feed("mlp"))
    failures = {f.name: f for f in plugins.plugin_failures() if f.name.startswith("kp_test_")}
    assert set(failures) == {"kp_test_missing", "kp_test_raising", "kp_test_bogus"}
    assert "ModuleNotFoundError" in failures["kp_test_missing"].error
    assert "kp-test-broken" in failures["kp_test_missing"].origin
    assert "driver library missing" in failures["kp_test_raising"].error
    assert "not a kp_runtime.provider.ExecutionProvider" in failures["kp_test_bogus"].error
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    assert "plugin 'kp_test_missing' failed (kp_test_no_such_module (entry point of kp-test-broken))" in out
    assert "CPUExecutionProvider (cpu)" in out


def test_plugin_cli_command_via_hook(site, capsys):
    (site / "kp_test_cli_plugin.py").write_text(textwrap.dedent("""
        from kp_runtime import hookimpl

        @hookimpl
        def kp_runtime_cli_commands(subparsers):
            parser = subparsers.add_parser("hello", help="say hello")
            parser.add_argument("--name", default="world")
            parser.set_defaults(func=lambda args: print(f"hello {args.name}") or 3)
    """))
    _make_dist(site, "kp-test-cli", {"kp_test_cli": "kp_test_cli_plugin"})
    assert main(["hello", "--name", "kp"]) == 3
    assert capsys.readouterr().out == "hello kp\n"


def test_docs_show_the_tested_example():
    doc = (REPO / "docs" / "providers.md").read_text()
    code = (EXAMPLE_DIR / "kp_ort_provider.py").read_text().rstrip()
    assert f"```python\n{code}\n```" in doc
    assert (EXAMPLE_DIR / "pyproject.toml").read_text().rstrip() in doc
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 30
