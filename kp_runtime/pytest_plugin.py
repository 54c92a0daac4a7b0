"""pytest plugin: run a test once per kp_runtime execution provider.

Installed through the ``pytest11`` entry point (``kp_runtime = "kp_runtime.pytest_plugin"``);
load it explicitly with ``pytest -p kp_runtime.pytest_plugin``.

* ``--kp-providers=kneron,cpu`` (or the ``kp_providers`` ini option): the
  providers to test, by name or alias; default: every registered provider.
* fixture ``kp_provider``: a test that uses it (directly or through another
  fixture) runs once per listed provider, with the provider's canonical name
  (e.g. ``"CPUExecutionProvider"``), ready for ``InferenceSession(...,
  providers=[kp_provider])``. Test ids use the first alias (``test_x[cpu]``).
  Providers that are not available right now (no device, a plugin that failed
  to load) are reported as skipped, with the provider's own reason.
* marker ``@pytest.mark.kp_providers("cpu", ...)``: limit one test to these providers.
* fixture ``kp_reference_provider``: the reference provider's canonical name,
  from ``--kp-reference`` (default ``cpu``).

Assertions: :func:`kp_runtime.testing.assert_outputs_close` and
:func:`kp_runtime.testing.assert_sessions_close`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

OPTION = "--kp-providers"
INI = "kp_providers"
REFERENCE_OPTION = "--kp-reference"
DEFAULT_REFERENCE = "cpu"
MARKER = "kp_providers"


@dataclass(frozen=True)
class ProviderParam:
    """One entry of the parametrisation: canonical name, test id, and why it is skipped (if it is)."""

    name: str
    id: str
    skip_reason: str | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kp_runtime", "kp_runtime providers")
    group.addoption(
        OPTION,
        dest="kp_providers",
        default=None,
        metavar="NAMES",
        help="comma-separated kp_runtime providers (names or aliases) that tests using the "
        "kp_provider fixture run on (default: every registered provider)",
    )
    group.addoption(
        REFERENCE_OPTION,
        dest="kp_reference",
        default=None,
        metavar="NAME",
        help=f"the reference provider of the kp_reference_provider fixture (default {DEFAULT_REFERENCE})",
    )
    parser.addini(INI, "default for --kp-providers (comma-separated)", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(*names): run this test's kp_provider parametrisation only on these providers"
    )
    if _requested(config) is not None:
        provider_params(config)  # an unknown name is a usage error now, not a collection error later


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def _requested(config: pytest.Config) -> list[str] | None:
    option = config.getoption("kp_providers")
    if option is not None:
        names = _split(option)
        if not names:
            raise pytest.UsageError(f"{OPTION} is empty; give provider names such as {OPTION}=cpu")
        return names
    ini = config.getini(INI)
    names = _split(ini if isinstance(ini, str) else ",".join(ini))
    return names or None


def _resolve(name: str) -> ProviderParam:
    from kp_runtime import plugins

    try:
        provider = plugins.find_provider(name)
    except ValueError as exc:
        failed = {f.name.lower(): f for f in plugins.plugin_failures()}
        failure = failed.get(name.lower())
        if failure is not None:
            return ProviderParam(name, name, f"kp_runtime plugin {failure.name!r} failed to load: {failure.error}")
        raise pytest.UsageError(f"{OPTION}: {exc}") from None
    available = plugins.availability(provider)
    test_id = provider.aliases[0] if provider.aliases else provider.name
    reason = None if available else f"{provider.name} is not available: {available.reason or 'no reason given'}"
    return ProviderParam(provider.name, test_id, reason)


def provider_params(config: pytest.Config) -> list[ProviderParam]:
    """The providers to test (cached per session), resolved and checked for availability."""
    cached = getattr(config, "_kp_provider_params", None)
    if cached is not None:
        return cached
    from kp_runtime import plugins

    names = _requested(config)
    if names is None:
        params = [_resolve(p.name) for p in plugins.providers()]
        # A provider plugin that failed to load is shown as skipped rather than silently untested.
        params += [
            ProviderParam(f.name, f.name, f"kp_runtime plugin {f.name!r} failed to load: {f.error}")
            for f in plugins.plugin_failures()
        ]
    else:
        params = []
        for name in names:
            param = _resolve(name)
            if all(param.name != p.name for p in params):
                params.append(param)
    config._kp_provider_params = params  # type: ignore[attr-defined]
    return params


def pytest_report_header(config: pytest.Config) -> str | None:
    # Only when asked for: listing providers loads every kp_runtime plugin (and may probe USB),
    # which a test run that never uses kp_provider should not pay for.
    if _requested(config) is None:
        return None
    params = provider_params(config)
    states = [f"{p.id} ({'available' if p.skip_reason is None else 'skipped'})" for p in params]
    return f"kp_runtime providers: {', '.join(states) or 'none'}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kp_provider" not in metafunc.fixturenames:
        return
    params = provider_params(metafunc.config)
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is not None:
        wanted = {_resolve(str(n)).name for n in marker.args}
        params = [p for p in params if p.name in wanted]
    if not params:
        reason = "no kp_runtime provider selected" + (" by the kp_providers marker" if marker is not None else "")
        metafunc.parametrize("kp_provider", [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
                             indirect=True, ids=["no-provider"])
        return
    values = [
        pytest.param(p.name, id=p.id, marks=[pytest.mark.skip(reason=p.skip_reason)] if p.skip_reason else [])
        for p in params
    ]
    metafunc.parametrize("kp_provider", values, indirect=True)


@pytest.fixture(scope="session")
def kp_provider(request: pytest.FixtureRequest) -> str:
    """The canonical name of the provider this test instance runs on (see the module docstring).

    Session-scoped, so fixtures of any scope (e.g. a module-scoped session) may depend on it.
    """
    return request.param


@pytest.fixture(scope="session")
def kp_reference_provider(pytestconfig: pytest.Config) -> str:
    """The reference provider's canonical name (``--kp-reference``, default ``cpu``); skips when unavailable."""
    param = _resolve(pytestconfig.getoption("kp_reference") or DEFAULT_REFERENCE)
    if param.skip_reason:
        pytest.skip(f"reference provider: {param.skip_reason}")
    return param.name
