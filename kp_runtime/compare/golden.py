"""Golden outputs: record a session's outputs for a set of feeds, compare another session later.

A golden set is a folder with two files:

* ``golden.npz``: feed ``i``'s inputs as ``f{i:06d}.in{j}`` and outputs as
  ``f{i:06d}.out{j}``, where ``j`` indexes the ``inputs``/``outputs`` lists of
  the metadata (names are not used as keys because any string may be a name);
* ``golden.json``: ``format``, ``version``, ``created`` (UTC, ISO 8601),
  ``model`` (``sha256`` of the model bytes when known, ``name``), ``provider``,
  ``providers``, ``provider_options``, ``modelmeta``, ``inputs`` and ``outputs``
  (``name``, ``type``, ``shape``), ``quantization`` of the recording session
  (so a golden set recorded on an NPU keeps its quantisation-aware
  tolerances), ``feeds`` (count) and ``kp_runtime`` (version).

Comparing against a golden set replays it as a session (:class:`GoldenSession`)
that answers each feed with its recorded outputs, so the comparison is exactly
:func:`~kp_runtime.compare.core.compare` with the golden set as reference ``b``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import kp_runtime
from kp_runtime.compare.core import ProgressCallback, _run, compare, iter_feeds, session_info
from kp_runtime.compare.feeds import _LazySequence
from kp_runtime.compare.report import CompareReport
from kp_runtime.quantization import TensorQuantization, session_quantization

__all__ = ["GoldenSet", "GoldenSession", "TensorInfo", "save_golden", "load_golden", "compare_to_golden", "model_sha256"]

GOLDEN_FORMAT = "kp_runtime.golden"
GOLDEN_VERSION = 1
# Attributes where a session may keep its kp_runtime ModelSource (``sha256``, ``path``).
_SOURCE_ATTRS = ("_model", "_model_source", "_source")
ARRAYS_FILE = "golden.npz"
METADATA_FILE = "golden.json"


@dataclass(frozen=True)
class TensorInfo:
    """A recorded input or output, shaped like ``NodeArg`` (``name``, ``type``, ``shape``)."""

    name: str
    type: str
    shape: list[Any]


def model_sha256(session: Any = None, model: Any = None) -> str | None:
    """SHA-256 of the model's bytes: from ``model`` (path, bytes or ``onnx.ModelProto``), else from the session.

    Sessions are asked duck-typed: a ``ModelSource``-like attribute with ``sha256``
    (kp_runtime), or onnxruntime's ``_model_path`` / ``_model_bytes``. ``None`` when unknown.
    """
    if model is None and session is not None:
        for attr in _SOURCE_ATTRS:
            source = getattr(session, attr, None)
            digest = getattr(source, "sha256", None)
            if isinstance(digest, str):
                return digest
        model = getattr(session, "_model_bytes", None) or getattr(session, "_model_path", None)
    if model is None:
        return None
    if isinstance(model, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(model)).hexdigest()
    if isinstance(model, (str, os.PathLike)):
        digest = hashlib.sha256()
        with open(model, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    serialize = getattr(model, "SerializeToString", None)
    if callable(serialize):
        return hashlib.sha256(serialize()).hexdigest()
    raise TypeError(f"model must be a path, bytes or an onnx.ModelProto, got {type(model).__name__}")


def _feed_key(feed: Mapping[str, Any]) -> bytes:
    """A content hash of a feed (names, dtypes, shapes and bytes), to find recorded outputs."""
    digest = hashlib.sha256()
    for name in sorted(feed):
        array = np.ascontiguousarray(np.asarray(feed[name]))
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.digest()


def _describe(args: Iterable[Any]) -> list[dict[str, Any]]:
    return [{"name": a.name, "type": a.type, "shape": list(a.shape)} for a in args]


def _modelmeta(session: Any) -> dict[str, Any]:
    getter = getattr(session, "get_modelmeta", None)
    if not callable(getter):
        return {}
    meta = getter()
    keys = ("producer_name", "graph_name", "domain", "description", "graph_description", "version")
    result = {k: getattr(meta, k) for k in keys if hasattr(meta, k)}
    result["custom_metadata_map"] = dict(getattr(meta, "custom_metadata_map", {}) or {})
    return result


def save_golden(
    session: Any,
    feeds: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    directory: str | os.PathLike,
    *,
    model: Any = None,
    output_names: Sequence[str] | None = None,
    overwrite: bool = False,
    compress: bool = True,
    progress: ProgressCallback | None = None,
) -> GoldenSet:
    """Run ``session`` on every feed and record inputs, outputs and metadata in ``directory``.

    ``model`` (path, bytes or ``ModelProto``) is hashed into the metadata; without it
    the hash is taken from the session when it can tell. An existing golden set is
    replaced only with ``overwrite=True`` (else ``FileExistsError``). Files are
    written under temporary names and renamed, so a failed run leaves no half set.
    """
    out_dir = Path(directory)
    if (out_dir / METADATA_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a golden set (pass overwrite=True to replace it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = list(session.get_inputs())
    outputs = list(session.get_outputs())
    if output_names is not None:
        known = {o.name for o in outputs}
        unknown = [n for n in output_names if n not in known]
        if unknown:
            raise ValueError(f"unknown output names {unknown}; outputs: {sorted(known)}")
        outputs = [o for o in outputs if o.name in set(output_names)]
    in_names = [a.name for a in inputs]
    out_names = [a.name for a in outputs]
    iterable, total = iter_feeds(feeds)
    tmp_arrays = out_dir / (ARRAYS_FILE + ".tmp")
    count = 0
    try:
        with zipfile.ZipFile(tmp_arrays, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as archive:
            for index, feed in enumerate(iterable):
                if not isinstance(feed, Mapping) or [n for n in in_names if n not in feed]:
                    given = sorted(feed) if isinstance(feed, Mapping) else type(feed).__name__
                    raise ValueError(f"feed {index} must hold every input {in_names}; got {given}")
                got = _run(session, out_names, feed, "golden", index)
                for j, name in enumerate(in_names):
                    _write_array(archive, f"f{index:06d}.in{j}", np.asarray(feed[name]))
                for j, name in enumerate(out_names):
                    value = got[name]
                    if not isinstance(value, np.ndarray):
                        raise TypeError(f"output {name!r} is a {type(value).__name__}; golden sets hold tensors only")
                    _write_array(archive, f"f{index:06d}.out{j}", value)
                count = index + 1
                if progress is not None:
                    progress(count, total)
        if count == 0:
            raise ValueError("no feeds to record (the feeds were empty)")
        info = session_info(session)
        quant = session_quantization(session)
        metadata = {
            "format": GOLDEN_FORMAT,
            "version": GOLDEN_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": {"sha256": model_sha256(session, model), "name": _model_name(session, model)},
            "provider": info.label,
            "providers": info.providers,
            "provider_options": info.provider_options,
            "modelmeta": _modelmeta(session),
            "inputs": _describe(inputs),
            "outputs": _describe(outputs),
            "quantization": {
                side: {name: q.to_dict() for name, q in quant[side].items()} for side in ("inputs", "outputs")
            },
            "feeds": count,
            "kp_runtime": kp_runtime.__version__,
        }
        tmp_meta = out_dir / (METADATA_FILE + ".tmp")
        tmp_meta.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_arrays, out_dir / ARRAYS_FILE)
        os.replace(tmp_meta, out_dir / METADATA_FILE)
    finally:
        for leftover in (tmp_arrays, out_dir / (METADATA_FILE + ".tmp")):
            leftover.unlink(missing_ok=True)
    return load_golden(out_dir)


def _model_name(session: Any, model: Any) -> str | None:
    if isinstance(model, (str, os.PathLike)):
        return Path(model).name
    path = getattr(session, "_model_path", None)
    source = next((getattr(session, a) for a in _SOURCE_ATTRS if getattr(session, a, None) is not None), None)
    path = path or getattr(source, "path", None)
    return Path(path).name if path else None


def _write_array(archive: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    if array.dtype.hasobject:
        raise TypeError(f"{key}: arrays of Python objects (dtype {array.dtype}) cannot be recorded")
    with archive.open(key + ".npy", "w", force_zip64=True) as handle:
        np.lib.format.write_array(handle, array, allow_pickle=False)


class _GoldenFeeds(_LazySequence):
    def __init__(self, golden: GoldenSet) -> None:
        self._golden = golden

    def __len__(self) -> int:
        return len(self._golden)

    def _make(self, index: int) -> dict[str, np.ndarray]:
        return self._golden.inputs_of(index)


class GoldenSet:
    """A recorded golden set (see :func:`load_golden`). ``metadata`` is the parsed ``golden.json``."""

    def __init__(self, directory: Path, metadata: dict[str, Any]) -> None:
        self.directory = directory
        self.metadata = metadata
        self.inputs = [TensorInfo(**t) for t in metadata["inputs"]]
        self.outputs = [TensorInfo(**t) for t in metadata["outputs"]]
        self.quantization = {
            side: {name: TensorQuantization.from_dict(q) for name, q in metadata["quantization"].get(side, {}).items()}
            for side in ("inputs", "outputs")
        }
        self._archive = np.load(directory / ARRAYS_FILE, allow_pickle=False)
        self._count = int(metadata["feeds"])

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._archive.close()

    def __enter__(self) -> GoldenSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _array(self, key: str) -> np.ndarray:
        try:
            return self._archive[key]
        except KeyError:
            raise ValueError(f"{self.directory / ARRAYS_FILE} lacks {key}: the golden set is incomplete") from None

    def _check(self, index: int) -> None:
        if not 0 <= index < self._count:
            raise IndexError(f"feed {index} out of range: the golden set holds {self._count} feeds")

    def inputs_of(self, index: int) -> dict[str, np.ndarray]:
        """Recorded feed ``index``."""
        self._check(index)
        return {t.name: self._array(f"f{index:06d}.in{j}") for j, t in enumerate(self.inputs)}

    def outputs_of(self, index: int) -> dict[str, np.ndarray]:
        """Recorded outputs of feed ``index``."""
        self._check(index)
        return {t.name: self._array(f"f{index:06d}.out{j}") for j, t in enumerate(self.outputs)}

    @property
    def feeds(self) -> Sequence[dict[str, np.ndarray]]:
        """The recorded feeds, a lazy sequence."""
        return _GoldenFeeds(self)

    def session(self) -> GoldenSession:
        """This golden set as a read-only session that replays the recorded outputs."""
        return GoldenSession(self)

    def __repr__(self) -> str:
        return f"GoldenSet({str(self.directory)!r}, feeds={self._count}, provider={self.metadata.get('provider')!r})"


class GoldenSession:
    """Replays a :class:`GoldenSet` through the session API (``run`` looks feeds up by content).

    ``run`` raises ``ValueError`` for a feed that was not recorded.
    """

    def __init__(self, golden: GoldenSet) -> None:
        self.golden = golden
        self._index: dict[bytes, int] | None = None

    def get_inputs(self) -> list[TensorInfo]:
        return list(self.golden.inputs)

    def get_outputs(self) -> list[TensorInfo]:
        return list(self.golden.outputs)

    def get_providers(self) -> list[str]:
        return [f"golden:{self.golden.metadata.get('provider')}"]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return dict(self.golden.metadata.get("provider_options", {}))

    def get_quantization(self) -> dict[str, dict[str, TensorQuantization]]:
        return {side: dict(entries) for side, entries in self.golden.quantization.items()}

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any], run_options: Any = None) -> list[Any]:
        if self._index is None:
            self._index = {_feed_key(self.golden.inputs_of(i)): i for i in range(len(self.golden))}
        index = self._index.get(_feed_key(input_feed))
        if index is None:
            raise ValueError(f"this feed was not recorded in the golden set {self.golden.directory}")
        recorded = self.golden.outputs_of(index)
        names = list(output_names) if output_names else [t.name for t in self.golden.outputs]
        unknown = [n for n in names if n not in recorded]
        if unknown:
            raise ValueError(f"outputs {unknown} were not recorded; recorded: {list(recorded)}")
        return [recorded[n] for n in names]


def load_golden(directory: str | os.PathLike) -> GoldenSet:
    """Open a golden set written by :func:`save_golden` (``FileNotFoundError``/``ValueError`` when it is not one)."""
    root = Path(directory)
    meta_path = root / METADATA_FILE
    if not meta_path.is_file() or not (root / ARRAYS_FILE).is_file():
        raise FileNotFoundError(f"{root} is not a golden set: it needs {METADATA_FILE} and {ARRAYS_FILE}")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != GOLDEN_FORMAT:
        raise ValueError(f"{meta_path}: not a kp_runtime golden set (format {metadata.get('format')!r})")
    if metadata.get("version") != GOLDEN_VERSION:
        raise ValueError(f"{meta_path}: unsupported golden version {metadata.get('version')!r}, expected {GOLDEN_VERSION}")
    for key in ("inputs", "outputs", "feeds", "quantization"):
        if key not in metadata:
            raise ValueError(f"{meta_path}: missing {key!r}")
    return GoldenSet(root, metadata)


def compare_to_golden(
    session: Any,
    golden: GoldenSet | str | os.PathLike,
    *,
    model: Any = None,
    limit: int | None = None,
    **kwargs: Any,
) -> CompareReport:
    """Compare ``session`` (as candidate ``a``) against a golden set (reference ``b``) on its recorded feeds.

    ``limit``: use only the first ``limit`` recorded feeds. ``kwargs`` are
    :func:`~kp_runtime.compare.core.compare`'s tolerances and options.
    The report notes a differing model hash (expected when, say, a NEF is compared
    against outputs recorded from the ONNX it was compiled from).
    """
    golden_set = golden if isinstance(golden, GoldenSet) else load_golden(golden)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    feeds = golden_set.feeds if limit is None else golden_set.feeds[:limit]
    report = compare(session, golden_set.session(), feeds, **kwargs)
    recorded = golden_set.metadata.get("model", {}).get("sha256")
    current = model_sha256(session, model)
    if recorded and current and recorded != current:
        report.notes.append(
            f"model hash differs from the golden set's ({current[:12]}... vs {recorded[:12]}...): "
            "a different model (or format) than the one recorded"
        )
    report.notes.append(
        f"golden set {golden_set.directory} recorded {golden_set.metadata.get('created')} "
        f"with {golden_set.metadata.get('provider')}"
    )
    return report
