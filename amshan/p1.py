"""P1 telegrams (IEC 62056-21 mode D, DSMR): cut a byte stream into telegrams, check them, parse their lines.

A telegram is ``/XXXZ<identification>`` CR LF, data lines ``A-B:C.D.E(value*unit)(...)`` CR LF each, then
``!`` + CRC-16/ARC over ``/``..``!`` as 4 hex digits + CR LF (``!`` CR LF alone: no CRC, DSMR <= 3 and some
meters). Sans-IO: ``P1TelegramReader.read(chunk)`` returns the telegrams a chunk completes, ``parse_telegram``
turns one into the library's dictionary. Neither raises on any input: a telegram whose CRC fails is returned
as invalid (never parsed), an unknown or broken line is skipped without losing the rest of the telegram.

Bounds: a ``/`` must be followed by an identification line (CR LF within 128 bytes) and then text (printable
ASCII and CR LF), else it is given up at the first byte that breaks that; a telegram longer than 16 KiB is
given up; a line with more than 64 values is skipped. A ``/`` inside a telegram starts a new one (a telegram
cut off by a reset or an unplug must not cost the next).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Dict, List, NamedTuple, Optional, Tuple, Union, cast

from amshan.fastframecheck import crc16_arc
from amshan.items import DecodedMessage, ItemValue, MeterItem
from amshan.obis_map import FIELD_UNITS
from amshan.p1_objects import (
    CLOCK,
    COUNT,
    FAILURE_LOG,
    INTEGER_UNITS,
    MAX_DEMAND,
    MAX_DEMAND_HISTORY,
    MBUS_READING,
    MBUS_READING_DSMR3,
    NUMBER,
    P1_OBJECTS,
    TEXT,
    UNITS,
    dotted_key,
)

__all__ = [
    "P1Parser",
    "P1Telegram",
    "P1TelegramReader",
    "crc16_arc",
    "parse_telegram",
    "telegram_dict",
    "telegram_message",
]

MAX_IDENTIFICATION = 128
"""Bytes a ``/`` may claim before its identification line must have ended (CR LF)."""
MAX_TELEGRAM = 16 * 1024
"""Bytes from ``/`` to the end of the CRC line; DSMR telegrams are 1-3 KiB (a text message at most 2 KiB)."""
MAX_VALUES = 64
"""Values on one line; more (a hostile line) and the line is skipped."""

_IDENTIFICATION = bytes((0x02, 0x0D, *range(0x20, 0x2F), *range(0x30, 0x7F)))  # what it holds ('/' not)
_BAD_IDENTIFICATION = re.compile(rb"[^\x02\r\x20-\x2e\x30-\x7e]")  # what ends an identification line
_TEXT = bytes((0x0A, 0x0D, *range(0x20, 0x7F)))  # what the lines of a telegram consist of
_NOT_TEXT = re.compile(rb"[^\n\r\x20-\x7e]")
_TRAILER = re.compile(rb"!(?:([0-9A-F]{4})(\r\n)?|([0-9A-F]{0,3})\r\n)")
_TRAILER_PREFIX = re.compile(rb"![0-9A-F]{0,3}\r?\Z")


class P1Telegram(NamedTuple):
    """A telegram cut from the stream: bytes ``/`` .. ``!``, the CRC sent (None: absent), the whole telegram.

    ``raw`` is the telegram through its CRC line, ended CR LF (to pass on whole: to a reader, a file).
    """

    data: bytes
    crc: Optional[int]
    raw: bytes = b""

    @property
    def is_valid(self) -> bool:
        """Return True when the telegram carries no CRC or its CRC matches."""
        return self.crc is None or self.crc == crc16_arc(self.data)


class P1TelegramReader:
    """Cut a byte stream of any chunking into P1 telegrams; keeps at most one telegram's bytes."""

    def __init__(self) -> None:
        """Start with nothing buffered."""
        self._buffer = b""
        self._start = -1  # where the telegram being read starts in the buffer ('/'), -1: none
        self._body = -1  # where its data lines start (after the identification line), -1: not yet
        self._scanned = 0  # how far its bytes are known to be text

    @property
    def buffered_bytes(self) -> int:
        """Return how many bytes the reader holds (at most one telegram's, MAX_TELEGRAM)."""
        return len(self._buffer)

    def read(self, chunk: bytes) -> List[P1Telegram]:
        """Feed the next bytes; return the telegrams they complete (valid or not), oldest first."""
        return cast(List[P1Telegram], self._read(chunk, None))  # None: only telegrams

    def read_interleaved(self, chunk: bytes) -> List[Union[P1Telegram, bytes]]:
        """Feed the next bytes; return the telegrams they complete and the bytes between them, in order.

        The bytes that are no part of a telegram are for the binary transports' readers. Bytes that may
        still begin a telegram are held back until it completes or is given up: at the first byte that no
        telegram holds there (binary data gives up at once, see the module's bounds).
        """
        passthrough: List[Union[P1Telegram, bytes]] = []
        return self._read(chunk, passthrough)

    def _read(
        self, chunk: bytes, out: Optional[List[Union[P1Telegram, bytes]]]
    ) -> List[Union[P1Telegram, bytes]]:
        """Cut telegrams out of the held bytes and the chunk; into out (when given) also the bytes between."""
        buffer = self._buffer + chunk if self._buffer else bytes(chunk)
        items: List[Union[P1Telegram, bytes]] = [] if out is None else out
        start, body, scanned = self._start, self._body, self._scanned
        position = emitted = 0  # where to look for the next '/'; what is passed on or consumed so far
        size = len(buffer)
        while True:
            if start < 0:
                start = buffer.find(b"/", position)
                if start < 0:
                    start = size
                    break
                body = -1
            if body < 0:
                maker = buffer[start + 1 : start + 4]
                if maker and not maker.isalpha():  # the manufacturer's 3 letters
                    position, start = start + 1, -1
                    continue
                end = buffer.find(b"\r\n", start + 1, start + MAX_IDENTIFICATION)
                limit = start + MAX_IDENTIFICATION if end < 0 else end
                if buffer[start + 1 : limit].translate(None, _IDENTIFICATION):  # no identification line
                    bad = _BAD_IDENTIFICATION.search(buffer, start + 1, limit)
                    position, start = (bad.start() if bad else start + 1), -1  # the next '/' from there
                    continue
                if end < 0:
                    if size - start < MAX_IDENTIFICATION:
                        break  # wait for the rest of the line
                    position, start = start + 1, -1
                    continue
                body = scanned = end + 2
            limit = min(size, start + MAX_TELEGRAM)
            slash = buffer.find(b"/", scanned, limit)
            end = limit if slash < 0 else slash
            at = buffer.find(b"\n!", scanned - 1, end) + 1  # the '!' that starts a line, 0: none yet
            if at:
                end, slash = at, -1
            if buffer[scanned:end].translate(None, _TEXT):  # a byte that is not text: give this '/' up
                bad = _NOT_TEXT.search(buffer, scanned, end)
                position, start = (bad.start() if bad else end) + 1, -1
                continue
            if slash >= 0:  # a new telegram starts here, the one being read was cut off
                position, start = slash, -1
                continue
            if not at:
                if limit < size or size - start >= MAX_TELEGRAM:  # endless text: give up (it holds no '/')
                    position, start = limit, -1
                    continue
                scanned = size
                break
            trailer = _TRAILER.match(buffer, at)
            if trailer is None:
                if _TRAILER_PREFIX.match(buffer, at):
                    scanned = at
                    break  # wait for the CRC line
                position, start = at + 1, -1
                continue
            digits = trailer.group(1) or trailer.group(3)
            if out is not None and start > emitted:
                out.append(buffer[emitted:start])
            position = emitted = trailer.end()
            crc = int(digits, 16) if digits else None
            raw = buffer[start : at + 1 + len(digits or b"")] + b"\r\n"
            items.append(P1Telegram(buffer[start : at + 1], crc, raw))
            start = -1
        if out is not None and start > emitted:
            out.append(buffer[emitted:start])
        if start >= size:
            self._buffer, self._start, self._body, self._scanned = b"", -1, -1, 0
        else:
            self._buffer = buffer[start:]
            self._start = 0
            self._body = body - start if body >= 0 else -1
            self._scanned = scanned - start if body >= 0 else 0
        return items


