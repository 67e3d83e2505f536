"""How ``amshan`` shows what it reads: JSON lines, OBIS item blocks or frame diagnoses, problems, progress."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date, datetime
from datetime import time as datetime_time
from typing import Any, TextIO

from amshan._ratelimit import LogLimiter
from amshan.autodecoder import AutoDecoder, MeterItem
from amshan.dlms import is_whole_apdu
from amshan.hdlc import HdlcFrame, HdlcMessageAssembler
from amshan.influxdb import InfluxDbWriter, PointMaker
from amshan.items import message_to_dict
from amshan.obis_map import NEK_HAN_FIELD_METER_DATETIME

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


class _Complaints:
    """Report problems with the input on stderr without flooding it: the first ten, then one a minute."""

    FIRST = 10

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._limiter = LogLimiter()
        self.count = 0

    def report(self, problem: str) -> None:
        """Print the problem now, or only count it when too many came recently."""
        self.count += 1
        if self.count > self.FIRST and not self._limiter.ready():
            return
        held_back = self._limiter.held_back if self.count > self.FIRST else 0
        suppressed = f" ({held_back} similar problems not shown)" if held_back else ""
        self._stream.write(f"amshan: {problem}{suppressed}\n")
        self._stream.flush()


class Sink:
    """Where frames and messages go: stdout in the chosen format, and/or an InfluxDB writer."""

    def __init__(
        self,
        output_format: str,
        *,
        stdout: TextIO,
        stderr: TextIO,
        writer: InfluxDbWriter | None = None,
        point_maker: PointMaker | None = None,
        flush_each: bool = False,
        limit: int | None = None,
    ) -> None:
        """Print in ``output_format`` (json, obis, frames or none); stop after ``limit`` items when set."""
        self.output_format = output_format
        self._stdout = stdout
        self._writer = writer
        self._point_maker = point_maker
        self._flush_each = flush_each
        self._limit = limit
        self._decoder = AutoDecoder()
        self._assembler = HdlcMessageAssembler(is_whole_apdu)
        self.complaints = _Complaints(stderr)
        self.frames = 0
        self.invalid_frames = 0
        self.messages = 0
        self.decoded = 0
        self.finished = asyncio.Event()

    @property
    def wants_frames(self) -> bool:
        """Return True when every frame (valid or not) is printed rather than the messages."""
        return self.output_format == "frames"

    def frame(self, frame: HdlcFrame) -> None:
        """Take one frame read from recorded bytes or a live frame connection."""
        self.frames += 1
        if not frame.is_valid:
            self.invalid_frames += 1
        if self.wants_frames:
            self._emit(f"frame {self.frames}: {describe_frame(frame)}")
            if self._writer is None:
                return
        elif not frame.is_valid:
            self.complaints.report(f"frame {self.frames} skipped: {describe_frame(frame).splitlines()[0]}")
        content = self._assembler.add(frame)
        if content:
            self.message(content)

    def message(self, content: bytes) -> None:
        """Take one message's content (the information field, segments joined): decode, print, forward."""
        self.messages += 1
        items = dictionary = None
        if self.output_format == "obis":  # one full decode: the items, and the dictionary made from them
            decoded = self._decoder.decode_message(content)
            if decoded is not None:
                items, dictionary = decoded.items, message_to_dict(decoded)
        elif self.output_format == "json" or self._writer is not None:
            dictionary = self._decoder.decode_frame_content(content)
        if (dictionary if items is None else items) is None:
            preview = content[:24].hex() + ("..." if len(content) > 24 else "")
            self.complaints.report(
                f"message {self.messages} ({len(content)} bytes) did not decode: {preview}"
            )
            return
        self.decoded += 1
        if items is not None:
            self._emit(self._obis_block(items, dictionary))
        elif dictionary is not None and self.output_format == "json":
            self._emit(json.dumps(dictionary, default=_text, ensure_ascii=False))
        if dictionary is not None and self._writer is not None and self._point_maker is not None:
            point = self._point_maker.make(dictionary)
            if point is not None:
                self._writer.add(point)
        if self.output_format == "none":
            self._count()

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
    """A one-line progress bar on stderr for reading a file (only when stderr is a terminal)."""

    WIDTH = 30

    def __init__(self, stream: TextIO, total: int | None, sink: Sink) -> None:
        self._stream = stream
        self._total = total
        self._sink = sink
        self._done = 0
        self._next_draw = 0.0

    def advance(self, count: int) -> None:
        """Count bytes read and redraw, at most ten times a second."""
        self._done += count
        now = time.monotonic()
        if now >= self._next_draw:
            self._next_draw = now + 0.1
            self._draw()

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw()
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self) -> None:
        counts = f"{self._done:,} bytes  {self._sink.frames} frames  {self._sink.messages} messages"
        if self._total:
            share = min(1.0, self._done / self._total)
            filled = int(share * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            line = f"[{bar}] {share * 100:5.1f}%  {counts}"
        else:
            line = counts
        self._stream.write("\r" + line)
        self._stream.flush()
