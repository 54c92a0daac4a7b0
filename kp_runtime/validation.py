"""Input and output-name validation shared by every provider.

Checks, error types and texts are onnxruntime 1.32's (ORT_API.md §1.9), in its
order: missing required inputs (``ValueError``), unknown input names, then per
input its type and shape (``InvalidArgument``), then output names. When several
inputs are wrong at once, which one is reported first may differ from
onnxruntime (which walks its feeds in an internal order).

Conversions (as onnxruntime): Python lists become arrays of the input's dtype
(numpy scalars become 0-d arrays, which onnxruntime refuses);
non-contiguous, read-only views and non-native byte order are converted to
native C-contiguous arrays; NaN and inf pass through.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from kp_runtime.errors import InvalidArgument
from kp_runtime.node_arg import NodeArg, array_type_string, numpy_dtype_for

_RANK_HINT = "Please fix either the inputs/outputs or the model."


def validate_feed(
    inputs: Sequence[NodeArg],
    feed: Mapping[str, Any],
    optional_inputs: Sequence[NodeArg] = (),
    alternatives: Mapping[str, Sequence[NodeArg]] | None = None,
) -> dict[str, Any]:
    """Check ``feed`` against the model's ``inputs``; return name -> converted value.

    ``optional_inputs`` (e.g. overridable initializers) may be fed but need not be.
    Inputs whose type starts with ``optional`` are not required. ``alternatives`` maps an
    input name to other forms the provider also accepts (e.g. a uint8 image for a float
    input of an NPU model): a value matching one of them passes; one matching none is
    reported against the input's own ``NodeArg`` (onnxruntime's text).
    """
    if not isinstance(feed, Mapping):
        raise TypeError(f"input_feed must be a dict of input name -> array, got {type(feed).__name__}")
    names = list(feed.keys())
    missing = [
        i.name for i in inputs if i.name not in feed and not i.type.startswith("optional")
    ]
    if missing:
        raise ValueError(f"Required inputs ({missing}) are missing from input feed ({names}).")
    by_name = {i.name: i for i in optional_inputs}
    by_name.update({i.name: i for i in inputs})
    for name in names:
        if name not in by_name:
            raise InvalidArgument(f"Invalid input name: {name}")
    alternatives = alternatives or {}
    return {
        name: _check_with_alternatives(by_name[name], alternatives.get(name, ()), feed[name])
        for name in names
    }


def _check_with_alternatives(arg: NodeArg, others: Sequence[NodeArg], value: Any) -> Any:
    try:
        return _check_value(arg, value)
    except InvalidArgument as primary:
        for other in others:
            try:
                return _check_value(other, value)
            except InvalidArgument:
                continue
        raise primary


def validate_output_names(
    outputs: Sequence[NodeArg], output_names: Iterable[str] | None
) -> list[str]:
    """``None``/empty -> every output in model order; otherwise each name must exist."""
    if not output_names:
        return [o.name for o in outputs]
    if isinstance(output_names, str):
        raise TypeError("output_names must be a list of names, not a single string")
    known = {o.name for o in outputs}
    names = list(output_names)
    for name in names:
        if name not in known:
            raise InvalidArgument(f"Invalid output name:{name}")
    return names


@functools.lru_cache(maxsize=1024)
def _exact_spec(type_string: str, shape: tuple[Any, ...]) -> tuple[np.dtype, tuple[int, ...]] | None:
    """(dtype, shape) of an input whose every dimension is fixed; ``None`` otherwise."""
    dtype = numpy_dtype_for(type_string)
    if dtype is None or dtype == np.dtype(object) or not all(type(d) is int for d in shape):
        return None
    return dtype, shape


def _check_value(arg: NodeArg, value: Any) -> Any:
    if type(value) is np.ndarray and arg.rank_known:
        # fast path for the common case (run() hot loop): exactly the declared array
        spec = _exact_spec(arg.type, tuple(arg.shape))
        if (spec is not None and value.shape == spec[1] and value.dtype == spec[0]
                and value.dtype.isnative and value.flags.c_contiguous):
            return value
    expected = numpy_dtype_for(arg.type)
    if expected is None:
        # Sequences, maps, optionals: passed through to the provider as given.
        if arg.type.startswith("seq(") and isinstance(value, np.ndarray):
            raise InvalidArgument(
                f"input with name: '{arg.name}' expected to be of type: {arg.type} but received a tensor"
            )
        return value
    array = _to_array(value, expected)
    # Type and shape are checked on the caller's array as given, before any copy: a
    # broadcast (zero-stride) view of a huge shape must be refused, not materialised.
    native = array.dtype if array.dtype.isnative else array.dtype.newbyteorder("=")
    actual = array_type_string(np.empty(0, dtype=native))
    if actual != arg.type:
        raise InvalidArgument(
            f"Unexpected input data type. Actual: ({actual}) , expected: ({arg.type})"
        )
    if arg.rank_known:
        _check_shape(arg, array.shape)
    return _normalised(array)


def _to_array(value: Any, expected: np.dtype) -> np.ndarray:
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, np.generic):
        # Beyond onnxruntime (which refuses numpy scalars): a 0-d array.
        array = np.asarray(value)
    elif isinstance(value, list):
        try:
            array = np.array(value, dtype=expected)
        except (ValueError, TypeError, OverflowError):
            raise RuntimeError("Could not create tensor from given input list") from None
    else:
        raise RuntimeError(f"Unable to handle object of type {type(value)}")
    return array


def _normalised(array: np.ndarray) -> np.ndarray:
    """Native byte order, C-contiguous (copies only when needed)."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array


def _check_shape(arg: NodeArg, shape: tuple[int, ...]) -> None:
    if len(shape) != len(arg.shape):
        raise InvalidArgument(
            f"Invalid rank for input: {arg.name} Got: {len(shape)} Expected: {len(arg.shape)} "
            + _RANK_HINT
        )
    bad = [
        (i, got, want)
        for i, (got, want) in enumerate(zip(shape, arg.shape))
        if isinstance(want, int) and got != want
    ]
    if bad:
        lines = "".join(f" index: {i} Got: {got} Expected: {want}\n" for i, got, want in bad)
        raise InvalidArgument(
            f"Got invalid dimensions for input: {arg.name} for the following indices\n"
            f"{lines} {_RANK_HINT}"
        )