# ------------------------------------------------------------------------------------------------- parsing


def _scale(unit: str) -> Tuple[int, int]:
    """Return how a unit's values scale: (multiplier, -1 - decimals kept exact); (0, 0): plain float."""
    power = UNITS[unit.lower()][0] if unit.lower() in UNITS else None
    return (0, 0) if power is None else (10**power, -1 - power)


def _scaled(number: str, multiplier: int, cut: int) -> float | int:
    """Return a value scaled by _scale's (multiplier, cut): an int when exact (kW "1.011" -> 1011 W)."""
    if not multiplier:
        value = float(number)
    elif len(number) > -cut and number[cut] == ".":  # exactly the decimals the unit scales away
        return int(number.replace(".", ""))
    else:
        value = float(number) * multiplier
        if "." not in number[:cut]:
            return round(value)
    if value - value:  # infinite or not a number: not a meter reading
        raise ValueError(f"not a finite number: {number!r}")
    return value


def _number(text: str, unit: str) -> Tuple[float | int, str]:
    """Return a value scaled to the library's unit (kW -> W ...) and that unit."""
    if unit in INTEGER_UNITS:
        return int(text), unit
    scaled_unit = UNITS[unit.lower()][1] if unit.lower() in UNITS else unit
    return _scaled(text, *_scale(unit)), scaled_unit


