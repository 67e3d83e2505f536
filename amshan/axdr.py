"""The one A-XDR reader of COSEM common data types, and the one COSEM date-time parser."""

from __future__ import annotations

import struct
from datetime import date, datetime, time, timedelta, timezone
from enum import IntEnum
from typing import Callable, List, NamedTuple, Tuple, Union

from amshan._errors import DecodeError

__all__ = [
    "MAX_DEPTH",
    "AxdrValue",
    "CosemDate",
    "CosemDateTime",
    "CosemTime",
    "DataType",
    "decode_date_time",
    "read_data",
    "read_date",
    "read_date_time",
    "read_length",
    "read_time",
    "visible_text",
]

MAX_DEPTH = 16
"""Deepest nesting of arrays/structures the reader follows (garbage must not exhaust the stack)."""


class DataType(IntEnum):
    """The tag byte of each COSEM common data type (Blue Book, table "Common data types")."""

    NULL_DATA = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27


_DATE_TIME = struct.Struct(">HBBBBBBBhB")
_DATE = struct.Struct(">HBBB")
_TIME = struct.Struct(">BBBB")
_NOT_SPECIFIED_DEVIATION = -0x8000
_TIMEZONES: dict[int, timezone] = {}


class CosemDateTime(NamedTuple):
    """A 12-byte COSEM date-time, every field as sent (None where the meter says "not specified")."""

    year: int | None
    month: int | None  # 1-12; 0xFD/0xFE (DST end/begin) and 0xFF read as None
    day_of_month: int | None  # 1-31; 0xFD/0xFE (2nd last/last day) and 0xE0-0xFF read as None
    day_of_week: int | None  # 1 = Monday ... 7 = Sunday
    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None
    deviation: int | None  # minutes of local time to UTC (UTC = local + deviation); None = 0x8000
    clock_status: int | None  # bit 0 invalid, 1 doubtful, 2 different base, 3 invalid status, 7 DST active

    @property
    def daylight_saving_active(self) -> bool:
        """Tell whether the clock status says summer time is active."""
        return self.clock_status is not None and bool(self.clock_status & 0x80)

    instant: datetime | None  # the date-time as a datetime (see decode_date_time), None if not an instant

    @property
    def datetime(self) -> datetime | None:
        """Return the instant as a datetime (naive when the deviation is unspecified), or None."""
        return self.instant


class CosemDate(NamedTuple):
    """A 5-byte COSEM date (None where not specified)."""

    year: int | None
    month: int | None
    day_of_month: int | None
    day_of_week: int | None

    @property
    def date(self) -> date | None:
        """Return the date, or None when a field is unspecified or out of range."""
        if self.year is None or self.month is None or self.day_of_month is None:
            return None
        try:
            return date(self.year, self.month, self.day_of_month)
        except ValueError:
            return None

    def __str__(self) -> str:
        """Render as ISO 8601 when complete, else with '*' for unspecified fields."""
        value = self.date
        if value is not None:
            return value.isoformat()
        return "-".join("*" if v is None else str(v) for v in self[:3])


class CosemTime(NamedTuple):
    """A 4-byte COSEM time (None where not specified)."""

    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None

    @property
    def time(self) -> time | None:
        """Return the time of day, or None when a field is unspecified or out of range."""
        if self.hour is None or self.minute is None or self.second is None:
            return None
        try:
            return time(self.hour, self.minute, self.second, (self.hundredths or 0) * 10000)
        except ValueError:
            return None

    def __str__(self) -> str:
        """Render as ISO 8601 when complete, else with '*' for unspecified fields."""
        value = self.time
        if value is not None:
            return value.isoformat()
        return ":".join("*" if v is None else str(v) for v in self[:3])


AxdrValue = Union[None, bool, int, float, str, bytes, CosemDateTime, CosemDate, CosemTime, List["AxdrValue"]]
"""A decoded A-XDR value: arrays and structures are lists, bit-strings are strings of '0'/'1'."""


def _to_datetime(fields: tuple[int, ...]) -> datetime | None:
    """Build the datetime of the raw date-time fields; None for any unspecified or out-of-range field."""
    year, month, day, _, hour, minute, second, hundredths, deviation, _ = fields
    if deviation == _NOT_SPECIFIED_DEVIATION:
        tzinfo = None
    else:
        if not -720 <= deviation <= 720:
            return None
        tzinfo = _TIMEZONES.get(deviation)
        if tzinfo is None:
            tzinfo = _TIMEZONES[deviation] = timezone(timedelta(minutes=-deviation))
    microsecond = 0 if hundredths == 0xFF else hundredths * 10000  # 0xFF: hundredths not specified
    try:
        return datetime(year, month, day, hour, minute, second, microsecond, tzinfo)
    except ValueError:  # year 0xFFFF, month 0xFD-0xFF, day 0xE0-0xFF, hour 24-0xFF, hundredths 100-0xFE, ...
        return None


