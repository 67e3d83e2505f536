"""Decode any data-notification carrying OBIS codes: register arrays, interleaved lists, push-object lists.

The item model and walkers this decoder shares with the meter modules live in amshan.items; the names below
are re-exported from here too, as amshan.generic offered them before the split.
"""

from __future__ import annotations

import logging
import struct
from typing import Dict, Optional

from amshan._errors import DecodeError, shown
from amshan.axdr import decode_date_time, read_data
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


def _decode_push_object_list(
    data: bytes, pos: int, count: int, items: list[MeterItem], trace: Optional[Trace]
) -> int:
    """Decode a structure {push-object list, values...} (L+G / Iskra push setups, no scalers sent).

    The first element is the push setup's own object list: one descriptor {class, OBIS, attribute,
    data index} per element of the structure, the first describing that list itself.  Values of attribute 2
    (an object's value) become items; other attributes (the setup's logical name) are logged and skipped.
    """
    start = pos
    descriptors, pos = read_data(data, pos)
    if not isinstance(descriptors, list) or len(descriptors) != count:
        found = len(descriptors) if isinstance(descriptors, list) else 0
        raise DecodeError(f"expected {count} push-object descriptors, found {found}", start)
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
        if descriptor[2] != 2:
            _LOGGER.debug("push object %s attribute %s skipped: %r", descriptor[1].hex(), descriptor[2], raw)
            continue
        item = make_item(descriptor[1], raw, 0, None)
        if item is not None:
            items.append(item)
        if trace is not None:
            trace.append((start, descriptor[1], 0))
    return pos


def _is_push_object_list(data: bytes, pos: int) -> bool:
    """Tell whether the element at pos is an array whose first element is a 4-field descriptor structure."""
    return data[pos : pos + 1] == b"\x01" and data[pos + 2 : pos + 6] == b"\x02\x04\x12\x00"


def decode_message(frame_content: bytes, trace: Optional[Trace] = None) -> DecodedMessage:
    """Decode a data-notification whose body carries OBIS codes: registers, interleaved or a push list.

    Interleaved lists of Kaifa and Kamstrup are refused: their values need the implicit scalers that only
    amshan.kaifa and amshan.kamstrup know, so a list those rejected never comes out here with wrong values.
    """
    header = read_notification_header(frame_content)
    data = frame_content
    items: list[MeterItem] = []
    interleaved = False
    try:
        count, pos = read_container(data, header.body_offset, (0x01, 0x02))
        if count and data[pos] == 0x02 and data[pos + 2 : pos + 4] == b"\x09\x06":
            pos = walk_registers(data, pos, count, items, trace)
        elif count and data[header.body_offset] == 0x02 and _is_push_object_list(data, pos):
            pos = _decode_push_object_list(data, pos, count, items, trace)
        elif data[header.body_offset] == 0x02:
            unlabelled: list[Unlabelled] = []
            pos = walk_interleaved(data, pos, count, items, scalers={}, unlabelled=unlabelled, trace=trace)
            _add_unlabelled(unlabelled, count, items)
            interleaved = True
        else:
            raise DecodeError(f"expected OBIS codes in the body, found {data[pos : pos + 4].hex(' ')}", pos)
    except (IndexError, struct.error):
        raise truncated(data) from None
    check_end(data, pos)
    if not items:
        raise DecodeError("expected OBIS-coded items in the body, found none", header.body_offset)
    manufacturer = manufacturer_of(items)
    if interleaved and manufacturer in _IMPLICIT_SCALER_MANUFACTURERS:
        raise DecodeError(
            f"expected a list without implicit scalers, found a {manufacturer} list, which only "
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
