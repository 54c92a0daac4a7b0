"""Provider arguments (ORT's call shapes) and the choice of the provider that runs a model.

Normalisation follows onnxruntime's ``check_and_normalize_provider_args``
(same checks and texts), but stricter: a bare string for ``providers`` and
``provider_options`` without ``providers`` are rejected, and an unknown
provider name raises ``ValueError`` instead of a warning.

onnxruntime's own provider names (``ORT_PROVIDER_NAMES``, e.g.
``CUDAExecutionProvider``) are not unknown: they are providers that are never
available here, so the everyday ``providers=["CUDAExecutionProvider",
"CPUExecutionProvider"]`` runs on the CPU (with a logged warning) while a typo
still raises.

Selection: providers are tried in the order given (or, when none are given,
every registered provider by descending priority). A provider is used when it
is available, accepts the model (``can_run``) and creates its session; a
provider that fails any of these is skipped, with a logged warning naming why,
only when a later candidate succeeds. Otherwise :class:`ProviderUnavailable`
lists every reason (or, with a single candidate, its own error is raised, so
``providers=["CPUExecutionProvider"]`` on a corrupt file raises
``InvalidProtobuf`` as onnxruntime does).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kp_runtime import plugins
from kp_runtime.errors import ProviderUnavailable
from kp_runtime.model_source import ModelSource
from kp_runtime.options import SessionOptions
from kp_runtime.provider import Availability, ExecutionProvider, ProviderSession

log = logging.getLogger("kp_runtime")

ProviderRequest = tuple[ExecutionProvider, dict[str, str]]

#: ``onnxruntime.get_all_providers()`` of onnxruntime 1.32.
ORT_PROVIDER_NAMES = (
    "TensorrtExecutionProvider", "CUDAExecutionProvider", "MIGraphXExecutionProvider",
    "OpenVINOExecutionProvider", "DnnlExecutionProvider", "VitisAIExecutionProvider",
    "QNNExecutionProvider", "NnapiExecutionProvider", "VSINPUExecutionProvider",
    "JsExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider",
    "RknpuExecutionProvider", "WebNNExecutionProvider", "WebGpuExecutionProvider",
    "XnnpackExecutionProvider", "CANNExecutionProvider", "AzureExecutionProvider",
    "CPUExecutionProvider",
)


class OnnxRuntimeOnlyProvider(ExecutionProvider):
    """Stands for an onnxruntime provider kp_runtime does not have: never available."""

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]

    def is_available(self) -> Availability:
        return Availability.no(f"{self.name} is an onnxruntime provider that kp_runtime does not provide")

    def create_session(self, model: ModelSource, options: dict[str, str], session_options: SessionOptions) -> ProviderSession:
        raise ProviderUnavailable(self.is_available().reason)


@dataclass
class Selection:
    provider: ExecutionProvider
    options: dict[str, str]
    session: ProviderSession


def normalize_provider_args(
    providers: Sequence[str | tuple[str, Mapping[Any, Any]]] | None,
    provider_options: Sequence[Mapping[Any, Any]] | None,
) -> list[tuple[str, dict[str, str]]]:
    """``providers`` / ``provider_options`` as ORT accepts them -> ``[(name, {str: str})]``."""
    if providers is None:
        if provider_options is not None:
            raise ValueError("'provider_options' was given without 'providers'.")
        return []
    if isinstance(providers, (str, bytes)):
        raise ValueError(
            f"'providers' should be a sequence of names, not a string; did you mean [{providers!r}]?"
        )
    if not isinstance(providers, Sequence):
        raise ValueError("'providers' should be a sequence.")
    if provider_options is not None:
        if not isinstance(provider_options, Sequence):
            raise ValueError("'provider_options' should be a sequence.")
        if len(providers) != len(provider_options):
            raise ValueError("'providers' and 'provider_options' should be the same length if both are given.")
        if not all(isinstance(p, str) for p in providers):
            raise ValueError("Only string values for 'providers' are supported if 'provider_options' is given.")
        if not all(isinstance(o, Mapping) for o in provider_options):
            raise ValueError("'provider_options' values must be dicts.")
        pairs = list(zip(providers, provider_options))
    else:
        pairs = []
        for item in providers:
            if isinstance(item, str):
                pairs.append((item, {}))
            elif (
                isinstance(item, tuple) and len(item) == 2
                and isinstance(item[0], str) and isinstance(item[1], Mapping)
            ):
                pairs.append((item[0], item[1]))
            else:
                raise ValueError("'providers' values must be either strings or (string, dict) tuples.")
    return [(name, {str(k): str(v) for k, v in options.items()}) for name, options in pairs]


def resolve_requests(pairs: Sequence[tuple[str, dict[str, str]]]) -> list[ProviderRequest]:
    """Names or aliases -> providers (``ValueError`` for unknown names; duplicates dropped)."""
    requests: list[ProviderRequest] = []
    seen: set[str] = set()
    for name, options in pairs:
        try:
            provider = plugins.find_provider(name)
        except ValueError:
            if name not in ORT_PROVIDER_NAMES:
                raise
            provider = OnnxRuntimeOnlyProvider(name)
        if provider.name in seen:
            log.warning("Duplicate provider '%s' encountered, ignoring.", provider.name)
            continue
        seen.add(provider.name)
        requests.append((provider, options))
    return requests


def select(
    model: ModelSource, requests: list[ProviderRequest], session_options: SessionOptions
) -> Selection:
    """Create a session on the first candidate that can run ``model`` (see module doc)."""
    if not requests:
        requests = [(p, {}) for p in plugins.providers()]
        if not requests:
            raise ProviderUnavailable(
                "No execution provider is registered (check `kp-runtime providers`)."
            )
    refusals: list[tuple[ExecutionProvider, str, BaseException | None]] = []
    for index, (provider, options) in enumerate(requests):
        is_last = index == len(requests) - 1
        reason, error = _refusal(provider, model, options)
        if reason is None:
            try:
                session = provider.create_session(model, dict(options), session_options)
            except Exception as exc:
                if is_last and not refusals:
                    raise
                reason, error = f"creating the session failed: {type(exc).__name__}: {exc}", exc
            else:
                for skipped, why, _ in refusals:
                    log.warning("%s skipped (%s); using %s.", skipped.name, why, provider.name)
                return Selection(provider, dict(options), session)
        refusals.append((provider, reason, error))
    if len(refusals) == 1 and refusals[0][2] is not None:
        raise refusals[0][2]
    reasons = "; ".join(f"{p.name}: {why}" for p, why, _ in refusals)
    failure = ProviderUnavailable(f"No execution provider can run {model.display}: {reasons}")
    last_error = refusals[-1][2]
    raise failure from last_error


def _refusal(
    provider: ExecutionProvider, model: ModelSource, options: Mapping[str, str] | None = None
) -> tuple[str | None, BaseException | None]:
    available = plugins.availability(provider, options)
    if not available:
        return f"unavailable: {available.reason or 'no reason given'}", available.error
    try:
        runnable = provider.can_run(model)
    except Exception as exc:  # noqa: BLE001 - a provider bug is a refusal, not a crash
        return f"can_run() raised {type(exc).__name__}: {exc}", exc
    if not runnable:
        return f"cannot run this model: {runnable.reason or 'no reason given'}", runnable.error
    return None, None
