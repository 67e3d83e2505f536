"""How ``amshan`` shows what it reads: JSON lines, OBIS item blocks or frame diagnoses, problems, progress."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date, datetime
from datetime import time as datetime_time
from typing import TYPE_CHECKING, Any, TextIO

from amshan._errors import DecodeError
from amshan._ratelimit import LogLimiter
from amshan.autodecoder import AutoDecoder, MeterItem
from amshan.cipher import CIPHERING_TAGS, describe_system_title, parse_ciphered_apdu
from amshan.cli.diagnose import undecodable_reason
from amshan.hdlc import LLC_HEADER, HdlcFrame
from amshan.influxdb import InfluxDbWriter, PointMaker
from amshan.items import message_to_dict
from amshan.mbus import parse_frame
from amshan.obis_map import NEK_HAN_FIELD_METER_DATETIME
from amshan.reader import ReadFrame

if TYPE_CHECKING:
    from amshan.mqtt import MqttPublisher

FORMATS = ("json", "obis", "frames")


def _text(value: object) -> str:
    """Show a decoded value as text: datetimes (and dates, times) in ISO 8601, the rest as str() does."""
    if isinstance(value, (datetime, date, datetime_time)):
        return value.isoformat()
    return str(value)


def _hex_or_unknown(value: bytes | int | None, width: int = 2) -> str:
    if value is None:
        return "?"
    if isinstance(value, bytes):
        return value.hex() or "?"
    return f"{value:0{width}x}"


def _verdict(good: bool) -> str:
    return "ok" if good else "BAD"


def describe_frame(frame: HdlcFrame) -> str:
    """Return a frame's diagnosis: hex, addresses, control, segmentation, and length, HCS and FCS checks."""
    header = frame.header
    segmentation = header.segmentation
    return (
        f"{'valid' if frame.is_valid else 'INVALID'} frame, {len(frame) + 2} bytes"
        f"  format {_hex_or_unknown(header.frame_format, 4)}"
        f" (type {_hex_or_unknown(header.frame_format_type, 1)},"
        f" segmented {'?' if segmentation is None else ('yes' if segmentation else 'no')})"
        f"  dst {_hex_or_unknown(header.destination_address)}"
        f"  src {_hex_or_unknown(header.source_address)}"
        f"  control {_hex_or_unknown(header.control)}"
        f"  length {header.frame_length if header.frame_length is not None else '?'}"
        f" {_verdict(frame.is_expected_length)}"
        f"  HCS {_verdict(frame.is_good_hcs)}  FCS {_verdict(frame.is_good_ffc)}\n"
        f"  7e{frame.frame_data.hex()}7e"
    )


def describe_mbus_frame(frame: bytes, valid: bool) -> str:
    """Return an M-Bus long frame's diagnosis: hex, L field (and its wrap), C, A, CI segment, TSAPs."""
    if not valid or len(frame) < 11:
        return f"INVALID M-Bus frame, {len(frame)} bytes (checksum, stop byte or length)\n  {frame.hex()}"
    fields = parse_frame(frame)
    wrapped = " (written mod 256)" if frame[1] != len(frame) - 6 else ""
    ci = fields.control_information
    last = "last" if fields.is_last_segment else "more follow"
    return (
        f"valid M-Bus frame, {len(frame)} bytes  L {frame[1]:02x}{wrapped}  C {fields.control:02x}"
        f"  A {fields.address:02x}  CI {ci:02x} (segment {fields.segment_number}, {last})"
        f"  STSAP {fields.source_tsap:02x}  DTSAP {fields.destination_tsap:02x}  checksum ok\n  {frame.hex()}"
    )


