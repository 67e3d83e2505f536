"""Decode Iskraemeco positional lists: structures of values without OBIS codes (Slovenian and Croatian DSOs).

Each DSO configures its own list; a list is known by the A-XDR types of its elements, which differ between
every layout below.  What each position holds follows amsreader-firmware's analysis of these captures (its
IEC6205675 Iskra cases), not an Iskraemeco document; a list of any other shape is refused.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from amshan.items import (
    DecodedMessage,
    ItemValue,
    Position,
    Trace,
    decode_positional,
    message_to_dict,
    positional_layouts,
)

NAME = "Iskraemeco"
"""The manufacturer name this decoder reports (meter_manufacturer, AutoDecoder.previous_success_decoder)."""

_TEXT, _U8, _U16, _U32, _ENUM, _ARRAY, _BOOL = 0x09, 0x11, 0x12, 0x06, 0x16, 0x01, 0x03
_SCALERS = {"32.7.0": -1, "52.7.0": -1, "72.7.0": -1, "31.7.0": -2, "51.7.0": -2, "71.7.0": -2, "13.7.0": -3}

# Each element: (OBIS code, or None for a value whose meaning is unknown; A-XDR tag).  "C.D.E" codes are the
# registers 1-0:C.D.E; voltages are sent in 0.1 V, currents in 0.01 A, power factor in 0.001, power in W and
# energy in Wh.
_LDN, _ID_2, _ID_3, _METER = "0.0.42.0.0.255", "0.0.96.1.2.255", "0.0.96.1.3.255", "0.0.96.1.0.255"
_POWER = (("1.7.0", _U32), ("2.7.0", _U32), ("3.7.0", _U32), ("4.7.0", _U32))
_VOLTAGES = (("32.7.0", _U16), ("52.7.0", _U16), ("72.7.0", _U16))
_CURRENTS = (("31.7.0", _U16), ("51.7.0", _U16), ("71.7.0", _U16))
_PHASE_POWER = tuple((f"{c}.7.0", _U32) for c in (21, 41, 61, 22, 42, 62))
_TARIFFS = tuple((f"{c}.8.{e}", _U32) for c in (1, 2) for e in (0, 1, 2))
_LAYOUTS: tuple[tuple[tuple[Optional[str], int], ...], ...] = (
    # Elektro Ljubljana 5 s, three-phase (18 elements)
    ((_LDN, _TEXT), (_ID_3, _TEXT), *_POWER, *_VOLTAGES, *_CURRENTS, *_PHASE_POWER),
    # Elektro Celje instantaneous list (12 elements)
    ((_LDN, _TEXT), (_ID_2, _TEXT), *_VOLTAGES, *_CURRENTS, *_POWER),
    # Elektro Ljubljana 15 min energy list (12 elements): disconnect control state and tariff are skipped
    (
        (_LDN, _TEXT),
        (_ID_3, _TEXT),
        (None, _ENUM),
        (None, _TEXT),
        *_TARIFFS,
        ("3.8.0", _U32),
        ("4.8.0", _U32),
    ),
    # Elektro Ljubljana single-phase (10 elements)
    ((_LDN, _TEXT), (_ID_2, _TEXT), *_POWER, _VOLTAGES[0], _CURRENTS[0], ("21.7.0", _U32), ("22.7.0", _U32)),
    # Elektro Ljubljana tariff registers (10 elements)
    ((_LDN, _TEXT), (_ID_3, _TEXT), *((f"{c}.8.{e}", _U32) for c in (1, 2, 3, 4) for e in (1, 2))),
    # Elektro Ljubljana single-phase 5 s (9 elements)
    ((_LDN, _TEXT), (_ID_2, _TEXT), *_POWER, _VOLTAGES[0], ("2.8.1", _U32), ("2.8.2", _U32)),
    # Elektro Ljubljana 1 s (9 elements)
    ((_LDN, _TEXT), ("1.7.0", _U32), ("2.7.0", _U32), *_TARIFFS),
    # Elektro Ljubljana energy totals (4 elements)
    ((_METER, _TEXT), (None, _U8), ("1.8.0", _U32), ("2.8.0", _U32)),
    # HEP (Croatia) IE.5 (33 elements): meter number, time and date, then registers
    (
        (_METER, _TEXT),
        (None, _TEXT),
        (None, _TEXT),
        *_TARIFFS,
        *((f"{c}.8.0", _U32) for c in (5, 6, 7, 8)),
        ("1.7.0", _U32),
        ("2.7.0", _U32),
        ("13.7.0", _U16),
        *_PHASE_POWER,
        *_VOLTAGES,
        *_CURRENTS,
        (None, _U32),
        (None, _ARRAY),
        (None, _ARRAY),
        (None, _ARRAY),
        (None, _BOOL),
    ),
)


LAYOUTS: Dict[bytes, Tuple[Position, ...]] = positional_layouts(_LAYOUTS, _SCALERS)
"""Each known list by its elements' A-XDR tags: (raw OBIS code, scaler) per position, None if skipped."""


def decode_message(frame_content: bytes, trace: Optional[Trace] = None) -> DecodedMessage:
    """Decode an Iskraemeco positional list (its layout known by its elements' types) into items."""
    return decode_positional(frame_content, trace, LAYOUTS, NAME)


def decode_frame_content(frame_content: bytes) -> Dict[str, ItemValue]:
    """Decode the information field (LLC header optional) of an Iskraemeco frame into the dictionary."""
    return message_to_dict(decode_message(frame_content))
