"""Smoke test of the benchmark runner and ``kp-runtime bench`` (no timing assertions)."""

from __future__ import annotations

import json

import pytest

from kp_runtime.cli import main as cli_main
from kp_runtime.cli.bench import _load_runner, benchmarks_dir

FAKE = {
    "fast_thing": {"value": 12.5, "unit": "us", "target": 300.0, "ok": True, "note": "fine"},
    "slow_thing": {"value": 0.5, "unit": "x", "target": 0.9, "ok": False, "note": ""},
    "report_only": {"value": None, "unit": "ms", "target": None, "ok": None,
                    "note": "skipped: no data"},
}


@pytest.fixture(scope="module")
def runner():
    return _load_runner(benchmarks_dir())


def test_table_formats_fake_metrics(runner):
    metrics = {name: runner._normalise(m) for name, m in FAKE.items()}
    lines = runner.format_table(metrics).splitlines()
    assert lines[0].split()[:5] == ["metric", "value", "unit", "target", "ok"]
    assert set(lines[1]) <= {"-", " "}
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows.keys() == FAKE.keys()
    assert rows["fast_thing"].split()[1:5] == ["12.5", "us", "300", "yes"]
    assert rows["slow_thing"].split()[1:5] == ["0.5", "x", "0.9", "NO"]
    assert rows["report_only"].split()[1:3] == ["ms", "-"]  # empty value and target
    assert rows["report_only"].endswith("skipped: no data")


def test_report_document(runner):
    doc = runner.report({k: runner._normalise(v) for k, v in FAKE.items()}, {}, quick=True)
    json.dumps(doc)  # serialisable
    assert doc["metrics"]["slow_thing"] == {**FAKE["slow_thing"]}
    assert {"python", "numpy", "cpu", "nproc"} <= doc["machine"].keys()


def test_one_real_area_quick_writes_json(runner, tmp_path, capsys):
    out = tmp_path / "bench.json"
    status = runner.main(["--quick", "--only", "layouts", "--json", str(out)])
    doc = json.loads(out.read_text())
    metrics = doc["metrics"]
    assert status == (1 if any(m["ok"] is False for m in metrics.values()) else 0)
    assert doc["errors"] == {} and doc["quick"] is True
    for name in ("decode_mb_s", "encode_mb_s", "decode_ratio", "encode_ratio"):
        m = metrics[name]
        assert m["value"] > 0 and m["unit"] and m["target"] is not None
        assert m["ok"] == (m["value"] >= m["target"])
    table = capsys.readouterr().out
    assert "decode_mb_s" in table and "encode_mb_s" in table


def test_every_area_module_has_run(runner):
    import importlib

    assert {"runtime", "provider", "device", "layouts", "nef"} <= set(runner.areas())
    for module in runner.discover():
        assert callable(importlib.import_module(module).run)


def test_unknown_area_is_a_usage_error(runner, capsys):
    with pytest.raises(SystemExit) as info:
        runner.main(["--only", "no_such_area"])
    assert info.value.code == 2
    assert "no_such_area" in capsys.readouterr().err


def test_cli_bench_unknown_area_exit_2(capsys):
    assert cli_main(["bench", "--only", "no_such_area"]) == 2
    assert "unknown benchmark area" in capsys.readouterr().err


def test_cli_bench_without_checkout_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        _load_runner(tmp_path / "benchmarks")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a source checkout" in err[0]
