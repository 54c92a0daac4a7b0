"""Quantisation facts a session may expose, for quantisation-aware comparison.

A session whose provider runs a fixed-point model (an NPU) knows the real value
of one least-significant bit (LSB) of each input and output tensor. It exposes
them through an optional method::

    session.get_quantization() -> {"inputs": {name: TensorQuantization, ...},
                                   "outputs": {name: TensorQuantization, ...}}

Float providers return empty dicts, or do not have the method at all: callers
must use ``getattr(session, "get_quantization", None)`` and treat a missing
method as "float everywhere" (:func:`session_quantization` does exactly that).
A tensor missing from the dicts is a float tensor.

The model is symmetric fixed point (no zero point), as Kneron's is:
``real = fixed * step`` and ``fixed = clip(round(real / step), qmin, qmax)``.
With Kneron's parameters ``step = 1 / (scale * 2**radix)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TensorQuantization", "QuantizationInfo", "session_quantization"]

QuantizationInfo = dict[str, dict[str, "TensorQuantization"]]


@dataclass(frozen=True, eq=False)
class TensorQuantization:
    """Quantisation of one tensor.

    ``step``: the real value of one LSB; a positive float (per tensor) or a 1-D
    array of positive floats, one per index along ``axis`` (per channel).
    ``axis``: the tensor axis the per-channel steps run along (required with an
    array step, ``None`` for a scalar step; negative values count from the end).
    ``qmin``/``qmax``: the integer range (e.g. -128/127 for int8), when known;
    used to model saturation. ``None`` means unknown (no clipping modelled).
    """

    name: str
    step: float | np.ndarray
    axis: int | None = None
    qmin: int | None = None
    qmax: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"TensorQuantization.name must be a non-empty str, got {self.name!r}")
        step = self.step
        if isinstance(step, (int, float, np.integer, np.floating)) and not isinstance(step, bool):
            value = float(step)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"quantisation step of {self.name!r} must be a finite positive number, got {step!r}")
            if self.axis is not None:
                raise ValueError(f"quantisation of {self.name!r}: axis={self.axis} given with a scalar step")
            object.__setattr__(self, "step", value)
        else:
            try:
                array = np.array(step, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"quantisation step of {self.name!r} must be a float or a 1-D array of floats, got {step!r}"
                ) from exc
            if array.ndim != 1 or array.size == 0:
                raise ValueError(
                    f"per-channel quantisation step of {self.name!r} must be a non-empty 1-D array, "
                    f"got shape {array.shape}"
                )
            if not (np.all(np.isfinite(array)) and np.all(array > 0)):
                raise ValueError(f"quantisation steps of {self.name!r} must all be finite and positive")
            if self.axis is None or isinstance(self.axis, bool) or not isinstance(self.axis, (int, np.integer)):
                raise ValueError(
                    f"per-channel quantisation of {self.name!r} needs an integer axis, got {self.axis!r}"
                )
            array.setflags(write=False)
            object.__setattr__(self, "step", array)
            object.__setattr__(self, "axis", int(self.axis))
        if (self.qmin is None) != (self.qmax is None):
            raise ValueError(f"quantisation of {self.name!r}: give both qmin and qmax, or neither")
        if self.qmin is not None and not int(self.qmin) < int(self.qmax):  # type: ignore[arg-type]
            raise ValueError(f"quantisation of {self.name!r}: qmin {self.qmin} must be below qmax {self.qmax}")

    @property
    def per_channel(self) -> bool:
        return isinstance(self.step, np.ndarray)

    @property
    def max_step(self) -> float:
        """The largest step (the step itself when per tensor)."""
        return float(np.max(self.step))

    def step_for(self, shape: tuple[int, ...]) -> float | np.ndarray:
        """The step broadcastable against a tensor of ``shape`` (scalar when per tensor).

        Raises ``ValueError`` when ``axis`` is outside ``shape`` or the number of
        steps does not match that axis' length.
        """
        if not isinstance(self.step, np.ndarray):
            return self.step
        ndim = len(shape)
        axis = self.axis if self.axis >= 0 else self.axis + ndim  # type: ignore[operator]
        if not 0 <= axis < ndim:
            raise ValueError(
                f"quantisation axis {self.axis} of {self.name!r} is outside a tensor of shape {tuple(shape)}"
            )
        if shape[axis] != self.step.size:
            raise ValueError(
                f"{self.step.size} per-channel steps of {self.name!r} do not match axis {self.axis} "
                f"of a tensor of shape {tuple(shape)}"
            )
        view = [1] * ndim
        view[axis] = self.step.size
        return self.step.reshape(view)

    def quantize_dequantize(self, values: np.ndarray) -> np.ndarray:
        """``values`` rounded to the fixed-point grid (half to even), clipped when the range is known."""
        values = np.asarray(values)
        step = self.step_for(values.shape)
        fixed = np.rint(values.astype(np.float64) / step)
        if self.qmin is not None:
            fixed = np.clip(fixed, self.qmin, self.qmax)
        return (fixed * step).astype(values.dtype, copy=False)

    def representable_range(self, shape: tuple[int, ...]) -> tuple[Any, Any] | None:
        """``(lowest, highest)`` real values (broadcastable), or ``None`` when the range is unknown."""
        if self.qmin is None:
            return None
        step = self.step_for(shape)
        return self.qmin * step, self.qmax * step  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (inverse: :meth:`from_dict`)."""
        step = self.step.tolist() if isinstance(self.step, np.ndarray) else self.step
        return {"name": self.name, "step": step, "axis": self.axis, "qmin": self.qmin, "qmax": self.qmax}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorQuantization:
        try:
            return cls(data["name"], data["step"], data.get("axis"), data.get("qmin"), data.get("qmax"))
        except KeyError as exc:
            raise ValueError(f"quantisation record {dict(data)!r} lacks {exc}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorQuantization):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        step = tuple(self.step.tolist()) if isinstance(self.step, np.ndarray) else self.step
        return hash((self.name, step, self.axis, self.qmin, self.qmax))


def session_quantization(session: object) -> QuantizationInfo:
    """``session.get_quantization()`` checked and normalised; float (empty) when absent.

    Raises ``TypeError`` when the method returns something of the wrong shape,
    so a provider bug is reported rather than silently treated as float.
    """
    method = getattr(session, "get_quantization", None)
    if method is None:
        return {"inputs": {}, "outputs": {}}
    info = method()
    if info is None:
        return {"inputs": {}, "outputs": {}}
    if not isinstance(info, Mapping):
        raise TypeError(f"get_quantization() must return a dict, got {type(info).__name__}")
    result: QuantizationInfo = {}
    for side in ("inputs", "outputs"):
        entries = info.get(side) or {}
        if not isinstance(entries, Mapping):
            raise TypeError(f"get_quantization()[{side!r}] must be a dict, got {type(entries).__name__}")
        for name, quant in entries.items():
            if not isinstance(quant, TensorQuantization):
                raise TypeError(
                    f"get_quantization()[{side!r}][{name!r}] must be a TensorQuantization, "
                    f"got {type(quant).__name__}"
                )
        result[side] = dict(entries)
    return result
