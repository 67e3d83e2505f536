"""Test-only A-XDR / DLMS encoder: builds notifications from values, so decoding can be checked."""

from __future__ import annotations

import struct
from datetime import datetime

LLC = b"\xe6\xe7\x00"


def length(n: int) -> bytes:
    """Encode an A-XDR length/count (short form below 0x80, else 0x81/0x82/0x84 + big-endian bytes)."""
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return b"\x81" + bytes([n])
    if n < 0x10000:
        return b"\x82" + n.to_bytes(2, "big")
    return b"\x84" + n.to_bytes(4, "big")


def null() -> bytes:
    return b"\x00"


def array(elements: list[bytes]) -> bytes:
    return b"\x01" + length(len(elements)) + b"".join(elements)


def structure(elements: list[bytes]) -> bytes:
    return b"\x02" + length(len(elements)) + b"".join(elements)


def boolean(value: bool) -> bytes:
    return b"\x03" + (b"\x01" if value else b"\x00")


def bit_string(bits: str) -> bytes:
    padded = bits + "0" * (-len(bits) % 8)
    raw = int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b""
    return b"\x04" + length(len(bits)) + raw


def double_long(value: int) -> bytes:
    return b"\x05" + value.to_bytes(4, "big", signed=True)


def double_long_unsigned(value: int) -> bytes:
    return b"\x06" + value.to_bytes(4, "big")


def octet_string(raw: bytes) -> bytes:
    return b"\x09" + length(len(raw)) + raw


def visible_string(text: str) -> bytes:
    raw = text.encode("ascii")
    return b"\x0a" + length(len(raw)) + raw


def utf8_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"\x0c" + length(len(raw)) + raw


def bcd(value: int) -> bytes:
    return b"\x0d" + bytes([value])


def integer(value: int) -> bytes:
    return b"\x0f" + value.to_bytes(1, "big", signed=True)


def long(value: int) -> bytes:
    return b"\x10" + value.to_bytes(2, "big", signed=True)


def unsigned(value: int) -> bytes:
    return b"\x11" + bytes([value])


def long_unsigned(value: int) -> bytes:
    return b"\x12" + value.to_bytes(2, "big")


def long64(value: int) -> bytes:
    return b"\x14" + value.to_bytes(8, "big", signed=True)


def long64_unsigned(value: int) -> bytes:
    return b"\x15" + value.to_bytes(8, "big")


def enum(value: int) -> bytes:
    return b"\x16" + bytes([value])


def float32(value: float) -> bytes:
    return b"\x17" + struct.pack(">f", value)


def float64(value: float) -> bytes:
    return b"\x18" + struct.pack(">d", value)


def date_time_bytes(
    moment: datetime | None = None,
    *,
    deviation: int | None = None,
    status: int = 0x00,
    day_of_week: int | None = None,
    raw_fields: tuple[int, ...] | None = None,
) -> bytes:
    """The 12 date-time bytes of a moment (hundredths from microseconds), or of raw fields as given."""
    if raw_fields is not None:
        return struct.pack(">HBBBBBBBhB", *raw_fields)
    assert moment is not None
    dow = moment.isoweekday() if day_of_week is None else day_of_week
    return struct.pack(
        ">HBBBBBBBhB",
        moment.year,
        moment.month,
        moment.day,
        dow,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond // 10000,
        -0x8000 if deviation is None else deviation,
        status,
    )


def date_time(raw12: bytes) -> bytes:
    return b"\x19" + raw12


def date(year: int, month: int, day: int, dow: int) -> bytes:
    return b"\x1a" + struct.pack(">HBBB", year, month, day, dow)


def time(hour: int, minute: int, second: int, hundredths: int) -> bytes:
    return b"\x1b" + bytes([hour, minute, second, hundredths])


def obis(code: str) -> bytes:
    """The octet-string of a dotted OBIS code."""
    return octet_string(bytes(int(part) for part in code.split(".")))


def scaler_unit(scaler: int, unit: int) -> bytes:
    return structure([integer(scaler), enum(unit)])


def register(code: str, value: bytes, scaler: int | None = None, unit: int | None = None) -> bytes:
    """One item of an OBIS list: code and value, and scaler and unit when both are given."""
    elements = [obis(code), value]
    if scaler is not None and unit is not None:
        elements.append(scaler_unit(scaler, unit))
    return structure(elements)


def notification(
    body: bytes,
    *,
    invoke: int = 0x40000000,
    header_date_time: bytes | None = None,
    date_time_form: str = "0c",
    llc: bool = True,
) -> bytes:
    """A data-notification APDU (with the LLC header unless llc=False); date-time forms 00, 0c, 09 0c, 19."""
    if header_date_time is None:
        dt = b"\x00"
    else:
        prefix = {"0c": b"\x0c", "090c": b"\x09\x0c", "19": b"\x19"}[date_time_form]
        dt = prefix + header_date_time
    return (LLC if llc else b"") + b"\x0f" + invoke.to_bytes(4, "big") + dt + body