def decode_date_time(data: bytes, pos: int) -> datetime | None:
    """Return the datetime of the 12 date-time bytes at pos (no tag, no length), or None if not an instant."""
    if pos < 0 or pos + 12 > len(data):
        raise DecodeError(f"expected 12 date-time bytes, found {max(0, len(data) - pos)}", pos)
    return _to_datetime(_DATE_TIME.unpack_from(data, pos))


def _opt(value: int, low: int, high: int) -> int | None:
    """Return a field value, or None when it is outside its specified range (0xFF = not specified)."""
    return value if low <= value <= high else None


def read_date_time(data: bytes, pos: int) -> CosemDateTime:
    """Parse the 12 date-time bytes at pos (no tag, no length) into their fields."""
    if pos < 0 or pos + 12 > len(data):
        raise DecodeError(f"expected 12 date-time bytes, found {max(0, len(data) - pos)}", pos)
    fields = _DATE_TIME.unpack_from(data, pos)
    year, month, day, dow, hour, minute, second, hundredths, deviation, status = fields
    return CosemDateTime(
        None if year == 0xFFFF else year,
        _opt(month, 1, 12),
        _opt(day, 1, 31),
        _opt(dow, 1, 7),
        _opt(hour, 0, 23),
        _opt(minute, 0, 59),
        _opt(second, 0, 59),
        _opt(hundredths, 0, 99),
        None if deviation == _NOT_SPECIFIED_DEVIATION else deviation,
        None if status == 0xFF else status,
        _to_datetime(fields),
    )


def read_date(data: bytes, pos: int) -> CosemDate:
    """Parse the 5 date bytes at pos (no tag, no length)."""
    if pos < 0 or pos + 5 > len(data):
        raise DecodeError(f"expected 5 date bytes, found {max(0, len(data) - pos)}", pos)
    year, month, day, dow = _DATE.unpack_from(data, pos)
    return CosemDate(None if year == 0xFFFF else year, _opt(month, 1, 12), _opt(day, 1, 31), _opt(dow, 1, 7))


def read_time(data: bytes, pos: int) -> CosemTime:
    """Parse the 4 time bytes at pos (no tag, no length)."""
    if pos < 0 or pos + 4 > len(data):
        raise DecodeError(f"expected 4 time bytes, found {max(0, len(data) - pos)}", pos)
    hour, minute, second, hundredths = _TIME.unpack_from(data, pos)
    return CosemTime(_opt(hour, 0, 23), _opt(minute, 0, 59), _opt(second, 0, 59), _opt(hundredths, 0, 99))


def read_length(data: bytes, pos: int) -> tuple[int, int]:
    """Read an A-XDR length/count at pos (one byte < 0x80, or 0x81-0x84 + 1-4 bytes); return (value, next)."""
    if pos >= len(data):
        raise DecodeError("expected an A-XDR length, found end of data", pos)
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    size = first & 0x7F
    if not 1 <= size <= 4:
        raise DecodeError(f"expected an A-XDR length (< 0x80 or 0x81-0x84), found 0x{first:02x}", pos)
    end = pos + 1 + size
    if end > len(data):
        raise DecodeError(f"expected {size} A-XDR length bytes, found {len(data) - pos - 1}", pos + 1)
    value = int.from_bytes(data[pos + 1 : end], "big")  # pragma: no mutate (equivalent: default byteorder)
    return value, end


_Reader = Callable[[bytes, int, int], Tuple["AxdrValue", int]]


def _fixed(size: int, convert: Callable[[bytes, int], AxdrValue]) -> _Reader:
    """Make a reader for a fixed-size type."""

    def read(data: bytes, pos: int, depth: int) -> tuple[AxdrValue, int]:
        end = pos + size
        if end > len(data):
            raise DecodeError(f"expected {size} value bytes, found {len(data) - pos}", pos)
        return convert(data, pos), end

    return read


def _int_reader(size: int, signed: bool) -> _Reader:
    """Make a reader for a big-endian integer type."""

    def convert(data: bytes, pos: int) -> AxdrValue:
        raw = data[pos : pos + size]
        return int.from_bytes(raw, "big", signed=signed)  # pragma: no mutate (equivalent: default byteorder)

    return _fixed(size, convert)


def _struct_reader(fmt: str) -> _Reader:
    """Make a reader for a struct-packed type (floats)."""
    packer = struct.Struct(fmt)
    return _fixed(packer.size, lambda data, pos: float(packer.unpack_from(data, pos)[0]))


