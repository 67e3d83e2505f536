"""The item model and body walkers every meter decoder shares: items, messages and the dictionary."""

from __future__ import annotations

import logging
import struct
from datetime import datetime
from typing import Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple, Union

from amshan._errors import DecodeError, shown
from amshan.axdr import (
    AxdrValue,
    CosemDate,
    CosemDateTime,
    CosemTime,
    decode_date_time,
    read_data,
    read_length,
    visible_text,
)
from amshan.cosem import UNIT_SYMBOLS, apply_scaler
from amshan.dlms import read_notification_header
from amshan.obis_map import (
    CLOCK_CODES,
    FIELD_UNITS,
    NEK_HAN_FIELD_METER_DATETIME,
    NEK_HAN_FIELD_METER_ID,
    NEK_HAN_FIELD_METER_MANUFACTURER,
    NEK_HAN_FIELD_METER_TYPE,
    NEK_HAN_FIELD_OBIS_LIST_VER_ID,
    OBIS_BYTES_NAME,
    obis_from_str,
    obis_to_str,
)

_LOGGER = logging.getLogger(__name__)

ItemValue = Union[str, int, float, datetime]
"""The value of one decoded item (and of the dictionary)."""


class MeterItem(NamedTuple):
    """One decoded item of a message: its OBIS code, field name, scaled value and unit."""

    obis: str  # dotted "1.0.1.7.0.255" (positional Kaifa items get their documented code)
    name: str | None  # field name from obis_map, None when the code has no name
    value: ItemValue
    unit: str | None  # "W", "var", "A", "V", "Wh", "varh", ... or None


class DecodedMessage(NamedTuple):
    """A decoded message: manufacturer (when known), the APDU header's date-time, and the items."""

    manufacturer: str | None
    date_time: datetime | None
    items: list[MeterItem]


Trace = List[Tuple[int, bytes, int]]
"""Where each item's value starts: (offset of its tag, raw OBIS code, scaler) in walk order (shape cache)."""


class Unlabelled(NamedTuple):
    """A value sent without an OBIS code before it: its element index, the value and its tag's offset."""

    element: int
    raw: AxdrValue
    offset: int


class _Field(NamedTuple):
    """What an OBIS code means: dotted form, field name, the field's unit and the kind of value it takes."""

    obis: str
    name: str | None
    unit: str | None
    kind: str | None  # "a number", "text" or "a 12-byte date-time"; None for a code without a name
    types: tuple[type, ...] | None  # the A-XDR value types of that kind


_NUMBER, _TEXT, _DATE_TIME = "a number", "text", "a 12-byte date-time"
TEXT_KIND = _TEXT
"""The kind (_Field.kind) of the named text fields: list id, meter id, meter type."""
_TEXT_FIELDS = frozenset((NEK_HAN_FIELD_OBIS_LIST_VER_ID, NEK_HAN_FIELD_METER_ID, NEK_HAN_FIELD_METER_TYPE))
# The A-XDR value types each kind takes (None: null-data, an item without a value); a date-time octet-string
# must also hold 12 bytes.
_KIND_TYPES: dict[str, tuple[type, ...]] = {
    _NUMBER: (int, float, type(None)),
    _TEXT: (bytes, str, type(None)),
    _DATE_TIME: (bytes, CosemDateTime, type(None)),
}


def _kind_of(name: str) -> str:
    """Return the kind of value a named field takes."""
    if name in _TEXT_FIELDS:
        return _TEXT
    return _DATE_TIME if name == NEK_HAN_FIELD_METER_DATETIME else _NUMBER


_FIELDS: dict[bytes, _Field] = {
    code: _Field(obis_to_str(code), name, FIELD_UNITS.get(name), kind, _KIND_TYPES[kind])
    for code, name, kind in ((code, name, _kind_of(name)) for code, name in OBIS_BYTES_NAME.items())
}
_UNKNOWN_FIELDS: dict[bytes, _Field] = {}
_UNKNOWN_FIELDS_MAX = 4096

LIST_VERSION_CODE = bytes((1, 1, 0, 2, 129, 255))
"""The documented OBIS code of the list version identifier (sent without its code by Kamstrup/Kaifa)."""
CLOCK_CODE = bytes((0, 0, 1, 0, 0, 255))
"""The OBIS code of the clock object."""
_LOGICAL_DEVICE_NAME = "0.0.42.0.0.255"

