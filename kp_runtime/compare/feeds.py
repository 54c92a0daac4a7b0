"""Feeds for comparisons: random tensors matching a session's inputs, or arrays loaded from files.

Both return lazy, re-iterable sequences (``len()`` works, so progress bars know
the total; items are built or read when indexed).

Random feeds follow Polygraphy's data loader: seeded, uniform in a value range
(default ``[0, 1]``, per input if wanted), symbolic or unknown dimensions set to
``dim_value`` (default 1) unless ``shapes`` gives them. Feed ``i`` depends only
on ``(seed, i)``, so any feed can be regenerated alone.

Files (always loaded with ``allow_pickle=False``):

* ``x.npz``: one feed; its keys are input names (a single-input model also accepts
  any single key, such as ``arr_0`` from ``np.savez(path, x)``);
* ``x.npy``: one feed of a single-input model;
* a folder: one feed per ``.npz``, per ``.npy`` (single-input models) and per
  sub-folder of ``<input name>.npy`` files, in natural order (``2`` before ``10``);
  a folder whose ``.npy`` files are exactly the inputs' names is itself one feed;
  a golden folder (``golden.json``) yields its recorded feeds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from kp_runtime.node_arg import numpy_dtype_for

__all__ = ["DEFAULT_VALUE_RANGE", "RandomFeeds", "FileFeeds", "random_feeds", "load_feeds", "input_args"]

DEFAULT_VALUE_RANGE = (0.0, 1.0)

ValueRange = tuple[float, float]


def input_args(session_or_inputs: Any) -> list[Any]:
    """``session.get_inputs()``, or the given list of ``NodeArg``-like objects (``name``, ``type``, ``shape``)."""
    getter = getattr(session_or_inputs, "get_inputs", None)
    inputs = list(getter() if callable(getter) else session_or_inputs)
    for item in inputs:
        if not all(hasattr(item, attr) for attr in ("name", "type", "shape")):
            raise TypeError(f"{item!r} is not a NodeArg (needs name, type and shape)")
    return inputs


@dataclass(frozen=True)
class _InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    low: float
    high: float

    def generate(self, rng: np.random.Generator) -> np.ndarray:
        if self.dtype.kind == "b":
            return rng.random(self.shape) < 0.5
        if self.dtype.kind in "iu":
            return rng.integers(math.ceil(self.low), math.floor(self.high), size=self.shape, endpoint=True).astype(
                self.dtype
            )
        return rng.uniform(self.low, self.high, size=self.shape).astype(self.dtype)


class _LazySequence(Sequence):
    """A sequence whose items are made on demand by ``_make(i)``."""

    def __len__(self) -> int:
        raise NotImplementedError

    def _make(self, index: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> dict[str, np.ndarray]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, np.ndarray]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._make(i) for i in range(*index.indices(len(self)))]
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"feed index {index} out of range for {n} feeds")
        return self._make(index % n)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(len(self)):
            yield self._make(i)


class RandomFeeds(_LazySequence):
    """``n`` random feeds (see :func:`random_feeds`)."""

    def __init__(self, specs: list[_InputSpec], n: int, seed: int) -> None:
        self.specs = specs
        self.n = n
        self.seed = seed

    def __len__(self) -> int:
        return self.n

    def _make(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        return {spec.name: spec.generate(rng) for spec in self.specs}

    def __repr__(self) -> str:
        return f"RandomFeeds(n={self.n}, seed={self.seed}, inputs={[s.name for s in self.specs]})"


def _value_range(value_range: ValueRange | Mapping[str, ValueRange] | None, name: str) -> ValueRange:
    if isinstance(value_range, Mapping):
        value_range = value_range.get(name, value_range.get("", DEFAULT_VALUE_RANGE))
    if value_range is None:
        return DEFAULT_VALUE_RANGE
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value range of input {name!r} must be (low, high), got {value_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"value range of input {name!r} must be finite with low <= high, got {value_range!r}")
    return low, high


def _spec_shape(arg: Any, shapes: Mapping[str, Sequence[int]], dim_value: int) -> tuple[int, ...]:
    if arg.name in shapes:
        shape = tuple(shapes[arg.name])
        if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
            raise ValueError(f"shape for input {arg.name!r} must be non-negative ints, got {shapes[arg.name]!r}")
        declared = list(arg.shape or [])
        if declared and len(declared) != len(shape):
            raise ValueError(f"shape {shape} for input {arg.name!r} has rank {len(shape)}, the model's is {declared}")
        for i, (want, got) in enumerate(zip(declared, shape)):
            if isinstance(want, int) and want != got:
                raise ValueError(f"shape {shape} for input {arg.name!r}: dim {i} must be {want} (model: {declared})")
        return tuple(int(d) for d in shape)
    return tuple(d if isinstance(d, int) and d >= 0 else dim_value for d in (arg.shape or []))


def random_feeds(
    session_or_inputs: Any,
    n: int = 1,
    *,
    seed: int = 0,
    value_range: ValueRange | Mapping[str, ValueRange] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    dim_value: int = 1,
) -> RandomFeeds:
    """``n`` seeded random feeds matching ``session.get_inputs()`` (dtype and shape).

    ``value_range``: ``(low, high)`` for all inputs, or ``{input: (low, high), "": default}``;
    integers are drawn from ``[ceil(low), floor(high)]`` inclusive, booleans are
    fair coin flips. ``shapes``: concrete shapes for inputs with symbolic or
    unknown dimensions (fixed dimensions must agree); otherwise those take
    ``dim_value``. Raises ``TypeError`` for non-tensor or string inputs.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(dim_value, bool) or not isinstance(dim_value, int) or dim_value < 0:
        raise ValueError(f"dim_value must be an int >= 0, got {dim_value!r}")
    inputs = input_args(session_or_inputs)
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - {a.name for a in inputs})
    if unknown:
        raise ValueError(f"shapes given for unknown inputs {unknown}; inputs: {[a.name for a in inputs]}")
    specs = []
    for arg in inputs:
        dtype = numpy_dtype_for(arg.type)
        if dtype is None or dtype.kind not in "biufc":
            raise TypeError(f"input {arg.name!r} has type {arg.type!r}; random feeds support numeric tensors only")
        low, high = _value_range(value_range, arg.name)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            if math.ceil(low) > math.floor(high) or math.ceil(low) < info.min or math.floor(high) > info.max:
                raise ValueError(
                    f"value range ({low}, {high}) of input {arg.name!r} holds no {dtype} value within "
                    f"[{info.min}, {info.max}]"
                )
        specs.append(_InputSpec(arg.name, dtype, _spec_shape(arg, shapes, dim_value), low, high))
    return RandomFeeds(specs, n, seed)


