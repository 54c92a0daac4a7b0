"""Chip and NPU tensor-layout identifiers: the one place for these numbers.

Three numbering schemes meet here (LAYOUTS.md §1, NEF.md §8.1):

* :class:`Chip` is Kneron PLUS's ``kp_model_target_chip_t`` (``ModelTargetChip`` in Python).
* :class:`DataLayout` is the public ``kp_model_tensor_data_layout_t``
  (``ModelTensorDataLayout``).
* Device/setup.bin *format codes* differ per chip; :func:`layout_from_code` and
  :func:`code_from_layout` translate them.

Everything else (NEF reader, layout codecs, wire messages, emulator, ``kp`` API) imports
from here instead of repeating the tables.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = [
    "Chip",
    "DataLayout",
    "PRODUCT_ID_BY_CHIP",
    "CHIP_BY_PRODUCT_ID",
    "layout_from_code",
    "code_from_layout",
    "layout_codes",
    "fixed_dtype",
    "parse_chip",
    "parse_layout",
]


class Chip(enum.IntEnum):
    """``kp_model_target_chip_t``: the normalised NEF target chip."""

    UNKNOWN = 0
    KL520 = 1
    KL720 = 2
    KL530 = 3
    KL730 = 4
    KL630 = 5
    KL540 = 6


class DataLayout(enum.IntEnum):
    """``kp_model_tensor_data_layout_t``. Member names are Kneron's layout names
    with a leading ``L`` where the name starts with a digit (``L4W4C8B``);
    :attr:`layout_name` gives Kneron's spelling (``"4W4C8B"``)."""

    UNKNOWN = 0
    L4W4C8B = 1
    L1W16C8B = 2
    L16W1C8B = 3
    L8W1C16B = 4
    L4W4C8BHL = 5
    L1W16C8BHL = 6
    L16W1C8BHL = 7
    RAW_8B = 8
    RAW_16B = 9
    RAW_FLOAT = 10
    L1W16C8B_CH_COMPACT = 11
    L1W16C8BHL_CH_COMPACT = 12

    @property
    def layout_name(self) -> str:
        """Kneron's name, e.g. ``"4W4C8B"``, ``"RAW_8B"``, ``"UNKNOWN"``."""
        name = self.name
        return name[1:] if name.startswith("L") and name[1].isdigit() else name


# USB product ids (PROTOCOL.md §1.1); the same value is written into every result header.
PRODUCT_ID_BY_CHIP: dict[Chip, int] = {
    Chip.KL520: 0x0100,
    Chip.KL720: 0x0720,
    Chip.KL530: 0x0530,
    Chip.KL630: 0x0630,
    Chip.KL730: 0x0732,
    Chip.KL540: 0x0540,
}
CHIP_BY_PRODUCT_ID: dict[int, Chip] = {pid: chip for chip, pid in PRODUCT_ID_BY_CHIP.items()}
CHIP_BY_PRODUCT_ID[0x0200] = Chip.KL720  # KL720 running legacy KDP firmware
CHIP_BY_PRODUCT_ID[0x0730] = Chip.KL730  # PLUS 2.2.0's KL730 product id

_L = DataLayout
# Per-chip setup.bin / device format code -> layout (NEF.md §8.1, PLUS 3.1.1 numbering).
_CODES: dict[Chip, dict[int, DataLayout]] = {
    Chip.KL520: {16: _L.L4W4C8B, 8: _L.L16W1C8B},
    Chip.KL720: {
        4: _L.L4W4C8B, 0: _L.L1W16C8B, 5: _L.L16W1C8B, 6: _L.L8W1C16B, 2: _L.L1W16C8BHL,
        100: _L.RAW_8B, 101: _L.RAW_16B, 102: _L.RAW_FLOAT,
    },
    Chip.KL630: {
        2: _L.L4W4C8B, 0: _L.L1W16C8B, 4: _L.L16W1C8B, 6: _L.L8W1C16B, 3: _L.L4W4C8BHL,
        1: _L.L1W16C8BHL, 5: _L.L16W1C8BHL, 100: _L.RAW_8B, 101: _L.RAW_16B, 102: _L.RAW_FLOAT,
    },
    Chip.KL730: {
        2: _L.L4W4C8B, 8: _L.L1W16C8B, 4: _L.L16W1C8B, 6: _L.L8W1C16B, 3: _L.L4W4C8BHL,
        9: _L.L1W16C8BHL, 5: _L.L16W1C8BHL, 100: _L.RAW_8B, 101: _L.RAW_16B, 102: _L.RAW_FLOAT,
        0: _L.L1W16C8B_CH_COMPACT, 1: _L.L1W16C8BHL_CH_COMPACT,
    },
}
_CODES[Chip.KL530] = _CODES[Chip.KL630]
_LAYOUT_TO_CODE: dict[Chip, dict[DataLayout, int]] = {
    chip: {layout: code for code, layout in table.items()} for chip, table in _CODES.items()
}