_LIST_ID_MANUFACTURERS = (("AIDON", "Aidon"), ("KFM", "Kaifa"), ("Kamstrup", "Kamstrup"))
_FLAG_MANUFACTURERS = {"ISK": "Iskraemeco", "LGZ": "Landis+Gyr", "KFM": "Kaifa", "KAM": "Kamstrup"}

_U32 = struct.Struct(">I").unpack_from
_U16 = struct.Struct(">H").unpack_from
_S16 = struct.Struct(">h").unpack_from
_SCALER_UNIT_HEAD = b"\x02\x02\x0f"
_SCALER_UNITS: dict[bytes, tuple[int, str | None]] = {}  # the 6 bytes of a scaler-unit -> (scaler, unit)
_SCALER_UNITS_MAX = 4096
_new_tuple = tuple.__new__


def field_of(code: bytes) -> _Field:
    """Return the meaning of a raw OBIS code (unknown codes get their dotted form and no name)."""
    field = _FIELDS.get(code)
    if field is None:
        field = _UNKNOWN_FIELDS.get(code)
        if field is None:
            field = _Field(obis_to_str(code), None, None, None, None)
            if len(_UNKNOWN_FIELDS) < _UNKNOWN_FIELDS_MAX:  # garbage must not grow memory without bound
                _UNKNOWN_FIELDS[code] = field
    return field


def octet_text(raw: bytes) -> str:
    """Render an octet-string value: printable ASCII as text (NUL padding dropped), anything else as hex."""
    text = raw.rstrip(b"\x00")
    if text and text.isascii():
        decoded = text.decode("ascii")
        if decoded.isprintable():
            return decoded
    return raw.hex()


def item_value(code: bytes, raw: AxdrValue) -> ItemValue | None:
    """Turn a raw A-XDR value into an item value; None means the item carries no value (null, no instant)."""
    if code in CLOCK_CODES:  # the clock's value is a date-time (octet-string or tag 25); else no instant
        if isinstance(raw, bytes):
            return decode_date_time(raw, 0) if len(raw) == 12 else None
        return raw.datetime if isinstance(raw, CosemDateTime) else None
    if isinstance(raw, (int, float, str)):
        return raw
    if isinstance(raw, bytes):
        return octet_text(raw)
    if raw is None:
        return None
    if isinstance(raw, CosemDateTime):
        return raw.datetime
    if isinstance(raw, (CosemDate, CosemTime)):
        return str(raw)
    return repr(raw)  # an array/structure as value: kept, rendered as text


def make_item(
    code: bytes, raw: AxdrValue, scaler: int, unit: str | None, strict_at: int = -1, *, sent: bool = False
) -> MeterItem | None:
    """Build the item of an OBIS code and raw value, scaled by 10**scaler; None when there is no value.

    The value's type is amshan 2021.12.1's: a scaler the meter sent (``sent``, a scaler-unit) other than 0
    gives a float, a manufacturer's implicit scaler gives ``value * 10**scaler`` (int for a scaler >= 0).

    A value of the wrong kind for a named field (voltage as text, meter id as a number) raises a DecodeError
    at offset ``strict_at`` when that is given (a meter's documented layout), else is logged and gives None.
    """
    field = _FIELDS.get(code) or field_of(code)
    types = field.types
    if types is not None and (
        type(raw) not in types or (type(raw) is bytes and field.kind is _DATE_TIME and len(raw) != 12)
    ):
        found = f"expected {field.kind} for {field.name} ({field.obis}), found {shown(raw)}"
        if strict_at >= 0:
            raise DecodeError(found, strict_at)
        _LOGGER.debug("item dropped: %s", found)
        return None
    value: ItemValue | None
    if scaler and isinstance(raw, (int, float)) and not isinstance(raw, bool) and code not in CLOCK_CODES:
        value = float(apply_scaler(raw, scaler)) if sent else apply_scaler(raw, scaler)
    else:
        value = item_value(code, raw)
    if value is None:
        return None
    return _new_tuple(MeterItem, (field.obis, field.name, value, unit if unit is not None else field.unit))


def read_value(data: bytes, pos: int) -> tuple[AxdrValue, int]:
    """Read one tagged value, with the types meters send most taken without a call into the full reader."""
    tag = data[pos]
    if tag == 0x06:
        return _U32(data, pos + 1)[0], pos + 5
    if tag == 0x12:
        return _U16(data, pos + 1)[0], pos + 3
    if tag == 0x10:
        return _S16(data, pos + 1)[0], pos + 3
    return read_data(data, pos)


