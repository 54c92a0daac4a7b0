"""InferenceSession.get_quantization forwards the provider session's optional quantization()."""

from __future__ import annotations

import numpy as np

import kp_runtime as ort
from kp_runtime import plugins
from kp_runtime.provider import Availability, ExecutionProvider, ProviderSession
from kp_runtime.quantization import TensorQuantization

from .models import mlp, sample_feed


class _FixedPointSession(ProviderSession):
    def __init__(self, model):
        self._cpu = ort.InferenceSession(model.data, providers=["cpu"])
        self.inputs, self.outputs = self._cpu.get_inputs(), self._cpu.get_outputs()

    def run(self, output_names, feeds, run_options=None):
        return self._cpu.run(output_names, feeds)

    def quantization(self):
        return {"inputs": {}, "outputs": {self.outputs[0].name: TensorQuantization(self.outputs[0].name, 0.25)}}


class _FixedPointProvider(ExecutionProvider):
    name, aliases, priority, model_formats = "FixedPointExecutionProvider", ("fixed",), 5, ("onnx",)

    def is_available(self):
        return Availability.yes()

    def create_session(self, model, options, session_options):
        return _FixedPointSession(model)


class _Plugin:
    @ort.hookimpl
    def kp_runtime_providers(self):
        return [_FixedPointProvider()]


def test_float_provider_reports_no_quantization(registry):
    session = ort.InferenceSession(mlp(), providers=["cpu"])
    assert session.get_quantization() == {"inputs": {}, "outputs": {}}


def test_fixed_point_provider_quantization_is_forwarded(registry):
    plugin = _Plugin()
    plugins.register(plugin)
    try:
        session = ort.InferenceSession(mlp(), providers=["fixed"])
        info = session.get_quantization()
        out_name = session.get_outputs()[0].name
        assert list(info["outputs"]) == [out_name]
        assert info["outputs"][out_name].step == 0.25
        assert info["inputs"] == {}
        assert np.all(np.isfinite(session.run(None, sample_feed("mlp"))[0]))
    finally:
        plugins.unregister(plugin)
