"""Provider arguments, aliases, strict selection and skipping with reasons."""

from __future__ import annotations

import logging
import types

import numpy as np
import pytest

import kp_runtime as ort
from kp_runtime import hookimpl
from kp_runtime.errors import ProviderUnavailable
from kp_runtime.provider import Availability, DeviceInfo, ExecutionProvider, ProviderSession
from kp_runtime.providers.cpu import CPUSession

from .models import mlp, sample_feed


class DoublingSession(CPUSession):
    """Runs the model on the reference evaluator, then doubles float outputs (recognisable)."""

    def run(self, output_names, feeds, run_options=None):
        return [2 * r for r in super().run(output_names, feeds, run_options)]


class NoDeviceProvider(ExecutionProvider):
    name, aliases, priority = "NoDeviceExecutionProvider", ("nodev",), 50

    def is_available(self):
        return Availability.no("no dongle plugged in")

    def create_session(self, model, options, session_options):  # pragma: no cover - never reached
        raise AssertionError("an unavailable provider must not create sessions")


class DoublingProvider(ExecutionProvider):
    name, aliases, priority = "DoublingExecutionProvider", ("dbl", "double"), 20

    def __init__(self):
        self.created_with = []

    def list_devices(self):
        return [DeviceInfo(id="dbl:0", type="NPU", description="pretend NPU")]

    def create_session(self, model, options, session_options):
        self.created_with.append(options)
        return DoublingSession(model)


class NefOnlyProvider(ExecutionProvider):
    name, aliases, priority, model_formats = "NefOnlyExecutionProvider", ("nef",), 30, ("nef",)

    def create_session(self, model, options, session_options):  # pragma: no cover
        raise AssertionError("must not be asked to run ONNX")


class ExplodingProvider(ExecutionProvider):
    name, priority = "ExplodingExecutionProvider", 40

    def create_session(self, model, options, session_options):
        raise ort.EPFail("firmware refused the model")


def _plugin(*providers):
    @hookimpl
    def kp_runtime_providers():
        return list(providers)

    return types.SimpleNamespace(kp_runtime_providers=kp_runtime_providers)


@pytest.fixture
def extra(registry):
    doubling = DoublingProvider()
    registry.register(_plugin(NoDeviceProvider(), doubling, NefOnlyProvider(), ExplodingProvider()), "test-extra")
    return doubling


def test_registered_providers_sorted_by_priority(extra):
    assert ort.get_all_providers() == [
        "NoDeviceExecutionProvider", "ExplodingExecutionProvider", "NefOnlyExecutionProvider",
        "DoublingExecutionProvider", "CPUExecutionProvider",
    ]
    assert "NoDeviceExecutionProvider" not in ort.get_available_providers()
    assert ort.get_device() == "NPU"


@pytest.mark.parametrize("spec", ["dbl", "DOUBLE", "DoublingExecutionProvider", ("dbl", {"k": 3})])
def test_aliases_and_tuples(extra, spec):
    session = ort.InferenceSession(mlp(), providers=[spec])
    assert session.get_providers() == ["DoublingExecutionProvider"]
    x = sample_feed("mlp")
    cpu = ort.InferenceSession(mlp(), providers=["cpu"])
    np.testing.assert_allclose(session.run(None, x)[0], 2 * cpu.run(None, x)[0])
    if isinstance(spec, tuple):
        assert extra.created_with[-1] == {"k": "3"}
        assert session.get_provider_options() == {"DoublingExecutionProvider": {"k": "3"}}


def test_unknown_provider_lists_available(extra):
    with pytest.raises(ValueError) as info:
        ort.InferenceSession(mlp(), providers=["tpu"])
    text = str(info.value)
    assert "'tpu'" in text and "CPUExecutionProvider (cpu)" in text and "DoublingExecutionProvider" in text
    assert "NoDeviceExecutionProvider" in text.split("unavailable")[1]


def test_providers_none_picks_best_that_can_run(extra, caplog):
    # NoDevice is unavailable, Exploding fails to create, NefOnly refuses ONNX: Doubling wins.
    with caplog.at_level(logging.WARNING, logger="kp_runtime"):
        session = ort.InferenceSession(mlp())
    assert session.get_providers() == ["DoublingExecutionProvider"]
    text = caplog.text
    assert "NoDeviceExecutionProvider skipped (unavailable: no dongle plugged in)" in text
    assert "ExplodingExecutionProvider skipped (creating the session failed: EPFail" in text
    assert "NefOnlyExecutionProvider skipped (cannot run this model" in text


