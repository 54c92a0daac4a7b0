"""The pytest plugin, run in nested pytest sessions (pytester)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from kp_runtime import plugins
from kp_runtime.hookspecs import hookimpl
from kp_runtime.provider import Availability, ExecutionProvider

pytest_plugins = ["pytester"]

# Third-party plugins the nested sessions do not need (hypothesis' summary hook alone costs ~1 s a run).
QUIET_PLUGINS = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "test_accuracy.py"


def _plugin_args() -> list[str]:
    # With the pytest11 entry point installed the plugin loads by itself; loading it again
    # with -p under its module name would register it twice (a pluggy error).
    installed = any(ep.value == "kp_runtime.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "kp_runtime.pytest_plugin"]


class OfflineProvider(ExecutionProvider):
    """A provider whose device is not plugged in."""

    name = "OfflineExecutionProvider"
    aliases = ("offline",)

    def is_available(self) -> Availability:
        return Availability.no("no dongle plugged in")

    def create_session(self, model, options, session_options):
        raise AssertionError("an unavailable provider must not be asked for a session")


class OfflinePlugin:
    @hookimpl
    def kp_runtime_providers(self):
        return [OfflineProvider()]


@pytest.fixture
def offline_registered():
    plugins.reset()
    plugins.register(OfflinePlugin(), name="offline-test")
    yield
    plugins.reset()


@pytest.fixture
def run(pytester, offline_registered):
    def go(*args: str):
        return pytester.runpytest_inprocess(*_plugin_args(), *QUIET_PLUGINS, *args)

    return go


TEST_FILE = """
import pytest

seen = []

def test_provider(kp_provider):
    seen.append(kp_provider)
    assert kp_provider == "CPUExecutionProvider"

def test_plain():
    pass
"""


def test_parametrises_and_skips_unavailable_with_the_reason(pytester, run) -> None:
    pytester.makepyfile(TEST_FILE)
    result = run("--kp-providers=offline,cpu", "-v", "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines([
        "*test_provider?offline? SKIPPED*",
        "*test_provider?cpu? PASSED*",
        "*OfflineExecutionProvider is not available: no dongle plugged in*",
    ])


def test_default_is_every_registered_provider(pytester, run) -> None:
    pytester.makepyfile(TEST_FILE)
    result = run("-v")
    assert "kp_runtime providers:" not in result.stdout.str()  # no header unless providers are asked for
    result.stdout.fnmatch_lines(["*test_provider?cpu? PASSED*"])
    result.stdout.fnmatch_lines(["*test_provider?offline? SKIPPED*"])
    assert result.ret == 0


def test_only_the_listed_providers_and_ini(pytester, run) -> None:
    pytester.makepyfile(TEST_FILE)
    result = run("--kp-providers=cpu")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["kp_runtime providers: cpu (available)"])
    pytester.makeini("[pytest]\nkp_providers = offline\n")
    run().assert_outcomes(passed=1, skipped=1)


def test_unknown_provider_is_a_usage_error(pytester, run) -> None:
    pytester.makepyfile(TEST_FILE)
    result = run("--kp-providers=gpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--kp-providers: Unknown execution provider 'gpu'*"])
    assert run("--kp-providers=,").ret == pytest.ExitCode.USAGE_ERROR


def test_marker_limits_a_test_and_fixtures_may_depend_on_the_provider(pytester, run) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def session_name(kp_provider):
            return "session on " + kp_provider

        @pytest.mark.kp_providers("cpu")
        def test_cpu_only(kp_provider):
            assert kp_provider == "CPUExecutionProvider"

        def test_through_fixture(session_name, kp_reference_provider):
            assert session_name == "session on CPUExecutionProvider"
            assert kp_reference_provider == "CPUExecutionProvider"

        @pytest.mark.kp_providers("offline")
        def test_offline_only(kp_provider):
            raise AssertionError("must be skipped")
        """
    )
    result = run("--kp-providers=cpu,offline", "-v")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["*test_cpu_only?cpu? PASSED*"])
    assert "test_cpu_only[offline]" not in result.stdout.str()


def test_unavailable_reference_skips(pytester, run) -> None:
    pytester.makepyfile("def test_ref(kp_reference_provider):\n    pass\n")
    result = run("--kp-reference=offline", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*reference provider: OfflineExecutionProvider is not available*"])


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="examples/test_accuracy.py is absent")
def test_the_accuracy_example_runs(run) -> None:
    result = run(str(EXAMPLE), "--kp-providers=cpu,offline", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
