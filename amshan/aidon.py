"""Decode Aidon data-notifications: an array of {OBIS code, value[, scaler-unit]} structures."""

from __future__ import annotations

import struct
from typing import Dict, Optional

from amshan._errors import DecodeError, shown
from amshan.dlms import read_notification_header
from amshan.items import (
    DecodedMessage,
    ItemValue,
    MeterItem,
    Trace,
    check_end,
    manufacturer_of,
    message_to_dict,
    read_container,
    truncated,
    walk_registers,
)
from amshan.obis_map import NEK_HAN_FIELD_OBIS_LIST_VER_ID

NAME = "Aidon"
"""The manufacturer name this decoder reports (meter_manufacturer, AutoDecoder.previous_success_decoder)."""


def decode_message(frame_content: bytes, trace: Optional[Trace] = None) -> DecodedMessage:
    """Decode an Aidon list (Norwegian lists 1-3 with list id AIDON_..., or the Swedish list without one)."""
    header = read_notification_header(frame_content)
    items: list[MeterItem] = []
    try:
        count, pos = read_container(frame_content, header.body_offset, (0x01,))
        pos = walk_registers(frame_content, pos, count, items, trace, strict=True)
    except (IndexError, struct.error):
        raise truncated(frame_content) from None
    check_end(frame_content, pos)
    if not count:
        raise DecodeError("expected at least one item in the Aidon list, found none", header.body_offset)
    first = items[0] if items else None
    if (
        first is not None
        and first.name == NEK_HAN_FIELD_OBIS_LIST_VER_ID
        and not str(first.value).startswith("AIDON")
    ):
        raise DecodeError(
            f"expected an Aidon list id AIDON_..., found {shown(first.value)}", header.body_offset
        )
    other = manufacturer_of(items)
    if other not in (None, NAME):
        raise DecodeError(f"expected an Aidon list, found one naming {other}", header.body_offset)
    return DecodedMessage(NAME, header.date_time, items)


def decode_frame_content(frame_content: bytes) -> Dict[str, ItemValue]:
    """Decode the information field (LLC header optional) of an Aidon frame into the dictionary."""
    return message_to_dict(decode_message(frame_content))