def _scaler_unit(data: bytes, pos: int) -> tuple[int, str | None]:
    """Read the scaler-unit structure 02 02 0f <scaler> 16 <unit> at pos (6 bytes); return (scaler, unit)."""
    raw = data[pos : pos + 6]
    known = _SCALER_UNITS.get(raw)
    if known is not None:
        return known
    if raw[:3] != _SCALER_UNIT_HEAD or raw[4:5] != b"\x16" or len(raw) < 6:
        raise DecodeError(f"expected a scaler-unit structure 02 02 0f xx 16 xx, found {raw.hex(' ')}", pos)
    scaler = raw[3]
    known = (scaler - 256 if scaler > 127 else scaler), UNIT_SYMBOLS.get(raw[5])
    if len(_SCALER_UNITS) < _SCALER_UNITS_MAX:
        _SCALER_UNITS[raw] = known
    return known


def read_container(data: bytes, pos: int, tags: tuple[int, ...]) -> tuple[int, int]:
    """Read an array/structure tag (one of tags) and its count at pos; return (count, next)."""
    if pos >= len(data):
        raise DecodeError("expected the notification body, found end of data", pos)
    if data[pos] not in tags:
        expected = " or ".join(f"{tag:02x}" for tag in tags)
        raise DecodeError(f"expected a body of tag {expected}, found {data[pos]:02x}", pos)
    count, pos = read_length(data, pos + 1)
    if count > len(data) - pos:
        raise DecodeError(f"expected {count} elements, found only {len(data) - pos} bytes", pos)
    return count, pos


class _RegisterPlan(NamedTuple):
    """What a register structure's first 11 bytes (head, OBIS code, value tag) tell, remembered per bytes."""

    size: int  # 2 or 3 elements (3: a scaler-unit follows the value)
    code: bytes
    number: Optional[Callable[[bytes, int], Tuple[int]]]  # a named number field's integer: its reader
    width: int  # the integer's tag and value octets
    text: Optional[Callable[[bytes], str]]  # a named text field's string: its bytes as text
    obis: str
    name: Optional[str]
    unit: Optional[str]


_REGISTER_HEADS = {b"\x02\x02\x09\x06": 2, b"\x02\x03\x09\x06": 3}  # a register structure -> its size
_INTEGER_READERS: dict[int, Tuple[Callable[[bytes, int], Tuple[int]], int]] = {
    tag: (struct.Struct(">" + fmt).unpack_from, 1 + struct.calcsize(fmt))
    for tag, fmt in ((0x05, "i"), (0x06, "I"), (0x0F, "b"), (0x10, "h"), (0x11, "B"), (0x12, "H"),
                     (0x14, "q"), (0x15, "Q"), (0x16, "B"))
}  # fmt: skip
_TEXT_READERS: dict[int, Callable[[bytes], str]] = {0x09: octet_text, 0x0A: visible_text}  # item_value's
_REGISTER_PLANS: dict[bytes, _RegisterPlan] = {}
_REGISTER_PLANS_MAX = 4096


def _register_plan(data: bytes, pos: int) -> _RegisterPlan:
    """Check and read the head of a register structure {09 06 OBIS, value[, scaler-unit]} at pos."""
    head = data[pos : pos + 11]
    size = _REGISTER_HEADS.get(head[:4])
    if size is None:
        if head[:1] == b"\x02" and head[2:4] == b"\x09\x06":
            raise DecodeError(f"expected a structure of 2 or 3 elements, found {head[1]}", pos + 1)
        raise DecodeError(f"expected a structure 02 02/03 09 06 <OBIS>, found {head[:4].hex(' ')}", pos)
    if len(head) < 11:
        raise truncated(data)
    code = head[4:10]
    field = field_of(code)
    number, width = _INTEGER_READERS.get(head[10], (None, 0)) if field.kind is _NUMBER else (None, 0)
    text = _TEXT_READERS.get(head[10]) if field.kind is _TEXT else None
    plan = _RegisterPlan(size, code, number, width, text, field.obis, field.name, field.unit)
    if len(_REGISTER_PLANS) < _REGISTER_PLANS_MAX:
        _REGISTER_PLANS[head] = plan
    return plan