def _read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    """Read an A-XDR length and that many bytes."""
    length, pos = read_length(data, pos)
    end = pos + length
    if end > len(data):
        raise DecodeError(f"expected {length} string bytes, found {len(data) - pos}", pos)
    return data[pos:end], end


def _read_octet_string(data: bytes, pos: int, depth: int) -> tuple[AxdrValue, int]:
    """Read an octet-string as bytes."""
    return _read_bytes(data, pos)


def visible_text(raw: bytes) -> str:
    """Return a visible-string's bytes as text (non-ASCII bytes become U+FFFD, NUL padding dropped)."""
    return raw.decode("ascii", "replace").rstrip("\x00")  # pragma: no mutate (equivalent: codecs ignore case)


def _read_visible_string(data: bytes, pos: int, depth: int) -> tuple[AxdrValue, int]:
    """Read a visible-string as text (see visible_text)."""
    raw, pos = _read_bytes(data, pos)
    return visible_text(raw), pos


def _read_utf8_string(data: bytes, pos: int, depth: int) -> tuple[AxdrValue, int]:
    """Read a utf8-string as text."""
    raw, pos = _read_bytes(data, pos)
    return raw.decode("utf-8", "replace"), pos  # pragma: no mutate (equivalent: codecs ignore case)


def _read_bit_string(data: bytes, pos: int, depth: int) -> tuple[AxdrValue, int]:
    """Read a bit-string (length in bits) as a string of '0' and '1', first bit first."""
    bits, pos = read_length(data, pos)
    end = pos + (bits + 7) // 8
    if end > len(data):
        raise DecodeError(f"expected {(bits + 7) // 8} bit-string bytes, found {len(data) - pos}", pos)
    if bits == 0:
        return "", end
    value = int.from_bytes(data[pos:end], "big")  # pragma: no mutate (equivalent: default byteorder)
    return format(value, f"0{(end - pos) * 8}b")[:bits], end


def _read_compound(data: bytes, pos: int, depth: int) -> tuple[AxdrValue, int]:
    """Read an array or structure (the tag is already consumed) as a list of its elements."""
    if depth >= MAX_DEPTH:
        raise DecodeError(f"expected at most {MAX_DEPTH} nested arrays/structures, found more", pos - 1)
    count, pos = read_length(data, pos)
    if count > len(data) - pos:
        raise DecodeError(f"expected {count} elements, found only {len(data) - pos} bytes", pos)
    elements: list[AxdrValue] = []
    for _ in range(count):
        value, pos = read_data(data, pos, depth + 1)
        elements.append(value)
    return elements, pos


_READERS: dict[int, _Reader] = {
    DataType.NULL_DATA: lambda data, pos, depth: (None, pos),
    DataType.ARRAY: _read_compound,
    DataType.STRUCTURE: _read_compound,
    DataType.BOOLEAN: _fixed(1, lambda data, pos: data[pos] != 0),
    DataType.BIT_STRING: _read_bit_string,
    DataType.DOUBLE_LONG: _int_reader(4, True),
    DataType.DOUBLE_LONG_UNSIGNED: _int_reader(4, False),
    DataType.OCTET_STRING: _read_octet_string,
    DataType.VISIBLE_STRING: _read_visible_string,
    DataType.UTF8_STRING: _read_utf8_string,
    DataType.BCD: _int_reader(1, False),
    DataType.INTEGER: _int_reader(1, True),
    DataType.LONG: _int_reader(2, True),
    DataType.UNSIGNED: _int_reader(1, False),
    DataType.LONG_UNSIGNED: _int_reader(2, False),
    DataType.LONG64: _int_reader(8, True),
    DataType.LONG64_UNSIGNED: _int_reader(8, False),
    DataType.ENUM: _int_reader(1, False),
    DataType.FLOAT32: _struct_reader(">f"),
    DataType.FLOAT64: _struct_reader(">d"),
    DataType.DATE_TIME: _fixed(12, read_date_time),
    DataType.DATE: _fixed(5, read_date),
    DataType.TIME: _fixed(4, read_time),
}


def read_data(data: bytes, pos: int, depth: int = 0) -> tuple[AxdrValue, int]:
    """Read one tagged A-XDR Data value at pos; return (value, position after it)."""
    if pos >= len(data):
        raise DecodeError("expected an A-XDR data tag, found end of data", pos)
    tag = data[pos]
    reader = _READERS.get(tag)
    if reader is None:
        raise DecodeError(f"expected an A-XDR data tag, found unknown tag 0x{tag:02x}", pos)
    return reader(data, pos + 1, depth)
