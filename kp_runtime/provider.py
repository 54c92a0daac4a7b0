"""The provider contract: :class:`ExecutionProvider` and :class:`ProviderSession`.

A provider is found through the pluggy hook ``kp_runtime_providers`` (see
``kp_runtime.hookspecs`` and ``docs/providers.md``). ``InferenceSession``
validates feeds and output names before it calls a provider session, so
providers receive clean numpy arrays and a concrete list of output names.
"""

from __future__ import annotations

import abc
import concurrent.futures
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from kp_runtime.model_source import ModelSource
from kp_runtime.node_arg import ModelMetadata, NodeArg

if TYPE_CHECKING:
    from kp_runtime.options import RunOptions, SessionOptions

__all__ = ["Availability", "DeviceInfo", "ExecutionProvider", "ProviderSession"]

_THREAD_PREFIX = "kp_runtime-"


@dataclass(frozen=True)
class Availability:
    """Whether something can be done, and why not.

    ``error`` optionally holds the exception to raise when nothing else can run
    the model (e.g. ``InvalidProtobuf`` for a corrupt ONNX file), so that a
    session with a single candidate provider fails with onnxruntime's error.
    """

    available: bool
    reason: str = ""
    error: BaseException | None = field(default=None, compare=False, repr=False)

    def __bool__(self) -> bool:
        return self.available

    @classmethod
    def yes(cls) -> Availability:
        return cls(True)

    @classmethod
    def no(cls, reason: str, error: BaseException | None = None) -> Availability:
        return cls(False, reason, error)


@dataclass(frozen=True)
class DeviceInfo:
    """One device a provider can use. ``type`` is ``"CPU"``, ``"GPU"`` or ``"NPU"`` (as ORT)."""

    id: str
    type: str = "CPU"
    description: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)


class ProviderSession(abc.ABC):
    """A model loaded by a provider, ready to run.

    Subclasses set :attr:`inputs` and :attr:`outputs` (and optionally
    :attr:`metadata`, :attr:`overridable_initializers`) and implement :meth:`run`.
    :meth:`submit` and :meth:`run_many` have default implementations built on
    :meth:`run`; providers with a device queue override them to pipeline.
    """

    inputs: list[NodeArg]
    outputs: list[NodeArg]
    overridable_initializers: list[NodeArg] = []  # noqa: RUF012 - read-only default
    #: other forms an input also accepts, by input name (e.g. a uint8 image for a float
    #: input); validation tries them when a value does not match the input's NodeArg.
    alternative_inputs: dict[str, list[NodeArg]] = {}  # noqa: RUF012 - read-only default
    metadata: ModelMetadata = ModelMetadata()

    _executor_lock: ClassVar[threading.Lock] = threading.Lock()

    @abc.abstractmethod
    def run(
        self, output_names: list[str], feeds: dict[str, Any], run_options: RunOptions | None = None
    ) -> list[Any]:
        """Run once; return one value per name in ``output_names``, in that order."""

    def submit(
        self,
        feeds: dict[str, Any],
        output_names: list[str],
        run_options: RunOptions | None = None,
    ) -> concurrent.futures.Future:
        """Start one run; its future resolves to the list :meth:`run` would return.

        Default: one worker thread per session, so runs complete in submission order.
        """
        return self._executor().submit(self.run, output_names, feeds, run_options)

    def run_many(
        self, feeds: Iterable[dict[str, Any]], output_names: list[str]
    ) -> Iterator[list[Any]]:
        """Run every feed; yield results in input order. Default: one :meth:`run` after another."""
        for feed in feeds:
            yield self.run(output_names, feed, None)

    def close(self) -> None:
        """Release resources (devices, threads). Idempotent."""
        executor = self.__dict__.pop("_kp_executor", None)
        if executor is not None:
            # From one of the worker threads (a callback closing its session), joining would fail.
            own_thread = threading.current_thread().name.startswith(_THREAD_PREFIX)
            executor.shutdown(wait=not own_thread)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._executor_lock:
            executor = self.__dict__.get("_kp_executor")
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"{_THREAD_PREFIX}{type(self).__name__}"
                )
                self.__dict__["_kp_executor"] = executor
            return executor

    def __enter__(self) -> ProviderSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ExecutionProvider(abc.ABC):
    """An execution provider: declares what it runs and creates :class:`ProviderSession`\\ s.

    Class attributes: ``name`` (e.g. ``"CPUExecutionProvider"``), ``aliases``
    (e.g. ``("cpu",)``; names match case-insensitively), ``priority`` (higher is
    preferred when the user lists no providers) and ``model_formats`` (lower-case
    format names such as ``"onnx"``, ``"nef"``; informative, shown by the CLI).
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    priority: ClassVar[int] = 0
    model_formats: ClassVar[tuple[str, ...]] = ("onnx",)

    def is_available(self, options: Mapping[str, str] | None = None) -> Availability:
        """Whether the provider can run anything right now (e.g. a device is present).

        ``options`` are the provider options of the session being created (``None`` when
        asked in general, e.g. by ``get_available_providers()``). Implementations may omit
        the parameter; then they are always asked without options."""
        return Availability.yes()

    def list_devices(self) -> list[DeviceInfo]:
        return []

    def can_run(self, model: ModelSource) -> Availability:
        """Whether this provider can run ``model``.

        Default: accept ONNX when ``"onnx"`` is in :attr:`model_formats` and the
        content parses as ONNX; accept a file whose suffix names one of the formats.
        """
        formats = tuple(f.lower().lstrip(".") for f in self.model_formats)
        suffix = model.suffix.lstrip(".")
        if suffix in formats and suffix != "onnx":
            return Availability.yes()
        if "onnx" in formats and model.try_onnx_model() is not None:
            return Availability.yes()
        return Availability.no(f"{self.name} runs only {', '.join(formats)} models")

    @abc.abstractmethod
    def create_session(
        self, model: ModelSource, options: dict[str, str], session_options: SessionOptions
    ) -> ProviderSession:
        """Load ``model``. ``options`` are the provider options, string-valued as in ORT."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'name', '?')!r}>"
