"""Plugin manager: finds providers and CLI commands through pluggy.

Plugins come from the entry-point group ``kp_runtime`` (loaded lazily, once)
and from in-process :func:`register`. The built-in CPU provider is an entry
point of this distribution like any other plugin.

``KP_RUNTIME_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points of other
distributions; this project's own entry points (distribution ``kp-runtime``,
and ``ESSENTIAL_PLUGINS``) still load, as pytest's built-in plugins do under ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``.
A plugin that fails to import, or whose hook raises, is logged with its name,
recorded in :func:`plugin_failures` and does not affect the others.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from kp_runtime import hookspecs
from kp_runtime.provider import Availability, ExecutionProvider

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
DISABLE_AUTOLOAD_ENV = "KP_RUNTIME_DISABLE_PLUGIN_AUTOLOAD"
#: Built-in plugins (entry-point name -> module); loaded even without autoload,
#: and directly when the package metadata is missing (e.g. a source checkout).
ESSENTIAL_PLUGINS: dict[str, str] = {"cpu": "kp_runtime.providers.cpu"}
OWN_DISTRIBUTION = "kp-runtime"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used: its name, where it came from and the error text."""

    name: str
    origin: str
    error: str


class PluginRegistry:
    """A pluggy ``PluginManager`` plus the provider list it yields (cached)."""

    def __init__(self, autoload: bool | None = None) -> None:
        self._lock = threading.RLock()
        self._autoload = autoload
        self._loaded = False
        self._providers: list[ExecutionProvider] | None = None
        self._failures: dict[str, PluginFailure] = {}
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)

    # -- loading -----------------------------------------------------------------
    def ensure_loaded(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            autoload = self._autoload
            if autoload is None:
                autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "") in ("", "0")
            self._load_entry_points(autoload)
            for name, module in ESSENTIAL_PLUGINS.items():
                if self.pm.get_plugin(name) is None and name not in self._failures:
                    self._import_and_register(name, module, lambda m=module: importlib.import_module(m))

    def _load_entry_points(self, autoload: bool) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            if not autoload and not (ep.name in ESSENTIAL_PLUGINS or is_own_distribution(dist)):
                continue
            if self.pm.get_plugin(ep.name) is not None or self.pm.is_blocked(ep.name):
                continue
            origin = f"{ep.value} (entry point of {dist.name if dist else 'unknown distribution'})"
            self._import_and_register(ep.name, origin, ep.load)

    def _import_and_register(self, name: str, origin: str, load: Callable[[], Any]) -> None:
        try:
            plugin = load()
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - any plugin bug must stay contained
            self._record_failure(name, origin, exc)

    def _record_failure(self, name: str, origin: str, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        log.warning("kp_runtime plugin %r (%s) failed: %s", name, origin, text)
        self._failures[name] = PluginFailure(name, origin, text)

    # -- registration -------------------------------------------------------------
    def register(self, plugin: object, name: str | None = None) -> str:
        """Register an in-process plugin; returns its name."""
        with self._lock:
            self.ensure_loaded()
            registered = self.pm.register(plugin, name=name)
            self._providers = None
            assert registered is not None
            return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> None:
        with self._lock:
            self.pm.unregister(plugin=plugin, name=name)
            self._providers = None

    # -- queries ------------------------------------------------------------------
    def failures(self) -> list[PluginFailure]:
        self.providers()  # provider hooks may add failures
        return list(self._failures.values())

    def providers(self) -> list[ExecutionProvider]:
        """All registered providers, highest priority first (ties: most recently registered first)."""
        with self._lock:
            self.ensure_loaded()
            if self._providers is None:
                self._providers = self._collect_providers()
            return list(self._providers)

    def _collect_providers(self) -> list[ExecutionProvider]:
        found: dict[str, ExecutionProvider] = {}
        for impl in reversed(self.pm.hook.kp_runtime_providers.get_hookimpls()):
            try:
                result = impl.function()
                for provider in result or ():
                    _check_provider(provider)
                    if provider.name in found:
                        log.warning(
                            "plugin %r provides %r, already provided by another plugin; ignored",
                            impl.plugin_name, provider.name,
                        )
                        continue
                    found[provider.name] = provider
            except Exception as exc:  # noqa: BLE001
                self._record_failure(impl.plugin_name, "kp_runtime_providers hook", exc)
        return sorted(found.values(), key=lambda p: -p.priority)

    def add_cli_commands(self, subparsers: argparse._SubParsersAction) -> None:
        self.ensure_loaded()
        for impl in reversed(self.pm.hook.kp_runtime_cli_commands.get_hookimpls()):
            try:
                impl.function(subparsers=subparsers)
            except Exception as exc:  # noqa: BLE001
                self._record_failure(impl.plugin_name, "kp_runtime_cli_commands hook", exc)


def is_own_distribution(dist: importlib.metadata.Distribution | None) -> bool:
    """Whether ``dist`` is this project (``kp-runtime``), whose plugins always load."""
    if dist is None:
        return False
    name = dist.metadata["Name"] or ""
    return name.lower().replace("_", "-") == OWN_DISTRIBUTION


def _check_provider(provider: object) -> None:
    if not isinstance(provider, ExecutionProvider):
        raise TypeError(f"{provider!r} is not a kp_runtime.provider.ExecutionProvider")
    if not isinstance(getattr(provider, "name", None), str) or not provider.name:
        raise TypeError(f"{provider!r} has no string 'name'")


_registry: PluginRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> PluginRegistry:
    """The process-wide registry (created on first use)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = PluginRegistry()
        return _registry


def reset() -> None:
    """Forget all plugins; the next use reloads entry points (for tests and long-lived hosts)."""
    global _registry
    with _registry_lock:
        _registry = None


def register(plugin: object, name: str | None = None) -> str:
    """Register an in-process plugin (a module or object with ``@hookimpl`` functions)."""
    return get_registry().register(plugin, name=name)


def unregister(plugin: object | None = None, name: str | None = None) -> None:
    get_registry().unregister(plugin=plugin, name=name)


def providers() -> list[ExecutionProvider]:
    return get_registry().providers()


def plugin_failures() -> list[PluginFailure]:
    return get_registry().failures()


def find_provider(name: str) -> ExecutionProvider:
    """The provider called ``name`` or one of its aliases (case-insensitive).

    Raises ``ValueError`` listing the known providers when none matches.
    """
    wanted = name.lower()
    known = providers()
    for provider in known:
        if wanted == provider.name.lower() or wanted in (a.lower() for a in provider.aliases):
            return provider
    available = [_describe(p) for p in known if _availability(p)]
    unavailable = [_describe(p) for p in known if not _availability(p)]
    message = f"Unknown execution provider {name!r}. Available providers: {available}"
    if unavailable:
        message += f"; installed but unavailable: {unavailable}"
    raise ValueError(message)


def _availability(provider: ExecutionProvider) -> bool:
    return bool(availability(provider))


def availability(
    provider: ExecutionProvider, options: Mapping[str, str] | None = None
) -> Availability:
    """``provider.is_available(options)``, with a raising provider reported as unavailable.

    ``options`` (the provider options of a session being created) are passed only to
    providers whose ``is_available`` accepts them: availability may depend on them (a
    Kneron provider asked for a virtual dongle is available without hardware)."""
    try:
        if options is not None and _accepts_options(provider):
            result = provider.is_available(options)  # type: ignore[call-arg]
        else:
            result = provider.is_available()
    except Exception as exc:  # noqa: BLE001 - a provider bug must not break selection
        return Availability.no(f"is_available() raised {type(exc).__name__}: {exc}")
    if not isinstance(result, Availability):
        return Availability(bool(result), "" if result else "is_available() returned False")
    return result


def _accepts_options(provider: ExecutionProvider) -> bool:
    try:
        params = inspect.signature(provider.is_available).parameters
    except (TypeError, ValueError):
        return False
    return len(params) >= 1 or any(p.kind is p.VAR_POSITIONAL for p in params.values())


def _describe(provider: ExecutionProvider) -> str:
    aliases = "/".join(provider.aliases)
    return f"{provider.name} ({aliases})" if aliases else provider.name