# -- files ------------------------------------------------------------------------------


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy file ({exc})") from None


def _name_arrays(arrays: dict[str, np.ndarray], names: list[str] | None, where: Path) -> dict[str, np.ndarray]:
    """Map loaded arrays to input names (see the module docstring for the rules)."""
    if names is None or set(arrays) == set(names):
        return arrays
    if len(names) == 1 and len(arrays) == 1:
        return {names[0]: next(iter(arrays.values()))}
    raise ValueError(f"{where}: arrays {sorted(arrays)} do not match the model's inputs {names}")


class FileFeeds(_LazySequence):
    """Feeds read from files, one source (file or folder) per feed; see :func:`load_feeds`."""

    def __init__(self, sources: list[Path], names: list[str] | None) -> None:
        self.sources = sources
        self.names = names

    def __len__(self) -> int:
        return len(self.sources)

    def _make(self, index: int) -> dict[str, np.ndarray]:
        source = self.sources[index]
        if source.is_dir():
            arrays = {p.stem: _load_npy(p) for p in sorted(source.glob("*.npy"))}
        elif source.suffix == ".npz":
            try:
                with np.load(source, allow_pickle=False) as archive:
                    arrays = {key: archive[key] for key in archive.files}
            except (ValueError, OSError, EOFError) as exc:
                raise ValueError(f"{source}: not a readable .npz file ({exc})") from None
        else:
            if self.names is None:
                raise ValueError(f"{source}: an .npy file holds one unnamed array; pass the session to load it")
            arrays = {source.stem: _load_npy(source)}
        return _name_arrays(arrays, self.names, source)

    def __repr__(self) -> str:
        return f"FileFeeds({len(self.sources)} feeds)"