_FAST_UNITS: Dict[str, Tuple[int, int]] = {
    unit + ")": _scale(unit)
    for unit in ("W", "kW", "Wh", "kWh", "var", "kvar", "kVAr", "kVAR", "varh", "kvarh", "kVArh", "V", "A")
}
"""The usual units as a line's last value ends ("kW)"), and their _scale."""

_NUMBERS: Dict[str, str] = {reduced: key for reduced, (key, kind) in P1_OBJECTS.items() if kind == NUMBER}
_OTHERS: Dict[str, Tuple[str, str]] = {
    reduced: known for reduced, known in P1_OBJECTS.items() if known[1] != NUMBER
}


def _bare(text: str) -> ItemValue:
    """Return a value sent without a unit: an int when it is one, a float when it is one, else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return _scaled(text, 0, 0)
    except ValueError:
        return text


def _timestamp(text: str) -> datetime:
    """Return a YYMMDDhhmmss[X] time stamp (or NES's "YYYYMMDD hh:mm:ss") as a naive datetime."""
    if len(text) == 17 and text[8] == " ":  # 20240111 09:35:00
        return datetime(
            int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]), int(text[12:14]), int(text[15:17])
        )
    if len(text) not in (12, 13) or not text[:12].isdigit():
        raise ValueError(f"not a time stamp: {text!r}")
    year = 2000 + int(text[:2])
    return datetime(year, int(text[2:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]))


def _value(text: str) -> Tuple[float | int, Optional[str]]:
    """Return a "value*unit" or bare numeric value, scaled, and its unit (None when sent without one)."""
    number, star, unit = text.partition("*")
    if star:
        return _number(number, unit)
    return _scaled(number, 0, 0), None


def _mbus(key: str, stamp: str, reading: str, result: Dict[str, ItemValue]) -> None:
    """Put an M-Bus channel's reading under <key>_value, _unit (when sent) and _timestamp."""
    value, unit = _value(reading)
    result[key + "_value"] = value
    if unit is not None:
        result[key + "_unit"] = unit
    result[key + "_timestamp"] = _timestamp(stamp)