def test_listed_unavailable_provider_is_skipped_only_if_a_later_one_runs(extra, caplog):
    with caplog.at_level(logging.WARNING, logger="kp_runtime"):
        session = ort.InferenceSession(mlp(), providers=["nodev", "cpu"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert "no dongle plugged in" in caplog.text
    with pytest.raises(ProviderUnavailable, match="no dongle plugged in"):
        ort.InferenceSession(mlp(), providers=["nodev"])
    with pytest.raises(ProviderUnavailable) as info:
        ort.InferenceSession(mlp(), providers=["nodev", "nef"])
    assert "NoDeviceExecutionProvider: unavailable" in str(info.value)
    assert "NefOnlyExecutionProvider: cannot run this model" in str(info.value)
    with pytest.raises(ort.EPFail, match="firmware refused"):
        ort.InferenceSession(mlp(), providers=["ExplodingExecutionProvider"])


def test_model_the_cpu_cannot_parse(tmp_path, registry):
    nef = tmp_path / "model.nef"
    nef.write_bytes(b"not onnx at all")
    with pytest.raises(ProviderUnavailable, match="not an ONNX model"):
        ort.InferenceSession(nef)
    with pytest.raises(ort.InvalidProtobuf):
        ort.InferenceSession(b"\x00garbage")


@pytest.mark.parametrize(
    ("providers", "options", "message"),
    [
        ("cpu", None, "not a string"),
        (5, None, "should be a sequence"),
        ([("cpu",)], None, "either strings or (string, dict) tuples"),
        ([("cpu", {}), "cpu"], [{}, {}], "Only string values"),
        (["cpu"], [{}, {}], "same length"),
        (["cpu"], ["x"], "must be dicts"),
        (None, [{}], "without 'providers'"),
    ],
)
def test_provider_argument_errors(providers, options, message):
    with pytest.raises(ValueError) as info:
        ort.InferenceSession(mlp(), providers=providers, provider_options=options)
    assert message in str(info.value)


def test_duplicate_provider_warns_and_is_ignored(caplog):
    with caplog.at_level(logging.WARNING, logger="kp_runtime"):
        session = ort.InferenceSession(mlp(), providers=["cpu", "CPUExecutionProvider"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert "Duplicate provider 'CPUExecutionProvider' encountered, ignoring." in caplog.text


class _MinimalSession(ProviderSession):
    def __init__(self):
        self.inputs = [ort.NodeArg("x", "tensor(float)", ["n"])]
        self.outputs = [ort.NodeArg("y", "tensor(float)", ["n"])]

    def run(self, output_names, feeds, run_options=None):
        return [feeds["x"] + 1]


class _NoOnnxProvider(ExecutionProvider):
    name, model_formats, priority = "BlobExecutionProvider", ("blob",), 5

    def create_session(self, model, options, session_options):
        assert model.suffix == ".blob" and model.data == b"opaque"
        return _MinimalSession()


def test_non_onnx_format_and_default_fast_paths(registry, tmp_path):
    registry.register(_plugin(_NoOnnxProvider()), "blob")
    blob = tmp_path / "m.blob"
    blob.write_bytes(b"opaque")
    with ort.InferenceSession(blob) as session:
        assert session.get_providers() == ["BlobExecutionProvider"]
        assert session.get_modelmeta().producer_name == ""
        x = np.arange(3, dtype=np.float32)
        np.testing.assert_array_equal(session.submit({"x": x}).result(timeout=10)[0], x + 1)
        assert [r[0].tolist() for r in session.run_many([{"x": x}, {"x": x * 2}])] == [
            [1, 2, 3], [1, 3, 5]
        ]
    # The CPU provider refuses the same file (not ONNX): so providers=["cpu"] fails.
    with pytest.raises(ProviderUnavailable):
        ort.InferenceSession(blob, providers=["cpu", "cpu"])


class _ClosingSession(_MinimalSession):
    closed: list[str] = []  # noqa: RUF012 - shared on purpose: the test reads it after GC

    def close(self):
        _ClosingSession.closed.append("closed")
        super().close()


class _ClosingProvider(_NoOnnxProvider):
    name = "ClosingExecutionProvider"

    def create_session(self, model, options, session_options):
        return _ClosingSession()


def test_provider_session_closed_on_close_on_gc_and_on_set_providers(registry, tmp_path):
    import gc

    registry.register(_plugin(_ClosingProvider()), "closing")
    blob = tmp_path / "m.blob"
    blob.write_bytes(b"opaque")
    _ClosingSession.closed.clear()
    session = ort.InferenceSession(blob)
    session.set_providers(["ClosingExecutionProvider"])  # old one closed before the new one
    assert _ClosingSession.closed == ["closed"]
    session.close()
    session.close()
    assert _ClosingSession.closed == ["closed"] * 2
    ort.InferenceSession(blob)
    gc.collect()
    assert _ClosingSession.closed == ["closed"] * 3


def test_onnxruntime_provider_names_are_skipped_not_unknown(registry, caplog):
    with caplog.at_level(logging.WARNING, logger="kp_runtime"):
        session = ort.InferenceSession(mlp(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider skipped (unavailable: CUDAExecutionProvider is an onnxruntime provider" in caplog.text
    with pytest.raises(ProviderUnavailable, match="CUDAExecutionProvider"):
        ort.InferenceSession(mlp(), providers=["CUDAExecutionProvider"])
    with pytest.raises(ValueError, match="Unknown execution provider 'CUDAExecutionProvidr'"):
        ort.InferenceSession(mlp(), providers=["CUDAExecutionProvidr", "CPUExecutionProvider"])