class BatchedFeeds(_LazySequence):
    """Feeds sliced from arrays with a leading sample axis (one array per input)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self._count = len(next(iter(arrays.values())))

    def __len__(self) -> int:
        return self._count

    def _make(self, index: int) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(array[index]) for name, array in self.arrays.items()}

    def __repr__(self) -> str:
        return f"BatchedFeeds({self._count} feeds)"


def _batched_npz(path: Path, inputs: list[Any]) -> BatchedFeeds | None:
    """An ``.npz`` whose arrays are the model inputs with one extra leading (sample) axis,
    the format ``kp-runtime build-nef --calibration`` reads; ``None`` when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None
    names = [a.name for a in inputs]
    if len(names) == 1 and len(arrays) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
    if set(arrays) != set(names):
        return None
    ranks = {a.name: len(a.shape) if isinstance(a.shape, (list, tuple)) else None for a in inputs}
    if any(ranks[n] is None or arrays[n].ndim != ranks[n] + 1 for n in names):
        return None
    counts = {len(arrays[n]) for n in names}
    if len(counts) != 1 or counts == {0}:
        raise ValueError(
            f"{path}: batched feeds need the same, non-zero number of samples per input, "
            f"got { {n: len(arrays[n]) for n in names} }"
        )
    return BatchedFeeds({n: arrays[n] for n in names})


def load_feeds(path: str | Path, session_or_inputs: Any = None, *, limit: int | None = None) -> Sequence[dict[str, Any]]:
    """Feeds from an ``.npz``/``.npy`` file or a folder (module docstring); at most ``limit`` of them.

    ``session_or_inputs`` (a session or its ``get_inputs()``) names the arrays of
    ``.npy`` files and checks ``.npz`` keys; without it ``.npz`` keys are used as
    they are. Raises ``FileNotFoundError`` for a missing path and ``ValueError``
    for files that are not feeds of this model.
    """
    root = Path(path)
    names = [a.name for a in input_args(session_or_inputs)] if session_or_inputs is not None else None
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    if not root.exists():
        raise FileNotFoundError(f"no feeds at {root}: the path does not exist")
    if root.is_dir() and (root / "golden.json").is_file():
        from kp_runtime.compare.golden import load_golden

        feeds: Sequence[dict[str, Any]] = load_golden(root).feeds
        return feeds[:limit] if limit is not None else feeds
    if root.is_file():
        if root.suffix not in (".npz", ".npy"):
            raise ValueError(f"{root}: expected an .npz or .npy file, or a folder of them")
        if root.suffix == ".npz" and session_or_inputs is not None:
            batched = _batched_npz(root, input_args(session_or_inputs))
            if batched is not None:
                return batched[:limit] if limit is not None else batched
        sources = [root]
    else:
        npys = sorted(root.glob("*.npy"))
        subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if names is not None and npys and not subdirs and {p.stem for p in npys} == set(names) and len(names) > 1:
            sources = [root]
        else:
            sources = sorted(
                (p for p in root.iterdir() if not p.name.startswith(".") and (p.suffix in (".npz", ".npy") or p.is_dir())),
                key=_natural_key,
            )
        if not sources:
            raise ValueError(f"{root}: no .npz/.npy files or sample folders found")
    if limit is not None:
        sources = sources[:limit]
    return FileFeeds(sources, names)