def _failure_log(key: str, values: List[str], result: Dict[str, ItemValue]) -> None:
    """Put the power-failure log's count under its code and each failure's end and duration (s)."""
    count = int(values[0])
    events = values[2:]
    if count * 2 != len(events):
        raise ValueError("power-failure log count does not match its entries")
    result[key] = count
    for index in range(count):
        result[f"power_failure_{index + 1}_end"] = _timestamp(events[2 * index])
        result[f"power_failure_{index + 1}_duration"] = int(events[2 * index + 1].partition("*")[0])


def _max_demand_history(key: str, values: List[str], result: Dict[str, ItemValue]) -> None:
    """Put the Belgian monthly maximum demands: month start, time and value (W) of each, newest last."""
    count = int(values[0])
    months = values[3:]
    if count * 3 != len(months) or ":" not in values[1]:
        raise ValueError("maximum demand history count does not match its entries")
    result[key] = count
    for index in range(count):
        prefix = f"max_demand_{index + 1}"
        result[prefix + "_month"] = _timestamp(months[3 * index])
        result[prefix + "_time"] = _timestamp(months[3 * index + 1])
        result[prefix] = _value(months[3 * index + 2])[0]


def _line(reduced: str, values: List[str], result: Dict[str, ItemValue]) -> None:
    """Add one data line's entries to result; raises ValueError (caught by the caller) on a broken line."""
    known = P1_OBJECTS.get(reduced)
    if known is None:
        if "*" in reduced:  # "1-0:1.8.0*255": the F group some meters send
            reduced = reduced.partition("*")[0]
            known = P1_OBJECTS.get(reduced)
        if known is None:
            key = dotted_key(reduced)
            if key is None or len(values) != 1 or not values[0]:
                return  # not an OBIS id, or several values of unknown meaning
            number, star, unit = values[0].partition("*")
            result[key] = _number(number, unit)[0] if star else _bare(number)
            return
    key, kind = known
    if kind == NUMBER:
        if len(values) == 1:
            result[key] = _value(values[0])[0]
    elif kind == COUNT:
        if len(values) == 1:
            result[key] = int(values[0])
    elif kind == TEXT:
        if len(values) == 1:
            result[key] = values[0]
    elif kind == CLOCK:
        if len(values) == 1:
            result[key] = _timestamp(values[0])
    elif kind == MBUS_READING:
        if len(values) == 2:
            _mbus(key, values[0], values[1], result)
    elif kind == MBUS_READING_DSMR3:
        if len(values) == 7:
            _mbus(key, values[0], f"{values[6]}*{values[5]}", result)
    elif kind == FAILURE_LOG:
        _failure_log(key, values, result)
    elif kind == MAX_DEMAND:
        if len(values) == 2:
            result[key] = _value(values[1])[0]
            result[key + "_time"] = _timestamp(values[0])
    elif kind == MAX_DEMAND_HISTORY:
        _max_demand_history(key, values, result)


def _identification(line: str, result: Dict[str, ItemValue]) -> None:
    """Add meter_manufacturer_id (3 letters after '/') and meter_type_id (the rest, without an escape)."""
    result["meter_manufacturer_id"] = line[1:4]
    rest = line[5:]
    if rest.startswith("\\"):
        rest = rest[2:]
    elif rest.startswith("\x02"):
        rest = rest[1:]
    if rest:
        result["meter_type_id"] = rest


def _join_continuations(lines: List[str]) -> List[str]:
    """Return the lines with DSMR <= 3's M-Bus value, sent on a line of its own, joined to its 24.3.0 line."""
    joined: List[str] = []
    for line in lines:
        if (
            line.startswith("(")
            and joined
            and _OTHERS.get(joined[-1].partition("(")[0], ("", ""))[1] == MBUS_READING_DSMR3
        ):
            joined[-1] += line
        else:
            joined.append(line)
    return joined


def parse_telegram(data: bytes) -> Dict[str, ItemValue]:
    """Return the dictionary of one telegram (``/`` .. ``!``, CRC checked by the caller); never raises."""
    return _parse_text(data.decode("latin-1"))


