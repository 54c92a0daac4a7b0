"""Tolerances: user values (global or per output) and the defaults, float and quantisation-aware.

Every tolerance accepts a number (for all outputs) or a mapping from output
name to number, where the key ``""`` is the default for outputs not listed (as
Polygraphy's ``--atol 1e-5 out0:1e-4``).

Defaults (see ``docs/compare.md``, "Default tolerances"):

* float against float: ``atol = rtol = 1e-5`` (Polygraphy's defaults);
* when either session quantises an output (``get_quantization()``), its default
  ``atol`` is ``1e-5 + k * (sum of the output's steps on the quantised sides)``
  plus, per feed, the measured effect of the quantised side's input rounding
  (see ``core.py``); ``k`` is :data:`DEFAULT_QUANT_STEPS` = 2 LSB and ``rtol``
  stays 1e-5.

Why 2 LSB: rounding the output to the fixed-point grid costs at most 0.5 LSB;
the rest covers re-quantisation of intermediate tensors and the rounding-mode
differences between toolchains (half-to-even against half-away-from-zero), which
move an output by about one LSB in a shallow network. The input's own rounding
is measured instead of guessed, because its effect on an output is the model's
gain, which no constant captures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "DEFAULT_QUANT_STEPS",
    "ToleranceValue",
    "Tolerances",
    "OutputTolerance",
    "parse_tolerance_args",
]

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
#: Default tolerance of a quantised output, in LSBs (steps) of that output.
DEFAULT_QUANT_STEPS = 2.0

ToleranceValue = float | Mapping[str, float] | None

# name -> (lowest allowed, highest allowed)
_BOUNDS: dict[str, tuple[float, float]] = {
    "atol": (0.0, math.inf),
    "rtol": (0.0, math.inf),
    "min_cosine": (-1.0, 1.0),
    "min_snr_db": (-math.inf, math.inf),
    "min_top1": (0.0, 1.0),
}


def _check_number(field: str, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{field}{where} must be a number, got {value!r}")
    number = float(value)
    low, high = _BOUNDS[field]
    if math.isnan(number) or not low <= number <= high:
        raise ValueError(f"{field}{where} must be in [{low}, {high}], got {value!r}")
    return number


@dataclass(frozen=True)
class Tolerances:
    """User tolerances; ``None`` means "use the default" (none for the ``min_*`` checks)."""

    atol: ToleranceValue = None
    rtol: ToleranceValue = None
    min_cosine: ToleranceValue = None
    min_snr_db: ToleranceValue = None
    min_top1: ToleranceValue = None

    def validate(self, output_names: Iterable[str]) -> None:
        """Check types and ranges, and that per-output keys name real outputs (typos are errors)."""
        names = set(output_names)
        for field in _BOUNDS:
            value = getattr(self, field)
            if value is None:
                continue
            if isinstance(value, Mapping):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise TypeError(f"{field} keys must be output names (str), got {key!r}")
                    if key and key not in names:
                        raise ValueError(
                            f"{field} names output {key!r}, which is not compared; outputs: {sorted(names)}"
                        )
                    _check_number(field, f"[{key!r}]", item)
            else:
                _check_number(field, "", value)

    def get(self, field: str, output: str) -> float | None:
        """The user's value of ``field`` for ``output`` (``None`` when not given)."""
        value = getattr(self, field)
        if isinstance(value, Mapping):
            value = value.get(output, value.get(""))
        return None if value is None else float(value)


@dataclass
class OutputTolerance:
    """The tolerance applied to one output.

    ``atol`` is the base absolute tolerance (a float, or an array broadcastable to
    the output for per-channel quantisation); with ``source == "quantization"``
    and a measured input effect, each feed's tolerance is ``atol`` plus that
    feed's effect. ``step`` is the sum of the output's quantisation steps on the
    quantised sides (``None`` when float).
    """

    atol: float | np.ndarray
    rtol: float
    min_cosine: float | None = None
    min_snr_db: float | None = None
    min_top1: float | None = None
    source: str = "default"
    step: float | np.ndarray | None = None
    quant_steps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "atol": _plain(self.atol),
            "rtol": self.rtol,
            "min_cosine": self.min_cosine,
            "min_snr_db": self.min_snr_db,
            "min_top1": self.min_top1,
            "source": self.source,
            "step": _plain(self.step),
            "quant_steps": self.quant_steps,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputTolerance:
        return cls(
            atol=_unplain(data["atol"]),
            rtol=float(data["rtol"]),
            min_cosine=data.get("min_cosine"),
            min_snr_db=data.get("min_snr_db"),
            min_top1=data.get("min_top1"),
            source=data.get("source", "default"),
            step=_unplain(data.get("step")),
            quant_steps=data.get("quant_steps"),
        )


def _plain(value: float | np.ndarray | None) -> Any:
    if isinstance(value, np.ndarray):
        return value.ravel().tolist()
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, list):
        return np.asarray(value, dtype=np.float64)
    return value


def parse_tolerance_args(values: Sequence[str] | None, field: str = "atol") -> ToleranceValue:
    """Parse CLI values ``["1e-5", "out0:1e-4"]`` into a float or a per-output dict.

    A bare number is the default for every output; ``NAME:NUMBER`` sets one output
    (the last ``:`` splits, so names may contain colons). ``inf`` is accepted.
    """
    if not values:
        return None
    result: dict[str, float] = {}
    for text in values:
        name, sep, number = text.rpartition(":")
        if not sep:
            name, number = "", text
        try:
            parsed = float(number)
        except ValueError:
            raise ValueError(f"--{field.replace('_', '-')}: expected NUMBER or OUTPUT:NUMBER, got {text!r}") from None
        if name in result:
            label = f"output {name!r}" if name else "the default"
            raise ValueError(f"--{field.replace('_', '-')}: {label} given twice")
        result[name] = _check_number(field, f" for {name!r}" if name else "", parsed)
    if list(result) == [""]:
        return result[""]
    return result