def walk_registers(
    data: bytes,
    pos: int,
    count: int,
    items: list[MeterItem],
    trace: Optional[Trace] = None,
    *,
    strict: bool = False,
    unscaled: Optional[List[bytes]] = None,
) -> int:
    """Walk count structures {09 06 OBIS, value[, scaler-unit]} (Aidon layout); return the end position.

    With strict, a named field's value of the wrong kind raises a DecodeError (see make_item).  unscaled,
    when given, collects the codes of numbers sent without a scaler-unit.  The items meters send most (a
    named number field's integer, a named text field's short string) are built in line from the
    structure's remembered plan: what make_item would build, without its checks (profiled).
    """
    for _ in range(count):
        size, code, number, width, text, obis, name, field_unit = _REGISTER_PLANS.get(
            data[pos : pos + 11]
        ) or _register_plan(data, pos)
        start = pos + 10
        value: Optional[ItemValue] = None
        if number is not None:
            value = integer = number(data, start + 1)[0]
            pos = start + width
        elif text is not None and data[start + 1] < 0x80 and start + 2 + data[start + 1] <= len(data):
            pos = start + 2 + data[start + 1]
            value = text(data[start + 2 : pos])
        else:
            raw, pos = read_data(data, start)
        if size == 3:
            scaler, unit = _SCALER_UNITS.get(data[pos : pos + 6]) or _scaler_unit(data, pos)
            pos += 6
        else:
            scaler, unit = 0, None
            if unscaled is not None and (number or (value is None and isinstance(raw, (int, float)))):
                unscaled.append(code)  # a number sent without a scaler-unit
        if value is None:
            item = make_item(code, raw, scaler, unit, start if strict else -1, sent=size == 3)
            if item is not None:
                items.append(item)
        else:
            if scaler and number is not None:
                value = float(apply_scaler(integer, scaler))  # a sent scaler gives a float
            items.append(_new_tuple(MeterItem, (obis, name, value, unit if unit is not None else field_unit)))
        if trace is not None:
            trace.append((start, code, scaler))
    return pos


def walk_interleaved(
    data: bytes,
    pos: int,
    count: int,
    items: list[MeterItem],
    *,
    scalers: dict[bytes, int],
    unlabelled: list[Unlabelled],
    trace: Optional[Trace] = None,
    strict: bool = False,
    unscaled: Optional[List[bytes]] = None,
) -> int:
    """Walk count structure elements: OBIS code, value[, scaler-unit] in turn (Kamstrup layout).

    Null-data elements (padding) are skipped, register structures {OBIS, value[, scaler-unit]} among the
    elements are decoded as such, and a value without a preceding code goes to unlabelled with its
    element index and offset.  scalers maps value groups C.D.E (3 bytes) to a manufacturer's implicit
    scaler, used when the frame sends no scaler-unit.  With strict, a named field's value of the wrong kind
    raises a DecodeError (see make_item).  unscaled, when given, collects the codes of numbers sent without
    a scaler-unit.
    """
    index = 0
    while index < count:
        tag = data[pos]
        if tag == 0x09 and data[pos + 1] == 0x06 and index + 1 < count:
            code = data[pos + 2 : pos + 8]
            start = pos + 8
            raw, pos = read_value(data, start)
            index += 2
            sent = index < count and data[pos : pos + 3] == _SCALER_UNIT_HEAD
            if sent:
                scaler, unit = _scaler_unit(data, pos)
                pos += 6
                index += 1
            else:
                scaler, unit = scalers.get(code[2:5], 0), None
                if unscaled is not None and isinstance(raw, (int, float)):
                    unscaled.append(code)
            item = make_item(code, raw, scaler, unit, start if strict else -1, sent=sent)
            if item is not None:
                items.append(item)
            if trace is not None:
                trace.append((start, code, scaler))
        elif tag == 0x00:
            pos += 1
            index += 1
        elif tag == 0x02 and data[pos + 2 : pos + 4] == b"\x09\x06":  # a register structure among them
            pos = walk_registers(data, pos, 1, items, trace, strict=strict, unscaled=unscaled)
            index += 1
        else:
            start = pos
            raw, pos = read_data(data, pos)
            unlabelled.append(Unlabelled(index, raw, start))
            index += 1
    return pos


def check_end(data: bytes, pos: int) -> None:
    """Require the body to end exactly where the data ends."""
    if pos != len(data):
        if pos > len(data):
            raise DecodeError(f"expected {pos - len(data)} more bytes, found end of data", len(data))
        raise DecodeError(f"expected the end of the message, found {len(data) - pos} more bytes", pos)