def _parse_text(text: str) -> Dict[str, ItemValue]:
    """Return the dictionary of one telegram's text, line by line."""
    result: Dict[str, ItemValue] = {}
    lines = text.splitlines()
    if "\n(" in text:
        lines = _join_continuations(lines)
    if not lines or not lines[0].startswith("/"):
        return result
    _identification(lines[0], result)
    numbers, others, units = _NUMBERS, _OTHERS, _FAST_UNITS
    for line in lines[1:]:  # fast paths for the usual lines; the rest, and anything odd, in _parse_line
        reduced, _paren, rest = line.partition("(")
        key = numbers.get(reduced)
        try:
            if key is not None:  # 1-0:1.7.0(0001.011*kW)
                number, _star, unit = rest.partition("*")
                scale = units.get(unit)
                if scale is not None:
                    result[key] = _scaled(number, *scale)
                    continue
            elif rest[-1:] == ")" and ")(" not in rest:
                known = others.get(reduced)
                if known is not None:
                    key, kind = known
                    if kind == COUNT:  # 0-0:96.7.21(00013)
                        result[key] = int(rest[:-1])
                        continue
                    if kind == TEXT:  # 0-0:96.14.0(0002)
                        result[key] = rest[:-1]
                        continue
                    if kind == CLOCK:  # 0-0:1.0.0(170102192002W)
                        result[key] = _timestamp(rest[:-1])
                        continue
        except (ValueError, OverflowError):
            pass
        _parse_line(line, result)
    return result


_LINE_TEXT = r"([^\r\n\x0b\x0c\x1c-\x1e\x85]*)"  # a whole line, as str.splitlines sees one
_DIGITS = r"([0-9]+(?:\.[0-9]*)?)"


class _Layout:
    """A meter's repeated telegram layout: one regex captures every value, converted as _parse_text would.

    Its lines are those of the telegram it was learnt from: a number line with a usual unit keeps its id and
    unit and captures digits; a clock, count or text line captures its one value; any other line is
    captured whole for _parse_line. Only text that matches the whole regex is read this way, so the result
    is _parse_text's.
    """

    def __init__(self, text: str) -> None:
        """Learn the layout of one telegram's text (its lines end CR LF, it has no DSMR 3 continuation)."""
        lines = text.split("\r\n")
        self.identification: Dict[str, ItemValue] = {}
        _identification(lines[0], self.identification)
        pattern = [re.escape(lines[0])]
        self.slots: List[Tuple[str, str, Tuple[int, int]]] = []  # (key, what, scale) per captured value
        for line in lines[1:]:
            reduced, _paren, rest = line.partition("(")
            unit = rest.partition("*")[2]
            known = _OTHERS.get(reduced)
            if reduced in _NUMBERS and unit in _FAST_UNITS and ")(" not in rest:
                pattern.append(re.escape(reduced + "(") + _DIGITS + re.escape("*" + unit))
                self.slots.append((_NUMBERS[reduced], NUMBER, _FAST_UNITS[unit]))
            elif known is not None and known[1] == CLOCK and ")(" not in rest:
                pattern.append(re.escape(reduced) + r"\(([0-9]{12}[SW]?)\)")
                self.slots.append((known[0], CLOCK, (0, 0)))
            elif known is not None and known[1] in (COUNT, TEXT) and ")(" not in rest:
                pattern.append(re.escape(reduced) + r"\(([^()\r\n]*)\)")
                self.slots.append((known[0], known[1], (0, 0)))
            elif line in ("", "!"):
                pattern.append(re.escape(line))
            else:
                pattern.append(_LINE_TEXT)
                self.slots.append(("", "", (0, 0)))
        self.regex = re.compile("\r\n".join(pattern))

    def parse(self, text: str) -> Optional[Dict[str, ItemValue]]:
        """Return the dictionary of a telegram of this layout, None when the text does not fit it."""
        match = self.regex.fullmatch(text)
        if match is None:
            return None
        result = dict(self.identification)
        for (key, what, (multiplier, cut)), value in zip(self.slots, match.groups()):
            try:
                if what == NUMBER:
                    result[key] = _scaled(value, multiplier, cut)
                elif what == CLOCK:
                    result[key] = _timestamp(value)
                elif what == COUNT:
                    result[key] = int(value)
                elif what == TEXT:
                    result[key] = value
                else:
                    _parse_line(value, result)
            except (ValueError, OverflowError):
                pass
        return result


