"""The plugin: discovery through the entry point, availability, can_run, devices, CLI."""

from __future__ import annotations

import pytest

import kp_runtime as ort
from kp_runtime import plugins
from kp_runtime.cli import main as cli
from kp_runtime.model_source import ModelSource
from kp_backend.provider import KneronExecutionProvider


def test_found_by_name_and_alias():
    assert "KneronExecutionProvider" in ort.get_all_providers()
    provider = plugins.find_provider("kneron")
    assert isinstance(provider, KneronExecutionProvider)
    assert plugins.find_provider("KneronExecutionProvider") is provider
    assert provider.model_formats == ("nef",) and provider.priority > 0


def test_availability(monkeypatch, virtual):
    provider = KneronExecutionProvider()
    assert provider.is_available()  # KP_VIRTUAL_DEVICES is set by the fixture
    assert "KneronExecutionProvider" in ort.get_available_providers()
    assert provider.is_available({"device": "virtual"})
    monkeypatch.delenv("KP_VIRTUAL_DEVICES")
    answer = provider.is_available()
    if not answer:  # no real dongle on this machine
        assert "KP_VIRTUAL_DEVICES" in answer.reason
    assert provider.is_available({"device": virtual()})


def test_list_devices_shows_virtual_dongles(monkeypatch, virtual):
    monkeypatch.setenv("KP_VIRTUAL_DEVICES", virtual("KL520,KL720").partition(":")[2])
    devices = KneronExecutionProvider().list_devices()
    assert [d.properties["chip"] for d in devices] == ["KL520", "KL720"]
    assert all(d.type == "NPU" and d.id.startswith("kneron:") for d in devices)


def test_can_run(digits, tmp_path):
    provider = KneronExecutionProvider()
    assert provider.can_run(ModelSource(str(digits["nef"])))
    assert provider.can_run(ModelSource(digits["nef"].read_bytes()))
    assert not provider.can_run(ModelSource(str(digits["onnx"])))
    broken = tmp_path / "broken.nef"
    broken.write_bytes(digits["nef"].read_bytes()[:-4] + b"\0\0\0\0")
    answer = provider.can_run(ModelSource(str(broken)))
    assert not answer and "CRC" in answer.reason.upper()


def test_cli_commands_are_registered(capsys, digits):
    assert cli(["inspect", str(digits["nef"]), "--json"]) == 0
    assert '"chip": "KL520"' in capsys.readouterr().out
    assert cli(["providers"]) == 0
    assert "KneronExecutionProvider" in capsys.readouterr().out


def test_onnx_models_still_go_to_the_cpu(digits):
    with ort.InferenceSession(str(digits["onnx"])) as s:
        assert s.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("bad", [{"nope": "1"}, {"device": "virtual:KL730"}])
def test_bad_options_fail_session_creation(digits, bad):
    with pytest.raises(ort.InvalidArgument):
        ort.InferenceSession(str(digits["nef"]), providers=[("kneron", bad)])