def truncated(data: bytes) -> DecodeError:
    """Return the error for a walk that ran past the end of the data."""
    return DecodeError("expected more bytes, found end of data", len(data))


def message_to_dict(message: DecodedMessage) -> Dict[str, ItemValue]:
    """Derive the dictionary of a decoded message: field name (else dotted code) -> value."""
    result: Dict[str, ItemValue] = {}
    if message.manufacturer is not None:
        result[NEK_HAN_FIELD_METER_MANUFACTURER] = message.manufacturer
    for obis, name, value, _ in message.items:  # unpacked: faster than attribute access per item
        result[name or obis] = value
    if message.date_time is not None and NEK_HAN_FIELD_METER_DATETIME not in result:
        result[NEK_HAN_FIELD_METER_DATETIME] = message.date_time
    return result


def manufacturer_of(items: List[MeterItem]) -> str | None:
    """Name the manufacturer from the list id or the logical device name's FLAG id, when either tells."""
    for item in items:
        if item.name == NEK_HAN_FIELD_OBIS_LIST_VER_ID and isinstance(item.value, str):
            for prefix, manufacturer in _LIST_ID_MANUFACTURERS:
                if item.value.startswith(prefix):
                    return manufacturer
        elif item.obis == _LOGICAL_DEVICE_NAME and isinstance(item.value, str):
            found = _FLAG_MANUFACTURERS.get(item.value[:3])
            if found is not None:
                return found
    return None


Position = Optional[Tuple[bytes, int]]
"""One element of a positional list: (raw OBIS code, scaler), or None for a value whose meaning is unknown."""


def positional_layouts(
    layouts: Iterable[Iterable[Tuple[Optional[str], int]]], scalers: Mapping[str, int]
) -> Dict[bytes, Tuple[Position, ...]]:
    """Index positional layouts by their elements' A-XDR tags, the one thing that tells them apart.

    Each layout gives (OBIS code or None, A-XDR tag) per element; a code "C.D.E" is the electricity register
    1-0:C.D.E, scaled by scalers[C.D.E] (default 0), any other code is a full dotted code.
    """
    indexed: Dict[bytes, Tuple[Position, ...]] = {}
    for layout in layouts:
        elements = tuple(layout)
        positions: List[Position] = []
        for code, _ in elements:
            if code is None:
                positions.append(None)
            elif code.count(".") == 2:
                positions.append((obis_from_str(f"1.0.{code}.255"), scalers.get(code, 0)))
            else:
                positions.append((obis_from_str(code), 0))
        signature = bytes(tag for _, tag in elements)
        if signature in indexed:  # two layouts with one signature could not be told apart
            raise ValueError(f"two positional layouts of element types {signature.hex(' ')}")
        indexed[signature] = tuple(positions)
    return indexed


def decode_positional(
    frame_content: bytes,
    trace: Optional[Trace],
    layouts: Mapping[bytes, Tuple[Position, ...]],
    manufacturer: str,
) -> DecodedMessage:
    """Decode a data-notification whose body is a structure of values without OBIS codes, of known layouts.

    The layout is the one whose element types are those of the body; a body of any other types, or one
    whose items name another manufacturer, raises a DecodeError.
    """
    header = read_notification_header(frame_content)
    data = frame_content
    items: List[MeterItem] = []
    try:
        count, pos = read_container(data, header.body_offset, (0x02,))
        values: List[Tuple[int, AxdrValue]] = []
        for _ in range(count):
            start = pos
            raw, pos = read_value(data, pos)
            values.append((start, raw))
        tags = bytes(data[start] for start, _ in values)
        layout = layouts.get(tags)
        if layout is None:
            raise DecodeError(
                f"expected a positional {manufacturer} list, found {count} elements of types {tags.hex(' ')}",
                header.body_offset,
            )
        for (start, raw), position in zip(values, layout):
            if position is None:
                continue
            code, scaler = position
            item = make_item(code, raw, scaler, None, start)
            if item is not None:
                items.append(item)
            if trace is not None:
                trace.append((start, code, scaler))
    except (IndexError, struct.error):
        raise truncated(data) from None
    check_end(data, pos)
    other = manufacturer_of(items)
    if other not in (None, manufacturer):
        raise DecodeError(
            f"expected a positional {manufacturer} list, found one naming {other}", header.body_offset
        )
    return DecodedMessage(manufacturer, header.date_time, items)
