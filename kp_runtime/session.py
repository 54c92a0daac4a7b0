"""``InferenceSession``: onnxruntime's session API over a pluggable execution provider."""

from __future__ import annotations

import concurrent.futures
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from kp_runtime import plugins, selection
from kp_runtime.errors import Fail, RuntimeException
from kp_runtime.model_source import ModelInput, ModelSource
from kp_runtime.node_arg import ModelMetadata, NodeArg
from kp_runtime.options import RunOptions, SessionOptions
from kp_runtime.profiling import Profiler
from kp_runtime.provider import ProviderSession
from kp_runtime.validation import validate_feed, validate_output_names

log = logging.getLogger("kp_runtime")

ProvidersArg = Sequence[str | tuple[str, Mapping[Any, Any]]] | None


class InferenceSession:
    """Load a model and run it on one execution provider (onnxruntime's ``InferenceSession``).

    ``path_or_bytes`` is a path, bytes, or (beyond onnxruntime) an ``onnx.ModelProto``.
    ``providers`` are names/aliases or ``(name, options)`` tuples; ``None`` picks the
    highest-priority available provider that can run the model (see
    ``kp_runtime.selection``). Unlike onnxruntime there is no silent fallback:
    ``get_providers()`` names the one provider that runs the model.
    """

    def __init__(
        self,
        path_or_bytes: ModelInput,
        sess_options: SessionOptions | None = None,
        providers: ProvidersArg = None,
        provider_options: Sequence[Mapping[Any, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            log.debug("InferenceSession ignores onnxruntime-only arguments %s", sorted(kwargs))
        self._model = ModelSource(path_or_bytes)
        self._sess_options = sess_options if sess_options is not None else SessionOptions()
        self._profiler = Profiler(
            bool(self._sess_options.enable_profiling), self._sess_options.profile_file_prefix
        )
        self._psess: ProviderSession | None = None
        self._finalizer: weakref.finalize | None = None
        self._create(providers, provider_options)

    # -- creation -----------------------------------------------------------------
    def _create(self, providers: ProvidersArg, provider_options: Any) -> None:
        pairs = selection.normalize_provider_args(providers, provider_options)
        if not pairs and self._sess_options.has_providers():
            pairs = self._sess_options.providers
        requests = selection.resolve_requests(pairs)
        # The old provider session goes first: it may hold the only device.
        self._close_provider_session()
        self._psess = None
        with self._profiler.span("session_initialization"):
            chosen = selection.select(self._model, requests, self._sess_options)
        self._provider = chosen.provider
        self._options = chosen.options
        self._psess = psess = chosen.session
        self._inputs = list(psess.inputs)
        self._outputs = list(psess.outputs)
        self._overridable = list(getattr(psess, "overridable_initializers", []) or [])
        self._metadata = getattr(psess, "metadata", None) or ModelMetadata()
        self._finalizer = weakref.finalize(self, _close_quietly, psess)
        log.info("session for %s runs on %s", self._model.display, self._provider.name)

    def set_providers(
        self,
        providers: ProvidersArg = None,
        provider_options: Sequence[Mapping[Any, Any]] | None = None,
    ) -> None:
        """Re-create the underlying provider session with other providers.

        The current provider session is closed first (it may hold a device the new
        one needs); if no requested provider can run the model, the session stays closed.
        """
        self._create(providers, provider_options)

    def disable_fallback(self) -> None:
        """No-op: kp_runtime never falls back to another provider at run time."""

    def enable_fallback(self) -> None:
        """No-op: kp_runtime never falls back to another provider at run time."""

    # -- description ----------------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_overridable_initializers(self) -> list[NodeArg]:
        return list(self._overridable)

    def get_modelmeta(self) -> ModelMetadata:
        return self._metadata

    def get_providers(self) -> list[str]:
        return [self._provider.name]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {self._provider.name: dict(self._options)}

    def get_session_options(self) -> SessionOptions:
        return self._sess_options

    def end_profiling(self) -> str:
        return self._profiler.end()

    def get_quantization(self) -> dict[str, dict[str, Any]]:
        """Fixed-point facts of the running provider: ``{"inputs": {name:
        TensorQuantization}, "outputs": {...}}`` (see :mod:`kp_runtime.quantization`).
        Empty dicts for float providers (those whose session has no ``quantization()``)."""
        quantization = getattr(self._session(), "quantization", None)
        info = quantization() if callable(quantization) else None
        info = dict(info or {})
        return {"inputs": dict(info.get("inputs", {})), "outputs": dict(info.get("outputs", {}))}

    def get_profiling_start_time_ns(self) -> int:
        return self._profiler.start_ns

    # -- running ---------------------------------------------------------------------
    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: RunOptions | None = None,
    ) -> list[Any]:
        """Run once; ``output_names`` falsy means every output in model order."""
        psess, names, feeds = self._prepare(output_names, input_feed, run_options)
        if not self._profiler.enabled:  # the hot path skips the context manager
            return psess.run(names, feeds, run_options)
        with self._profiler.span("model_run", provider=self._provider.name):
            return psess.run(names, feeds, run_options)

    def run_async(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        callback: Callable[[list[Any], Any, str], None],
        user_data: Any = None,
        run_options: RunOptions | None = None,
    ) -> None:
        """Validate now, run in the background, then ``callback(results, user_data, err)``.

        ``err`` is ``''`` on success; on failure ``results`` is ``[]`` and ``err`` the error text.
        """
        future = self.submit(input_feed, output_names, run_options)

        def done(f: concurrent.futures.Future) -> None:
            error = f.exception()
            try:
                if error is None:
                    callback(f.result(), user_data, "")
                else:
                    callback([], user_data, str(error))
            except Exception:
                log.exception("run_async callback raised")

        future.add_done_callback(done)

    def submit(
        self,
        input_feed: Mapping[str, Any],
        output_names: Sequence[str] | None = None,
        run_options: RunOptions | None = None,
    ) -> concurrent.futures.Future:
        """Validate now and start one run; the future resolves to ``run``'s list."""
        psess, names, feeds = self._prepare(output_names, input_feed, run_options)
        return psess.submit(feeds, names, run_options)

    def run_many(
        self,
        feeds_iterable: Iterable[Mapping[str, Any]],
        output_names: Sequence[str] | None = None,
    ) -> Iterator[list[Any]]:
        """Run every feed (validated one by one as consumed); yield results in input order."""
        psess = self._session()
        names = validate_output_names(self._outputs, output_names)
        validated = (
            validate_feed(self._inputs, feed, self._overridable) for feed in feeds_iterable
        )
        return psess.run_many(validated, names)

    def _prepare(
        self, output_names: Any, input_feed: Any, run_options: RunOptions | None
    ) -> tuple[ProviderSession, list[str], dict[str, Any]]:
        psess = self._session()
        feeds = validate_feed(self._inputs, input_feed, self._overridable,
                              getattr(psess, "alternative_inputs", None))
        names = validate_output_names(self._outputs, output_names)
        if run_options is not None and run_options.terminate:
            raise Fail("Exiting due to terminate flag being set to true.")
        return psess, names, feeds

    def _session(self) -> ProviderSession:
        if self._psess is None:
            raise RuntimeException("This InferenceSession has been closed.")
        return self._psess

    # -- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        """Release the provider session (devices, threads). Idempotent."""
        self._close_provider_session()
        self._psess = None

    def _close_provider_session(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def __enter__(self) -> InferenceSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        provider = getattr(self, "_provider", None)
        return f"<InferenceSession {self._model.display} on {provider.name if provider else '?'}>"


def _close_quietly(psess: ProviderSession) -> None:
    try:
        psess.close()
    except Exception:  # noqa: BLE001 - closing during GC must not raise
        log.exception("closing the provider session failed")


def get_available_providers() -> list[str]:
    """Names of the providers that can run something now, highest priority first."""
    return [p.name for p in plugins.providers() if plugins.availability(p)]


def get_all_providers() -> list[str]:
    """Names of every registered provider, available or not, highest priority first."""
    return [p.name for p in plugins.providers()]


def get_device() -> str:
    """``"NPU"`` when an available provider lists an NPU device, else ``"CPU"``.

    onnxruntime returns its build flavour; here the flavour is what the installed
    providers can reach.
    """
    for provider in plugins.providers():
        if plugins.availability(provider):
            try:
                if any(d.type == "NPU" for d in provider.list_devices()):
                    return "NPU"
            except Exception:  # noqa: BLE001
                log.debug("list_devices() of %s failed", provider.name, exc_info=True)
    return "CPU"
