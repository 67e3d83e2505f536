"""Decode any data-notification carrying OBIS codes: register arrays, interleaved lists, push-object lists.

The item model and walkers this decoder shares with the meter modules live in amshan.items; the names below
are re-exported from here too, as amshan.generic offered them before the split.
"""

from __future__ import annotations

import logging
import struct
from typing import Dict, Optional

from amshan._errors import DecodeError, shown
from amshan.axdr import AxdrValue, decode_date_time, read_data
from amshan.cosem import UNIT_SYMBOLS
from amshan.dlms import read_notification_header
from amshan.items import (
    CLOCK_CODE,
    LIST_VERSION_CODE,
    DecodedMessage,
    ItemValue,
    MeterItem,
    Trace,
    Unlabelled,
    check_end,
    field_of,
    item_value,
    make_item,
    manufacturer_of,
    message_to_dict,
    octet_text,
    read_container,
    read_value,
    truncated,
    walk_interleaved,
    walk_registers,
)
from amshan.obis_map import (
    NEK_HAN_FIELD_METER_DATETIME,
    NEK_HAN_FIELD_METER_ID,
    NEK_HAN_FIELD_OBIS_LIST_VER_ID,
    name_obis_map,
    obis_to_str,
)

__all__ = [
    "CLOCK_CODE",
    "LIST_VERSION_CODE",
    "NAME",
    "PUSH_SETUP_SCALERS",
    "DecodedMessage",
    "ItemValue",
    "MeterItem",
    "Trace",
    "Unlabelled",
    "check_end",
    "decode_frame_content",
    "decode_message",
    "field_of",
    "item_value",
    "make_item",
    "manufacturer_of",
    "message_to_dict",
    "octet_text",
    "read_container",
    "read_value",
    "truncated",
    "walk_interleaved",
    "walk_registers",
]

_LOGGER = logging.getLogger(__name__)

NAME = "Generic"
"""The name AutoDecoder reports for this decoder."""

# Makers whose interleaved lists carry no scaler-units: their own modules hold the scalers.
_IMPLICIT_SCALER_MANUFACTURERS = ("Kaifa", "Kamstrup")
_LIST_VERSION = obis_to_str(LIST_VERSION_CODE)
_CLOCK = obis_to_str(CLOCK_CODE)
_METER_ID = name_obis_map[NEK_HAN_FIELD_METER_ID][0]


def _is_text(raw: bytes) -> bool:
    """Tell whether an octet-string holds printable ASCII text."""
    return octet_text(raw) != raw.hex()


_PUSH_CURRENT_VOLTAGE = ((31, 51, 71), (32, 52, 72))
PUSH_SETUP_SCALERS: dict[bytes, dict[bytes, int]] = {
    bytes((0, setup, 25, 9, 0, 255)): {
        **{bytes((c, 7, 0)): -2 for c in _PUSH_CURRENT_VOLTAGE[0]},  # currents in 0.01 A
        **{bytes((c, 7, 0)): volts for c in _PUSH_CURRENT_VOLTAGE[1]},
        bytes((13, 7, 0)): -3,  # power factor in 0.001
    }
    for setup, volts in ((8, 0), (6, -1))
}
"""Scalers of the Swiss push setups, which send registers without their scaler-units, by the push setup's
logical name and value groups C.D.E: 0-8:25.9.0 (L+G E450/E570) sends whole volts, 0-6:25.9.0 (Iskra AM550,
L+G E360) 0.1 V; both send currents in 0.01 A and the power factor in 0.001; power and energy are x1."""


def _decode_push_object_list(
    data: bytes, pos: int, count: int, items: list[MeterItem], trace: Optional[Trace]
) -> int:
    """Decode a structure {push-object list, values...} (L+G / Iskra push setups, no scalers sent).

    The first element is the push setup's own object list: one descriptor {class, OBIS, attribute,
    data index} per element of the structure, the first describing that list itself.  Values of attribute 2
    (an object's value) become items, scaled by the register's scaler-unit when the setup pushes it too
    (attribute 3), else as PUSH_SETUP_SCALERS gives for the setup; other attributes (the setup's logical
    name) are logged and skipped.
    """
    start = pos
    descriptors, pos = read_data(data, pos)
    if not isinstance(descriptors, list) or len(descriptors) != count:
        found = len(descriptors) if isinstance(descriptors, list) else 0
        raise DecodeError(f"expected {count} push-object descriptors, found {found}", start)
    setup = descriptors[0][1] if isinstance(descriptors[0], list) and len(descriptors[0]) == 4 else None
    scalers = PUSH_SETUP_SCALERS.get(setup, {}) if isinstance(setup, bytes) else {}
    values: list[tuple[bytes, object, AxdrValue, int]] = []  # (code, attribute, raw value, offset)
    for descriptor in descriptors[1:]:
        if not (
            isinstance(descriptor, list)
            and len(descriptor) == 4
            and isinstance(descriptor[1], bytes)
            and len(descriptor[1]) == 6
        ):
            raise DecodeError(f"expected a push-object descriptor, found {shown(descriptor)}", start)
        start = pos
        raw, pos = read_data(data, pos)
        values.append((descriptor[1], descriptor[2], raw, start))
    scaler_units: dict[bytes, tuple[int, str | None]] = {}  # a register's scaler-unit, when pushed too
    for code, attribute, raw, _ in values:
        if attribute == 3 and isinstance(raw, list) and len(raw) == 2:
            scaler, unit = raw
            if type(scaler) is int and type(unit) is int and -128 <= scaler <= 127:  # an A-XDR integer
                scaler_units[code] = (scaler, UNIT_SYMBOLS.get(unit))
    for code, attribute, raw, start in values:
        if attribute != 2:
            _LOGGER.debug("push object %s attribute %s not an item: %r", code.hex(), attribute, raw)
            continue
        scaler, unit = scaler_units.get(code, (scalers.get(code[2:5], 0) if code[0] == 1 else 0, None))
        item = make_item(code, raw, scaler, unit, sent=code in scaler_units)
        if item is not None:
            items.append(item)
        if trace is not None:
            trace.append((start, code, scaler))
    return pos