_INT16_LAYOUTS = frozenset({
    _L.L8W1C16B, _L.L4W4C8BHL, _L.L1W16C8BHL, _L.L16W1C8BHL, _L.RAW_16B,
    _L.L1W16C8BHL_CH_COMPACT,
})


def layout_from_code(chip: Chip | int, code: int) -> DataLayout:
    """Translate a chip's setup.bin/device format code; unknown codes give ``UNKNOWN``."""
    return _CODES.get(Chip(chip), {}).get(int(code), DataLayout.UNKNOWN)


def code_from_layout(chip: Chip | int, layout: DataLayout | int | str) -> int:
    """The chip's format code for ``layout``; ``ValueError`` if the chip has none."""
    chip = Chip(chip)
    layout = parse_layout(layout)
    try:
        return _LAYOUT_TO_CODE[chip][layout]
    except KeyError:
        known = sorted(l.layout_name for l in _LAYOUT_TO_CODE.get(chip, {}))
        raise ValueError(
            f"layout {layout.layout_name} has no format code on {chip.name}; "
            f"expected one of {known}"
        ) from None


def layout_codes(chip: Chip | int) -> dict[int, DataLayout]:
    """A copy of the chip's code -> layout table."""
    return dict(_CODES.get(Chip(chip), {}))


def fixed_dtype(layout: DataLayout | int | str) -> np.dtype | None:
    """The fixed-point element type Kneron uses for ``layout`` (int8 or int16);
    ``None`` for RAW_FLOAT and UNKNOWN (LAYOUTS.md §1 notes)."""
    layout = parse_layout(layout)
    if layout in (DataLayout.RAW_FLOAT, DataLayout.UNKNOWN):
        return None
    return np.dtype(np.int16) if layout in _INT16_LAYOUTS else np.dtype(np.int8)


def parse_chip(chip: Chip | int | str) -> Chip:
    """Accept ``Chip``, its value, or a name such as ``"KL520"``/``"kl720"``."""
    if isinstance(chip, Chip):
        return chip
    if isinstance(chip, str):
        try:
            return Chip[chip.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown chip {chip!r}; expected one of {[c.name for c in Chip if c]}"
            ) from None
    try:
        return Chip(int(chip))
    except ValueError:
        raise ValueError(f"unknown chip number {chip!r}; expected 0..6") from None


def parse_layout(layout: DataLayout | int | str) -> DataLayout:
    """Accept ``DataLayout``, its value, or Kneron's name (``"16W1C8B"``,
    ``"KP_MODEL_TENSOR_DATA_LAYOUT_16W1C8B"``, ``"L16W1C8B"``)."""
    if isinstance(layout, DataLayout):
        return layout
    if isinstance(layout, str):
        key = layout.strip().upper().removeprefix("KP_MODEL_TENSOR_DATA_LAYOUT_")
        for member in DataLayout:
            if key in (member.name, member.layout_name):
                return member
        raise ValueError(
            f"unknown data layout {layout!r}; expected one of "
            f"{[m.layout_name for m in DataLayout]}"
        )
    try:
        return DataLayout(int(layout))
    except ValueError:
        raise ValueError(f"unknown data layout number {layout!r}; expected 0..12") from None