def describe_security(content: bytes) -> str | None:
    """Return the security header of a ciphered message (system title, SC, counter; never a key), or None."""
    pos = len(LLC_HEADER) if content.startswith(LLC_HEADER) else 0
    if content[pos : pos + 1] not in tuple(bytes((tag,)) for tag in CIPHERING_TAGS):
        return None
    try:
        apdu = parse_ciphered_apdu(content, pos)
    except DecodeError as error:
        return f"  ciphered message that does not parse: {error}"
    kinds = [k for k, on in (("authenticated", apdu.authenticated), ("encrypted", apdu.encrypted)) if on]
    return (
        f"  ciphered message ({'glo' if apdu.tag == 0xDB else 'ded'}): system title"
        f" {describe_system_title(apdu.system_title)}  security control {apdu.security_control:02x}"
        f" ({', '.join(kinds) or 'no protection'}, suite {apdu.security_control & 0x0F})"
        f"  invocation counter {apdu.invocation_counter}  {len(apdu.payload)} bytes of payload"
    )


def _system_title(content: bytes) -> str | None:
    """Return the system title of a ciphered message in words (hex and manufacturer), or None."""
    pos = len(LLC_HEADER) if content.startswith(LLC_HEADER) else 0
    try:
        return describe_system_title(parse_ciphered_apdu(content, pos).system_title)
    except DecodeError:
        return None


def describe(read: ReadFrame) -> str:
    """Return the diagnosis of a frame of any transport, and the security header of a ciphered message."""
    if isinstance(read.frame, HdlcFrame):
        text = describe_frame(read.frame)
    elif read.transport == "mbus":
        text = describe_mbus_frame(read.frame, read.valid)
    elif read.transport == "p1":
        verdict = "valid" if read.valid else "INVALID (CRC does not match)"
        lines = read.frame.decode("latin-1").splitlines()
        text = f"{verdict} P1 telegram, {len(read.frame)} bytes, {len(lines)} lines\n  " + "\n  ".join(lines)
    else:
        verdict = "authenticated" if read.valid else "INVALID (tag does not verify)"
        text = f"{verdict} bare ciphered APDU, {len(read.frame)} bytes\n  {read.frame.hex()}"
    security = describe_security(read.message) if read.message else None
    return text if security is None else f"{text}\n{security}"


class Complaints:
    """Report problems with the input on stderr without flooding it: the first ten, then one a minute.

    Each problem has a kind (the words of the end-of-run summary: "invalid frames", "encrypted messages");
    ``summary()`` counts them all, so problems held back are never lost from sight.
    """

    FIRST = 10

    def __init__(self, stream: TextIO) -> None:
        """Report on ``stream``."""
        self._stream = stream
        self._limiter = LogLimiter()
        self.count = 0
        self.shown = 0
        self.kinds: dict[str, int] = {}

    def report(self, kind: str, problem: str) -> None:
        """Print the problem now, or only count it when too many came recently."""
        self.count += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if self.count > self.FIRST and not self._limiter.ready():
            return
        note = self._limiter.held_back_note("similar problems not shown") if self.count > self.FIRST else ""
        self.shown += 1
        self._stream.write(f"amshan: {problem}{note}\n")
        self._stream.flush()

    def summary(self) -> str:
        """Return one line counting the problems by kind (and how many were not shown), or "" if none."""
        if not self.count:
            return ""
        kinds = ", ".join(counted(count, kind) for kind, count in self.kinds.items())
        hidden = self.count - self.shown
        return f"{counted(self.count, 'problems')}: {kinds}" + (
            f" ({hidden} not shown above)" if hidden else ""
        )


def counted(count: int, plural: str) -> str:
    """Return "1 invalid frame" or "3 invalid frames" from the plural words."""
    return f"{count} {plural[:-1] if count == 1 else plural}"