def _is_push_object_list(data: bytes, pos: int) -> bool:
    """Tell whether the element at pos is an array whose first element is a 4-field descriptor structure."""
    return data[pos : pos + 1] == b"\x01" and data[pos + 2 : pos + 6] == b"\x02\x04\x12\x00"


def decode_message(frame_content: bytes, trace: Optional[Trace] = None) -> DecodedMessage:
    """Decode a data-notification whose body carries OBIS codes: registers, interleaved or a push list.

    Interleaved lists of Kaifa and Kamstrup sending a number without a scaler-unit are refused: their values
    need the implicit scalers that only amshan.kaifa and amshan.kamstrup know, so a list those rejected never
    comes out here with wrong values.  A Kaifa list whose numbers all carry scaler-units (the Austrian IDIS
    lists, flattened or nested) is decoded here.
    """
    header = read_notification_header(frame_content)
    data = frame_content
    items: list[MeterItem] = []
    unscaled: list[bytes] = []  # codes of numbers an interleaved list sent without a scaler-unit
    try:
        count, pos = read_container(data, header.body_offset, (0x01, 0x02))
        if count and data[pos] == 0x02 and data[pos + 2 : pos + 4] == b"\x09\x06":
            pos = walk_registers(data, pos, count, items, trace)
        elif count and data[header.body_offset] == 0x02 and _is_push_object_list(data, pos):
            pos = _decode_push_object_list(data, pos, count, items, trace)
        elif data[header.body_offset] == 0x02:
            unlabelled: list[Unlabelled] = []
            pos = walk_interleaved(
                data, pos, count, items, scalers={}, unlabelled=unlabelled, trace=trace, unscaled=unscaled
            )
            _add_unlabelled(unlabelled, count, items)
        else:
            raise DecodeError(f"expected OBIS codes in the body, found {data[pos : pos + 4].hex(' ')}", pos)
    except (IndexError, struct.error):
        raise truncated(data) from None
    check_end(data, pos)
    if not items:
        raise DecodeError("expected OBIS-coded items in the body, found none", header.body_offset)
    manufacturer = manufacturer_of(items)
    if unscaled and manufacturer in _IMPLICIT_SCALER_MANUFACTURERS:
        raise DecodeError(
            f"expected a list without implicit scalers, found a {manufacturer} list sending "
            f"{obis_to_str(unscaled[0])} without a scaler-unit, which only "
            f"amshan.{manufacturer.lower()} scales",
            header.body_offset,
        )
    return DecodedMessage(manufacturer, header.date_time, items)


def _add_unlabelled(unlabelled: list[Unlabelled], count: int, items: list[MeterItem]) -> None:
    """Give values sent without an OBIS code their documented meaning where there is one, else log them.

    A leading visible-string is the list version (Kamstrup style), a leading date-time the clock, and a
    trailing text octet-string the meter number (Netz NOE / Sagemcom lists) when no meter id was sent.
    """
    has_meter_id = any(item.name == NEK_HAN_FIELD_METER_ID for item in items)
    for index, raw, _ in unlabelled:
        if index == 0 and isinstance(raw, str):  # a leading visible-string is the list version id
            items.insert(0, MeterItem(_LIST_VERSION, NEK_HAN_FIELD_OBIS_LIST_VER_ID, raw, None))
        elif index <= 1 and isinstance(raw, bytes) and len(raw) == 12:  # a leading date-time is the clock
            moment = decode_date_time(raw, 0)
            if moment is not None:
                items.insert(0, MeterItem(_CLOCK, NEK_HAN_FIELD_METER_DATETIME, moment, None))
        elif index == count - 1 and isinstance(raw, bytes) and not has_meter_id and _is_text(raw):
            items.append(MeterItem(_METER_ID, NEK_HAN_FIELD_METER_ID, octet_text(raw), None))
        else:
            _LOGGER.debug("value without OBIS code at element %d ignored: %r", index, raw)


def decode_frame_content(frame_content: bytes) -> Dict[str, ItemValue]:
    """Decode the information field of any OBIS-coded data-notification into the dictionary."""
    return message_to_dict(decode_message(frame_content))
