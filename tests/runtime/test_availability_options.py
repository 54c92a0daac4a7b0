"""Availability may depend on the session's provider options (e.g. a virtual device)."""

from __future__ import annotations

import pytest

import kp_runtime as ort
from kp_runtime import plugins
from kp_runtime.errors import ProviderUnavailable
from kp_runtime.provider import Availability, ExecutionProvider, ProviderSession

from .models import mlp


class _EchoSession(ProviderSession):
    def __init__(self, model):
        self._cpu = ort.InferenceSession(model.data, providers=["cpu"])
        self.inputs, self.outputs = self._cpu.get_inputs(), self._cpu.get_outputs()

    def run(self, output_names, feeds, run_options=None):
        return self._cpu.run(output_names, feeds)


class _NeedsOptionProvider(ExecutionProvider):
    name, aliases, priority, model_formats = "OptionGatedExecutionProvider", ("gated",), 5, ("onnx",)

    def is_available(self, options=None):
        if (options or {}).get("device") == "virtual":
            return Availability.yes()
        return Availability.no("no hardware device present")

    def create_session(self, model, options, session_options):
        return _EchoSession(model)


class _LegacyProvider(_NeedsOptionProvider):
    """A provider written against the option-less signature still works."""

    name, aliases = "LegacyExecutionProvider", ("legacy",)

    def is_available(self):
        return Availability.yes()


class _Plugin:
    @ort.hookimpl
    def kp_runtime_providers(self):
        return [_NeedsOptionProvider(), _LegacyProvider()]


@pytest.fixture
def gated(registry):
    plugin = _Plugin()
    plugins.register(plugin)
    yield
    plugins.unregister(plugin)


def test_options_make_the_provider_available(gated):
    session = ort.InferenceSession(mlp(), providers=[("gated", {"device": "virtual"})])
    assert session.get_providers() == ["OptionGatedExecutionProvider"]


def test_without_the_option_it_is_unavailable_with_its_reason(gated):
    with pytest.raises(ProviderUnavailable, match="no hardware device present"):
        ort.InferenceSession(mlp(), providers=["gated"])
    assert "OptionGatedExecutionProvider" not in ort.get_available_providers()


def test_option_less_is_available_signature_is_still_supported(gated):
    session = ort.InferenceSession(mlp(), providers=[("legacy", {"device": "x"})])
    assert session.get_providers() == ["LegacyExecutionProvider"]
