"""Decode Kamstrup data-notifications: a list id, then OBIS code and value interleaved (null-padded)."""

from __future__ import annotations

import struct
from typing import Dict, Optional

from amshan._errors import DecodeError, shown
from amshan.dlms import read_notification_header
from amshan.items import (
    LIST_VERSION_CODE,
    DecodedMessage,
    ItemValue,
    MeterItem,
    Trace,
    Unlabelled,
    check_end,
    message_to_dict,
    read_container,
    truncated,
    walk_interleaved,
)
from amshan.obis_map import NEK_HAN_FIELD_METER_TYPE, NEK_HAN_FIELD_OBIS_LIST_VER_ID, obis_to_str

NAME = "Kamstrup"
"""The manufacturer name this decoder reports (meter_manufacturer, AutoDecoder.previous_success_decoder)."""

SCALERS: dict[bytes, int] = {
    **{bytes((c, 7, 0)): -2 for c in (31, 51, 71)},  # currents in 0.01 A (HAN-NVE)
    **{bytes((c, 8, 0)): 1 for c in (1, 2, 3, 4)},  # energies in 10 Wh / 10 varh (HAN-NVE)
    **{bytes((c, 7, 0)): -2 for c in (13, 33, 53, 73)},  # power factors in 0.01 ("DLMS push 1")
}
"""Kamstrup's documented scalers by value groups C.D.E (no scaler-unit is sent); voltage and power are x1."""

CT_SCALERS: dict[bytes, int] = {**SCALERS, **{bytes((c, 7, 0)): -3 for c in (31, 51, 71)}}
"""The scalers of current-transformer meters (meter type 685-…, han-spec 6.3): currents in 0.001 A."""
CT_METER_TYPE = "685"
"""How the meter type (1.1.96.1.1.255) of a Kamstrup current-transformer meter starts."""

_LIST_VERSION = obis_to_str(LIST_VERSION_CODE)


def decode_message(frame_content: bytes, trace: Optional[Trace] = None) -> DecodedMessage:
    """Decode a Kamstrup list (HAN-NVE lists 1 and 2, "DLMS push 1"), single-phase null padding included.

    A list naming a current-transformer meter type (685-…) gives currents in 0.001 A (CT_SCALERS); "DLMS
    push 1" sends no meter type, so its currents are read in the 0.01 A of direct meters.
    """
    header = read_notification_header(frame_content)
    data = frame_content
    items: list[MeterItem] = []
    unlabelled: list[Unlabelled] = []
    try:
        count, pos = read_container(data, header.body_offset, (0x02,))
        if data[pos] != 0x0A:
            raise DecodeError(f"expected the Kamstrup list id (tag 0a), found tag {data[pos]:02x}", pos)
        start = pos
        pos = walk_interleaved(
            data, pos, count, items, scalers=SCALERS, unlabelled=unlabelled, trace=trace, strict=True
        )
        if any(
            item.name == NEK_HAN_FIELD_METER_TYPE and str(item.value).startswith(CT_METER_TYPE)
            for item in items
        ):
            items.clear()  # a current-transformer meter: the same list again, with its current scaler
            unlabelled.clear()
            if trace is not None:
                trace.clear()
            pos = walk_interleaved(
                data, start, count, items, scalers=CT_SCALERS, unlabelled=unlabelled, trace=trace, strict=True
            )
    except (IndexError, struct.error):
        raise truncated(data) from None
    check_end(data, pos)
    list_id = unlabelled[0].raw if unlabelled else None
    if not isinstance(list_id, str) or not list_id.startswith("Kamstrup"):
        raise DecodeError(
            f"expected a Kamstrup list id Kamstrup_..., found {shown(list_id)}", header.body_offset
        )
    if len(unlabelled) > 1:
        index, raw, offset = unlabelled[1]
        raise DecodeError(
            f"expected an OBIS code before each value, found {shown(raw)} (element {index})", offset
        )
    items.insert(0, MeterItem(_LIST_VERSION, NEK_HAN_FIELD_OBIS_LIST_VER_ID, list_id, None))
    return DecodedMessage(NAME, header.date_time, items)


def decode_frame_content(frame_content: bytes) -> Dict[str, ItemValue]:
    """Decode the information field (LLC header optional) of a Kamstrup frame into the dictionary."""
    return message_to_dict(decode_message(frame_content))