class Sink:
    """Where frames and messages go: stdout in the chosen format, and/or InfluxDB, and/or MQTT."""

    def __init__(
        self,
        output_format: str,
        *,
        stdout: TextIO,
        stderr: TextIO,
        writer: InfluxDbWriter | None = None,
        point_maker: PointMaker | None = None,
        publisher: MqttPublisher | None = None,
        flush_each: bool = False,
        limit: int | None = None,
        encryption_key: bytes | None = None,
        authentication_key: bytes | None = None,
        stamp_received: bool = False,
    ) -> None:
        """Print in ``output_format`` (json, obis, frames or none); stop after ``limit`` items when set.

        The keys (16 bytes each, or None) decrypt ciphered messages. With ``stamp_received`` (live sources)
        each JSON line carries "received", the local time with offset.
        """
        self.output_format = output_format
        self._stdout = stdout
        self._writer = writer
        self._point_maker = point_maker
        self._publisher = publisher
        self._flush_each = flush_each
        self._limit = limit
        self._stamp_received = stamp_received
        self.keys = (encryption_key, authentication_key)
        self._decoder = AutoDecoder(encryption_key=encryption_key, authentication_key=authentication_key)
        self.complaints = Complaints(stderr)
        self.frames = 0
        self.invalid_frames = 0
        self.messages = 0
        self.decoded = 0
        self.finished = asyncio.Event()

    @property
    def succeeded(self) -> bool:
        """Return True once the run delivered: a decoded message (with --format frames: a valid frame)."""
        return self.frames > self.invalid_frames if self.wants_frames else self.decoded > 0

    @property
    def backlogged(self) -> bool:
        """Return True when the MQTT publisher has a backlog a recorded source should wait for."""
        return self._publisher is not None and self._publisher.backlogged

    async def drained(self) -> None:
        """Wait until the MQTT publisher's backlog is gone (pacing a capture to the broker)."""
        if self._publisher is not None:
            await self._publisher.drained()

    @property
    def wants_frames(self) -> bool:
        """Return True when every frame (valid or not) is printed rather than the messages."""
        return self.output_format == "frames"

    def frame(self, read: ReadFrame) -> None:
        """Take one frame of any transport (with the message it completes) from recorded or live bytes."""
        self.frames += 1
        if not read.valid:
            self.invalid_frames += 1
        if self.wants_frames:
            self._emit(f"frame {self.frames}: {describe(read)}")
            if self._writer is None and self._publisher is None:
                return
        elif not read.valid:
            self.complaints.report(
                "invalid frames", f"frame {self.frames} skipped: {describe(read).splitlines()[0]}"
            )
        if read.message:
            self.message(read.message)

    def message(self, content: bytes) -> None:
        """Take one message's content (the information field, segments joined): decode, print, forward."""
        self.messages += 1
        items = dictionary = None
        if self.output_format == "obis":  # one full decode: the items, and the dictionary made from them
            decoded = self._decoder.decode_message(content)
            if decoded is not None:
                items, dictionary = decoded.items, message_to_dict(decoded)
        elif self.output_format == "json" or self._writer is not None or self._publisher is not None:
            dictionary = self._decoder.decode_frame_content(content)
        if (dictionary if items is None else items) is None:
            kind, reason = undecodable_reason(content)
            title = _system_title(content) if kind == "encrypted" else None
            if title is not None and self.keys[0] is not None:
                reason = f"encrypted by system title {title}, and the keys given do not decrypt it"
            elif title is not None:
                reason = f"{reason} (system title {title})"
            preview = content[:16].hex() + ("..." if len(content) > 16 else "")
            self.complaints.report(
                f"{kind} messages",
                f"message {self.messages} ({len(content)} bytes, {preview}) did not decode: {reason}",
            )
            return
        self.decoded += 1
        if items is not None:
            self._emit(self._obis_block(items, dictionary))
        elif dictionary is not None and self.output_format == "json":
            self._emit_json(dictionary)
        if dictionary is not None:
            self._forward(dictionary)
        if self.output_format == "none":
            self._count()

    def dictionary(self, stream: str, dictionary: dict[str, Any]) -> None:
        """Take one message that a stream's own reader decoded (the MQTT source: a stream per topic)."""
        self.messages += 1
        self.decoded += 1
        if self.output_format == "json":
            self._emit_json(dictionary)
        self._forward(dictionary, stream)
        if self.output_format == "none":
            self._count()

    def _emit_json(self, dictionary: dict[str, Any]) -> None:
        """Print a message as one JSON line, stamped with the time it was received when the source is live."""
        shown = dictionary
        if self._stamp_received:
            shown = {**dictionary, "received": datetime.now().astimezone().isoformat(timespec="milliseconds")}
        self._emit(json.dumps(shown, default=_text, ensure_ascii=False))

    def _forward(self, dictionary: dict[str, Any], stream: str = "") -> None:
        """Hand a decoded message to InfluxDB and MQTT, when they are on."""
        if self._writer is not None and self._point_maker is not None:
            point = self._point_maker.make(dictionary)
            if point is not None:
                self._writer.add(point)
        if self._publisher is not None:
            self._publisher.add(dictionary, stream)

    def _obis_block(self, items: list[MeterItem], dictionary: dict[str, Any] | None) -> str:
        """Return one message as aligned lines: OBIS code, field name, value and unit of every item."""
        header = f"# message {self.messages} ({self._decoder.previous_success_decoder})"
        meter_time = (dictionary or {}).get(NEK_HAN_FIELD_METER_DATETIME)
        if meter_time is not None and all(item.name != NEK_HAN_FIELD_METER_DATETIME for item in items):
            header += f" sent {_text(meter_time)}"  # the time stamp of the notification, not an item
        values = [_text(item.value) for item in items]
        width = max((len(item.obis) for item in items), default=0)
        name_width = max((len(item.name or "") for item in items), default=0)
        value_width = max((len(value) for value in values), default=0)
        lines = [header]
        lines.extend(
            f"{item.obis:<{width}}  {item.name or '':<{name_width}}  {value:>{value_width}}"
            f" {item.unit or ''}".rstrip()
            for item, value in zip(items, values)
        )
        return "\n".join(lines) + "\n"

    def flush(self) -> None:
        """Flush what was printed."""
        self._stdout.flush()

    def _emit(self, text: str) -> None:
        self._stdout.write(text + "\n")
        if self._flush_each:
            self._stdout.flush()
        self._count()

    def _count(self) -> None:
        if self._limit is not None:
            self._limit -= 1
            if self._limit <= 0:
                self.finished.set()


