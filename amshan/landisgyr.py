"""Decode Landis+Gyr positional lists: the Austrian E450/E360 structure of values without OBIS codes.

Netz Burgenland's meters push 14 values (han-spec 10): voltages L1-L3 in whole volts, currents L1-L3 in
0.01 A, active power import and export in W, the active energy registers in Wh, three values of unknown
meaning (skipped) and the meter number; an 11-value form leaves out the three unknown values.  The scalers
are amsreader-firmware's (its LNG2 decoder); the push lists of Swiss L+G meters carry OBIS codes and are
read by amshan.generic.
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

NAME = "Landis+Gyr"
"""The manufacturer name this decoder reports (meter_manufacturer, AutoDecoder.previous_success_decoder)."""

_TEXT, _U16, _U32 = 0x09, 0x12, 0x06
_READINGS = (
    *((f"{c}.7.0", _U16) for c in (32, 52, 72, 31, 51, 71)),
    *((f"{c}.{d}.0", _U32) for d in (7, 8) for c in (1, 2)),
)
_METER_ID = ("0.0.96.1.0.255", _TEXT)
LAYOUTS: Dict[bytes, Tuple[Position, ...]] = positional_layouts(
    ((*_READINGS, *((None, _U16) for _ in range(3)), _METER_ID), (*_READINGS, _METER_ID)),
    {f"{c}.7.0": -2 for c in (31, 51, 71)},
)
"""Each known list by its elements' A-XDR tags: (raw OBIS code, scaler) per position, None if skipped."""


def decode_message(frame_content: bytes, trace: Optional[Trace] = None) -> DecodedMessage:
    """Decode a Landis+Gyr positional list (its layout known by its elements' types) into items."""
    return decode_positional(frame_content, trace, LAYOUTS, NAME)


def decode_frame_content(frame_content: bytes) -> Dict[str, ItemValue]:
    """Decode the information field (LLC header optional) of a Landis+Gyr frame into the dictionary."""
    return message_to_dict(decode_message(frame_content))
