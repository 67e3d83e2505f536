"""Decode Kaifa data-notifications: positional lists without OBIS codes (NO) or OBIS/value pairs (SE)."""

from __future__ import annotations

import struct
from typing import Dict, Optional

from amshan import obis_map as om
from amshan._errors import DecodeError, shown
from amshan.dlms import read_notification_header
from amshan.items import (
    DecodedMessage,
    ItemValue,
    MeterItem,
    Trace,
    Unlabelled,
    check_end,
    field_of,
    make_item,
    message_to_dict,
    read_container,
    read_value,
    truncated,
    walk_interleaved,
)

NAME = "Kaifa"
"""The manufacturer name this decoder reports (meter_manufacturer, AutoDecoder.previous_success_decoder)."""

SCALERS: dict[bytes, int] = {
    **{bytes((c, 7, 0)): -3 for c in (31, 51, 71)},  # currents in mA
    **{bytes((c, 7, 0)): -1 for c in (32, 52, 72)},  # voltages in 0.1 V
}
"""Kaifa's documented scalers by value groups C.D.E (no scaler-unit is sent); power x1 W, energy x1 Wh."""

_TEXT_FIELDS = frozenset(
    (om.NEK_HAN_FIELD_OBIS_LIST_VER_ID, om.NEK_HAN_FIELD_METER_ID, om.NEK_HAN_FIELD_METER_TYPE)
)


_NUMBER, _TEXT, _CLOCK = "a number", "a string", "a 12-byte date-time"


def _layout(*names: str) -> tuple[tuple[bytes, int, str], ...]:
    """Build a positional layout: (documented OBIS code, implicit scaler, kind of value) per position."""
    layout = []
    for name in names:
        code = om.obis_from_str(om.name_obis_map[name][0])
        kind = _TEXT if name in _TEXT_FIELDS else _NUMBER
        if name == om.NEK_HAN_FIELD_METER_DATETIME:
            kind = _CLOCK
        layout.append((code, SCALERS.get(code[2:5], 0), kind))
    return tuple(layout)


_LIST_2_1P = (
    om.NEK_HAN_FIELD_OBIS_LIST_VER_ID,
    om.NEK_HAN_FIELD_METER_ID,
    om.NEK_HAN_FIELD_METER_TYPE,
    om.NEK_HAN_FIELD_ACTIVE_POWER_IMPORT,
    om.NEK_HAN_FIELD_ACTIVE_POWER_EXPORT,
    om.NEK_HAN_FIELD_REACTIVE_POWER_IMPORT,
    om.NEK_HAN_FIELD_REACTIVE_POWER_EXPORT,
    om.NEK_HAN_FIELD_CURRENT_L1,
    om.NEK_HAN_FIELD_VOLTAGE_L1,
)
_LIST_2_3P = (
    *_LIST_2_1P[:8],
    om.NEK_HAN_FIELD_CURRENT_L2,
    om.NEK_HAN_FIELD_CURRENT_L3,
    om.NEK_HAN_FIELD_VOLTAGE_L1,
    om.NEK_HAN_FIELD_VOLTAGE_L2,
    om.NEK_HAN_FIELD_VOLTAGE_L3,
)
_LIST_3_EXTRA = (
    om.NEK_HAN_FIELD_METER_DATETIME,
    om.NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_HOUR,
    om.NEK_HAN_FIELD_ACTIVE_POWER_EXPORT_HOUR,
    om.NEK_HAN_FIELD_REACTIVE_POWER_IMPORT_HOUR,
    om.NEK_HAN_FIELD_REACTIVE_POWER_EXPORT_HOUR,
)

LAYOUTS: dict[int, tuple[tuple[bytes, int, str], ...]] = {
    1: _layout(om.NEK_HAN_FIELD_ACTIVE_POWER_IMPORT),
    9: _layout(*_LIST_2_1P),
    13: _layout(*_LIST_2_3P),
    14: _layout(*_LIST_2_1P, *_LIST_3_EXTRA),
    18: _layout(*_LIST_2_3P, *_LIST_3_EXTRA),
}
"""Kaifa's positional lists by item count (KFM_001): list 1, list 2 1P/3P, list 3 1P/3P."""


def _walk_positional(
    data: bytes, pos: int, count: int, items: list[MeterItem], trace: Optional[Trace]
) -> int:
    """Walk a positional list, checking each position holds text or a number as documented."""
    layout = LAYOUTS.get(count)
    if layout is None:
        raise DecodeError(f"expected a Kaifa list of 1, 9, 13, 14 or 18 items, found {count}", pos)
    for index, (code, scaler, kind) in enumerate(layout):
        start = pos
        raw, pos = read_value(data, pos)
        if not (
            (isinstance(raw, int) and not isinstance(raw, bool))
            if kind is _NUMBER
            else isinstance(raw, (bytes, str))
            if kind is _TEXT
            else isinstance(raw, bytes) and len(raw) == 12
        ):
            raise DecodeError(
                f"expected {kind} at Kaifa list position {index} ({field_of(code).name}), found {shown(raw)}",
                start,
            )
        item = make_item(code, raw, scaler, None)
        if item is not None:
            items.append(item)
        if trace is not None:
            trace.append((start, code, scaler))
    return pos


def decode_message(frame_content: bytes, trace: Optional[Trace] = None) -> DecodedMessage:
    """Decode a Kaifa list: positional KFM_001 lists 1-3, or the Swedish list of OBIS code/value pairs."""
    header = read_notification_header(frame_content)
    data = frame_content
    items: list[MeterItem] = []
    try:
        count, pos = read_container(data, header.body_offset, (0x02,))
        if data[pos : pos + 2] == b"\x09\x06":
            unlabelled: list[Unlabelled] = []
            pos = walk_interleaved(
                data, pos, count, items, scalers=SCALERS, unlabelled=unlabelled, trace=trace, strict=True
            )
            if unlabelled:
                index, raw, offset = unlabelled[0]
                raise DecodeError(
                    f"expected an OBIS code before each value, found {shown(raw)} (element {index})", offset
                )
        else:
            pos = _walk_positional(data, pos, count, items, trace)
    except (IndexError, struct.error):
        raise truncated(data) from None
    check_end(data, pos)
    first = items[0] if items else None
    if first is not None and first.name == om.NEK_HAN_FIELD_OBIS_LIST_VER_ID:
        if not str(first.value).startswith("KFM"):
            raise DecodeError(
                f"expected a Kaifa list id KFM_..., found {shown(first.value)}", header.body_offset
            )
    elif count != 1:
        raise DecodeError("expected the Kaifa list id KFM_... first, found none", header.body_offset)
    return DecodedMessage(NAME, header.date_time, items)


def decode_frame_content(frame_content: bytes) -> Dict[str, ItemValue]:
    """Decode the information field (LLC header optional) of a Kaifa frame into the dictionary."""
    return message_to_dict(decode_message(frame_content))