class P1Parser:
    """Parse one meter's telegrams into dictionaries, learning the layout it repeats (one regex per layout).

    A meter sends the same lines in the same order every time; from the second telegram of a layout on (the
    same identification line and number of lines), the values are read by that layout's regex. A telegram
    that does not fit (the meter changed its lines) is parsed line by line and teaches its layout. Never
    raises; the dictionary is always parse_telegram's.
    """

    MAX_LAYOUTS = 8
    MAX_LINES = 128

    def __init__(self) -> None:
        """Start knowing no layout."""
        self._layouts: Dict[Tuple[str, int], Optional[_Layout]] = {}
        self.layout_hits = 0  # telegrams read through a learnt layout

    def parse(self, data: bytes) -> Dict[str, ItemValue]:
        """Return the dictionary of one telegram (``/`` .. ``!``, CRC checked by the caller)."""
        text = data.decode("latin-1")
        lines = text.count("\n")
        key = (text[: text.find("\r")], lines)
        layout = self._layouts.get(key)
        if layout is not None:
            result = layout.parse(text)
            if result is not None:
                self.layout_hits += 1
                return result
        result = _parse_text(text)
        if key in self._layouts or layout is not None:  # seen before: the meter repeats this layout
            self._learn(key, text, lines)
        elif len(self._layouts) < self.MAX_LAYOUTS:
            self._layouts[key] = None
        return result

    def _learn(self, key: Tuple[str, int], text: str, lines: int) -> None:
        """Learn a telegram's layout, if it is one a regex can read (lines end CR LF, no continuations)."""
        plain = text.count("\r") == lines == text.count("\r\n") and "\n(" not in text
        self._layouts[key] = _Layout(text) if plain and lines <= self.MAX_LINES else None


def _parse_line(line: str, result: Dict[str, ItemValue]) -> None:
    """Add one line's entries to result; an unknown or broken line adds nothing."""
    reduced, paren, rest = line.partition("(")
    if not paren or not rest.endswith(")"):
        return
    values = rest[:-1].split(")(")
    if len(values) > MAX_VALUES:
        return
    try:
        _line(reduced, values, result)
    except (ValueError, IndexError, OverflowError):
        return


def telegram_dict(content: bytes, authenticated: bool = False) -> Optional[Dict[str, ItemValue]]:
    """Return the dictionary of a telegram given as message content, None if it does not check out.

    Content that ends at '!' was cut from a stream by P1TelegramReader, its CRC checked there; content with
    its CRC line (a decrypted plaintext) is checked here, unless authenticated: its GCM tag verified every
    byte (Luxembourg Smarty meters send telegrams whose CRC does not verify).
    """
    if content[-1:] == b"!":
        return parse_telegram(content)
    for telegram in P1TelegramReader().read(content):
        if authenticated or telegram.is_valid:
            return parse_telegram(telegram.data)
    return None


def telegram_message(content: bytes, authenticated: bool = False) -> Optional[DecodedMessage]:
    """Return a telegram given as message content as items (for listings by OBIS code), as telegram_dict.

    An entry under a dotted code is an item of that code; a named entry is an item of that name, with the
    unit the library scales its field to.
    """
    result = telegram_dict(content, authenticated)
    if result is None:
        return None
    items = [
        MeterItem(key, None, value, None)
        if key[:1].isdigit()
        else MeterItem("", key, value, FIELD_UNITS.get(key))
        for key, value in result.items()
    ]
    return DecodedMessage(None, None, items)