class Progress:
    """A one-line progress bar on stderr for reading a file (only when stderr is a terminal).

    It shows bytes, frames, messages seen and decoded, the decoding rate and, for a file, the time left.
    """

    WIDTH = 30

    def __init__(self, stream: TextIO, total: int | None, sink: Sink) -> None:
        """Draw on ``stream`` for ``total`` bytes (None: unknown size), counting what ``sink`` saw."""
        self._stream = stream
        self._total = total
        self._sink = sink
        self._done = 0
        self._started = time.monotonic()
        self._next_draw = 0.0
        self._width = 0

    def advance(self, count: int) -> None:
        """Count bytes read and redraw, at most ten times a second."""
        self._done += count
        now = time.monotonic()
        if now >= self._next_draw:
            self._next_draw = now + 0.1
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw(time.monotonic())
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float) -> None:
        sink = self._sink
        elapsed = max(now - self._started, 1e-3)
        counts = (
            f"{self._done:,} bytes  {sink.frames} frames  {sink.messages} messages  {sink.decoded} decoded"
            f"  {sink.decoded / elapsed:,.0f}/s"
        )
        if self._total:
            share = min(1.0, self._done / self._total)
            filled = int(share * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            left = elapsed * (self._total - self._done) / self._done if self._done else None
            eta = "" if left is None else f"  {_duration(left)} left"
            line = f"[{bar}] {share * 100:5.1f}%  {counts}{eta}"
        else:
            line = counts
        self._stream.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self._stream.flush()


def _duration(seconds: float) -> str:
    """Return a duration as M:SS (or H:MM:SS)."""
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
