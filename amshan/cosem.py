"""COSEM vocabulary kept under the old module name: data-type tags, physical units and scalers."""

from __future__ import annotations

from enum import IntEnum

from amshan.axdr import CosemDate, CosemDateTime, CosemTime, DataType

__all__ = [
    "UNIT_SYMBOLS",
    "CommonDataTypes",
    "CosemDate",
    "CosemDateTime",
    "CosemTime",
    "PhysicalUnits",
    "apply_scaler",
    "unit_symbol",
]

CommonDataTypes = DataType
"""The tag byte of each COSEM common data type (the old name of `amshan.axdr.DataType`)."""


class PhysicalUnits(IntEnum):
    """COSEM physical units (Blue Book table 4) that HAN lists use."""

    s = 7
    W = 27
    VA = 28
    var = 29
    Wh = 30
    VAh = 31
    varh = 32
    A = 33
    V = 35
    Hz = 44
    count = 255


UNIT_SYMBOLS: dict[int, str] = {
    1: "a",
    2: "mo",
    3: "wk",
    4: "d",
    5: "h",
    6: "min",
    7: "s",
    8: "°",
    9: "°C",
    11: "m",
    12: "m/s",
    13: "m3",
    14: "m3",
    15: "m3/h",
    19: "l",
    20: "kg",
    23: "Pa",
    24: "bar",
    25: "J",
    27: "W",
    28: "VA",
    29: "var",
    30: "Wh",
    31: "VAh",
    32: "varh",
    33: "A",
    34: "C",
    35: "V",
    44: "Hz",
    52: "K",
    56: "%",
    57: "Ah",
}
"""Symbol of each unit code; codes absent here (255 count/unitless, reserved) have no symbol."""


def unit_symbol(code: int) -> str | None:
    """Return the symbol of a COSEM unit code, or None for unitless/unknown codes."""
    return UNIT_SYMBOLS.get(code)


_DIVISORS: tuple[int, ...] = tuple(10**n for n in range(129))


def apply_scaler(value: int | float, scaler: int) -> int | float:
    """Scale value by 10**scaler: integers stay int for scaler >= 0, else a float by exact division."""
    if scaler == 0:
        return value
    if scaler > 0:
        return value * _DIVISORS[scaler]
    return value / _DIVISORS[-scaler]
