"""``SessionOptions``, ``RunOptions`` and their enums, with onnxruntime's names and defaults.

Options that only steer onnxruntime's own engine (arenas, thread pools, graph
optimisation) are kept so that ported code runs unchanged; providers may read
them but the CPU reference provider ignores them.
"""

from __future__ import annotations

import copy
import enum
from typing import Any


class GraphOptimizationLevel(enum.IntEnum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


class _ConfigEntries:
    """``add_*_config_entry`` / ``get_*_config_entry`` with onnxruntime's error text."""

    _owner = "SessionOptions"

    def _entries(self) -> dict[str, str]:
        entries = self.__dict__.get("_config")
        if entries is None:
            entries = self.__dict__["_config"] = {}
        return entries

    def _add_entry(self, key: str, value: str) -> None:
        self._entries()[str(key)] = str(value)

    def _get_entry(self, key: str) -> str:
        try:
            return self._entries()[key]
        except KeyError:
            raise RuntimeError(
                f"{self._owner} does not have configuration with key: {key}"
            ) from None


class SessionOptions(_ConfigEntries):
    """Session configuration (onnxruntime 1.32 attribute names and defaults).

    ``add_provider(name, options)`` records providers as onnxruntime's plugin-EP
    API does; they are used when ``InferenceSession(providers=None)``.
    """

    def __init__(self) -> None:
        self.enable_cpu_mem_arena = True
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.enable_profiling = False
        self.profile_file_prefix = "onnxruntime_profile_"
        self.optimized_model_filepath = ""
        self.logid = ""
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.execution_order = ExecutionOrder.DEFAULT
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.use_deterministic_compute = False
        self.use_per_session_threads = True
        self.free_dimension_overrides: dict[str, int] = {}
        self._providers: list[tuple[str, dict[str, str]]] = []

    def add_session_config_entry(self, key: str, value: str) -> None:
        self._add_entry(key, value)

    def get_session_config_entry(self, key: str) -> str:
        return self._get_entry(key)

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        """Recorded for providers that support it (the CPU reference provider does not need it)."""
        self.free_dimension_overrides[str(dim_name)] = int(dim_value)

    def add_provider(self, provider_name: str, provider_options: dict[Any, Any] | None = None) -> None:
        self._providers.append(
            (provider_name, {str(k): str(v) for k, v in (provider_options or {}).items()})
        )

    def has_providers(self) -> bool:
        return bool(self._providers)

    @property
    def providers(self) -> list[tuple[str, dict[str, str]]]:
        """Providers added with :meth:`add_provider` (a copy)."""
        return copy.deepcopy(self._providers)


class RunOptions(_ConfigEntries):
    """Per-run options. ``terminate=True`` makes ``run`` fail as in onnxruntime."""

    _owner = "RunOptions"

    def __init__(self) -> None:
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.only_execute_path_to_fetches = False
        self.terminate = False

    def add_run_config_entry(self, key: str, value: str) -> None:
        self._add_entry(key, value)

    def get_run_config_entry(self, key: str) -> str:
        return self._get_entry(key)
