"""The ``amshan`` command: read a meter (serial, TCP, file, stdin), print it, or forward it to InfluxDB.

Subcommands: ``read`` (print each message as JSON, as OBIS items, or each HDLC frame), ``forward-influxdb``,
``demo`` (a simulated meter read through the real TCP connection and ConnectionManager) and ``simulate``
(the simulated meter alone). Run ``amshan --help`` or ``amshan COMMAND --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import stat
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as datetime_time
from typing import Any, Optional, TextIO

from amshan import __version__
from amshan._ratelimit import LogLimiter
from amshan.autodecoder import AutoDecoder, MeterItem
from amshan.generic import message_to_dict
from amshan.hdlc import HdlcFrame, HdlcFrameReader, HdlcMessageAssembler
from amshan.influxdb import DEFAULT_MAX_BUFFER, DEFAULT_MEASUREMENT, InfluxDbWriter, PointMaker
from amshan.meter_connection import ConnectionManager, MeterTransportProtocol
from amshan.obis_map import NEK_HAN_FIELD_METER_DATETIME
from amshan.serial_connection_factory import (
    create_serial_frame_connection,
    create_serial_frame_content_connection,
)
from amshan.simulator import DEFAULT_INTERVAL, METERS, MeterSimulator, bundled_frames, parse_hex_line
from amshan.tcp_connection_factory import create_tcp_frame_connection, create_tcp_frame_content_connection

DEFAULT_IDLE_TIMEOUT = 60.0  # meters push at least every 10 s; a minute of silence means a dead link
DEFAULT_DEMO_DURATION = 6.0
DEFAULT_DEMO_INTERVAL = 0.5
_CHUNK_SIZE = 1 << 16
_QUEUE_SIZE = 1000
_TCP_SOURCE = re.compile(r"^tcp://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+)/?$")
_WINDOWS_PORT = re.compile(r"^COM\d+$", re.IGNORECASE)
_EXIT_OK = 0
_EXIT_FAILURE = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130

SERIAL_HELP = "Aidon and Kaifa send 2400 baud 8E1 (--parity E); Kamstrup sends 2400 baud 8N1 (--parity N)."


class UsageError(Exception):
    """A command line that cannot work (bad source, option combination); reported without a traceback."""


# --- sources ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where the bytes come from: ``kind`` is serial, tcp, file or stdin."""

    kind: str
    location: str
    host: str = ""
    port: int = 0

    @property
    def is_live(self) -> bool:
        """Return True for a meter connection (serial or TCP), False for recorded bytes."""
        return self.kind in ("serial", "tcp")


def parse_source(text: str) -> Source:
    """Tell a serial device, a ``tcp://HOST:PORT`` address, a capture file and ``-`` (stdin) apart."""
    if text == "-":
        return Source("stdin", text)
    match = _TCP_SOURCE.match(text)
    if match:
        return Source("tcp", text, match["host"].strip("[]"), int(match["port"]))
    if text.startswith("tcp:"):
        raise UsageError(f"expected tcp://HOST:PORT, found {text!r}")
    if "://" in text:  # a pyserial URL: rfc2217://, socket://, loop://, ...
        return Source("serial", text)
    try:
        mode = os.stat(text).st_mode
    except OSError:
        if text.startswith("/dev/") or _WINDOWS_PORT.match(text):
            return Source("serial", text)  # a dongle not plugged in yet: the connection manager retries
        raise UsageError(f"no such file or device: {text!r}") from None
    if stat.S_ISCHR(mode):
        return Source("serial", text)
    if stat.S_ISDIR(mode):
        raise UsageError(f"expected a file or a device, found the folder {text!r}")
    return Source("file", text)


# --- output -------------------------------------------------------------------------------------------------


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
        self._assembler = HdlcMessageAssembler()
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


class _Progress:
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


# --- reading ------------------------------------------------------------------------------------------------


_MAX_HEX_LINE = 1 << 20


def _hex_item(number: int, line: bytes) -> tuple[str, Any, int]:
    """Turn a line of hex text into a queue item: the frame's bytes (flags added if missing), or an error."""
    try:
        data = parse_hex_line(line.decode("ascii", "replace"))
    except ValueError:
        return ("error", f"line {number} is not hex: {line[:60]!r}", len(line) + 1)
    if data is None:
        data = b""
    elif data[:1] != b"\x7e" and data[-1:] != b"\x7e":
        data = b"\x7e" + data + b"\x7e"  # a frame published without its flags
    return ("data", data, len(line) + 1)


def _start_reader_thread(
    fd: int, close: bool, as_hex: bool, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]
) -> threading.Semaphore:
    """Read a file descriptor in a daemon thread, so a blocked stdin never stalls the loop or the exit.

    The thread uses os.read, not a buffered stream: a daemon thread blocked inside sys.stdin's buffer would
    hold its lock at interpreter shutdown. Items go on ``queue``; before each one the thread waits for a slot
    of the returned semaphore, and the reader releases a slot for every item it takes (four in flight).
    """
    slots = threading.Semaphore(4)

    def blocks() -> Iterator[bytes]:
        while True:
            data = os.read(fd, _CHUNK_SIZE)
            if not data:
                return
            yield data

    def items() -> Iterator[tuple[str, Any, int]]:
        if not as_hex:
            for data in blocks():
                yield ("data", data, len(data))
            return
        pending = b""
        number = 0
        for data in blocks():
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                number += 1
                yield _hex_item(number, line)
            if len(pending) > _MAX_HEX_LINE:
                yield ("error", f"line {number + 1} is longer than {_MAX_HEX_LINE} bytes: skipped", 0)
                pending = b""
        if pending.strip():
            yield _hex_item(number + 1, pending)

    def put(item: Any) -> None:
        slots.acquire()
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            try:
                for item in items():
                    put(item)
            except OSError as error:  # the stream failed: say so, then end as at end of file
                put(("error", f"reading failed: {error}", 0))
            put(None)
        except RuntimeError:  # the event loop has closed: nobody reads any more
            pass
        finally:
            if close:
                os.close(fd)

    threading.Thread(target=run, name="amshan-reader", daemon=True).start()
    return slots


async def read_recorded(
    source: Source, as_hex: bool, sink: Sink, stop: asyncio.Event, stderr: TextIO
) -> None:
    """Read a capture file or stdin to its end (or until stopped), feeding every frame to the sink."""
    if source.kind == "stdin":
        fd = sys.stdin.fileno()
        total = None
    else:
        try:
            fd = os.open(source.location, os.O_RDONLY)  # closed by the reader thread
        except OSError as error:
            raise UsageError(f"cannot read {source.location!r}: {error.strerror}") from None
        total = os.fstat(fd).st_size or None
    progress = _Progress(stderr, total, sink) if source.kind == "file" and stderr.isatty() else None
    queue: asyncio.Queue[Any] = asyncio.Queue()
    slots = _start_reader_thread(fd, source.kind == "file", as_hex, asyncio.get_running_loop(), queue)
    reader = HdlcFrameReader()
    try:
        while not stop.is_set() and not sink.finished.is_set():
            item = await _until(queue.get(), stop)
            if item is None:
                break
            slots.release()
            kind, payload, size = item
            if kind == "error":
                sink.complaints.report(str(payload))
            else:
                for frame in reader.read(payload):
                    sink.frame(frame)
                    if sink.finished.is_set():
                        break
            if progress is not None:
                progress.advance(size)
    finally:
        if progress is not None:
            progress.close()


async def _until(awaitable: Awaitable[Any], stop: asyncio.Event) -> Any:
    """Await the awaitable unless ``stop`` is set first (then return None)."""
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None


async def read_live(source: Source, args: argparse.Namespace, sink: Sink, stop: asyncio.Event) -> None:
    """Read a serial port or TCP stream through the ConnectionManager until stopped."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=_QUEUE_SIZE)
    factory: Callable[[], Awaitable[MeterTransportProtocol]]
    if source.kind == "tcp":
        create_tcp = create_tcp_frame_connection if sink.wants_frames else create_tcp_frame_content_connection

        def factory() -> Awaitable[MeterTransportProtocol]:
            return create_tcp(queue, loop, source.host, source.port)

    else:
        create_serial = (
            create_serial_frame_connection if sink.wants_frames else create_serial_frame_content_connection
        )

        def factory() -> Awaitable[MeterTransportProtocol]:
            return create_serial(queue, loop, url=source.location, baudrate=args.baudrate, parity=args.parity)

    idle_timeout = args.idle_timeout if args.idle_timeout > 0 else None
    manager = ConnectionManager(factory, idle_timeout=idle_timeout)
    connect_task = asyncio.ensure_future(manager.connect_loop())
    try:
        while not stop.is_set() and not sink.finished.is_set():
            item = await _until(queue.get(), stop)
            if item is None:
                break
            if isinstance(item, HdlcFrame):
                sink.frame(item)
            else:
                sink.message(item)
    finally:
        manager.close()
        await asyncio.wait({connect_task}, timeout=10)
        if not connect_task.done():
            connect_task.cancel()


# --- commands -----------------------------------------------------------------------------------------------


def _make_writer(args: argparse.Namespace, url: str, database: str) -> InfluxDbWriter:
    try:
        return InfluxDbWriter(
            url,
            database,
            retention_policy=args.retention_policy,
            username=args.username,
            password=os.environ.get("AMSHAN_INFLUXDB_PASSWORD") if args.password is None else args.password,
            token=os.environ.get("AMSHAN_INFLUXDB_TOKEN") if args.token is None else args.token,
            batch_size=args.batch_size,
            flush_interval=args.flush_interval,
            max_buffer=args.max_buffer,
            drain_timeout=args.drain_timeout,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


async def _run_read(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    source = parse_source(args.source)
    if args.hex and source.is_live:
        raise UsageError("--hex reads hex text from a file or stdin, not from a live meter")
    writer = None
    if args.influxdb_url is not None:
        if args.database is None:
            raise UsageError("--influxdb needs --database")
        writer = _make_writer(args, args.influxdb_url, args.database)
    elif args.database is not None:
        raise UsageError("--database needs --influxdb URL")
    sink = Sink(
        args.format,
        stdout=stdout,
        stderr=stderr,
        writer=writer,
        point_maker=PointMaker(args.measurement, use_meter_time=not args.receive_time) if writer else None,
        flush_each=source.is_live,
        limit=args.count,
    )
    return await _run_pipeline(source, args, sink, writer, stderr)


async def _run_pipeline(
    source: Source, args: argparse.Namespace, sink: Sink, writer: InfluxDbWriter | None, stderr: TextIO
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal_number, stop.set)
    watchers: list[asyncio.Future[Any]] = [asyncio.ensure_future(sink.finished.wait())]
    if args.duration is not None:
        watchers.append(asyncio.ensure_future(asyncio.sleep(args.duration)))
    for watcher in watchers:
        watcher.add_done_callback(lambda _: stop.set())
    writer_task = asyncio.ensure_future(writer.run()) if writer is not None else None
    try:
        if source.is_live:
            await read_live(source, args, sink, stop)
        else:
            await read_recorded(source, args.hex, sink, stop, stderr)
    finally:
        for watcher in watchers:
            watcher.cancel()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal_number)
    sink.flush()
    status = _EXIT_OK
    if writer is not None and writer_task is not None:
        writer.stop()
        await writer_task
        if writer.pending or writer.dropped or writer.rejected:
            stderr.write(
                f"amshan: InfluxDB: {writer.written} points written, {writer.pending} not written,"
                f" {writer.dropped} dropped (buffer full), {writer.rejected} rejected by the server\n"
            )
            status = _EXIT_FAILURE
        elif args.verbose:
            stderr.write(f"amshan: InfluxDB: {writer.written} points written\n")
    if not source.is_live and (args.verbose or sink.complaints.count):
        stderr.write(
            f"amshan: {sink.frames} frames ({sink.invalid_frames} invalid), {sink.messages} messages,"
            f" {sink.decoded} decoded\n"
        )
    return status


async def _run_demo(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    frames = bundled_frames("all")
    async with MeterSimulator(frames, interval=args.interval) as simulator:
        address = f"tcp://{simulator.host}:{simulator.port}"
        stderr.write(
            f"amshan demo: a simulated meter on {address} replays {len(frames)} real frames"
            f" (Aidon, Kaifa, Kamstrup) every {args.interval:g} s;\n"
            f"amshan demo: reading it for {args.duration:g} s with: amshan read {address}"
            f" --format {args.format}\n"
        )
        stderr.flush()
        args.source = address
        args.hex = False
        args.influxdb_url = None
        args.database = None
        args.count = None
        args.idle_timeout = DEFAULT_IDLE_TIMEOUT
        sink = Sink(args.format, stdout=stdout, stderr=stderr, flush_each=True)
        await _run_pipeline(parse_source(address), args, sink, None, stderr)
    stderr.write(f"amshan demo: {sink.decoded} messages decoded from {sink.messages} received\n")
    return _EXIT_OK if sink.decoded else _EXIT_FAILURE


async def _run_simulate(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    frames = bundled_frames(args.meter)
    who = "Aidon, Kaifa and Kamstrup" if args.meter == "all" else args.meter.capitalize()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal_number, stop.set)
    async with MeterSimulator(
        frames, host=args.host, port=args.port, interval=args.interval, repeat=not args.once
    ) as simulator:
        stdout.write(f"amshan simulate: listening on tcp://{simulator.host}:{simulator.port}\n")
        stdout.write(
            f"amshan simulate: each client gets {len(frames)} real {who} frames,"
            f" one every {args.interval:g} s{', once' if args.once else ', in a loop'}; Ctrl-C stops\n"
        )
        stdout.flush()
        if args.duration is not None:
            await _until(asyncio.sleep(args.duration), stop)
        else:
            await stop.wait()
    return _EXIT_OK


# --- argument parsing ---------------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, found {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, found {text}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a serial device (/dev/ttyUSB0, COM3, rfc2217://...), tcp://HOST:PORT (ser2net, ESP readers),"
        " a capture file of raw bytes, or - for stdin",
    )
    group = parser.add_argument_group("serial port", SERIAL_HELP)
    group.add_argument("--baudrate", type=int, default=2400, help="baud rate (default 2400)")
    group.add_argument(
        "--parity", choices=("N", "E", "O"), default="N", help="parity: N none (default), E even, O odd"
    )
    live = parser.add_argument_group("live meters (serial and TCP)")
    live.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="reconnect when no valid frame came for this long (default %(default)g; 0 turns it off)",
    )
    recorded = parser.add_argument_group("files and stdin")
    recorded.add_argument(
        "--hex", action="store_true", help="the input is hex text, one frame per line (spaces allowed)"
    )
    parser.add_argument("--duration", type=_positive_float, metavar="SECONDS", help="stop after this long")
    parser.add_argument("--count", type=_positive_int, metavar="N", help="stop after N messages (or frames)")


def _add_influxdb_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("InfluxDB")
    group.add_argument("--measurement", default=DEFAULT_MEASUREMENT, help="measurement (default %(default)s)")
    group.add_argument("--retention-policy", metavar="RP", help="retention policy (default: the database's)")
    group.add_argument("--username", help="user name (InfluxDB 1.x, or 2.x v1 authorization)")
    group.add_argument("--password", help="password (or set AMSHAN_INFLUXDB_PASSWORD)")
    group.add_argument("--token", help="InfluxDB 2.x API token (or set AMSHAN_INFLUXDB_TOKEN)")
    group.add_argument(
        "--receive-time",
        action="store_true",
        help="stamp points with the time they were received instead of the meter's clock",
    )
    group.add_argument("--batch-size", type=_positive_int, default=500, help="points per write (default 500)")
    group.add_argument(
        "--flush-interval",
        type=_positive_float,
        default=5.0,
        metavar="SECONDS",
        help="write at least this often (default 5)",
    )
    group.add_argument(
        "--max-buffer",
        type=_positive_int,
        default=DEFAULT_MAX_BUFFER,
        metavar="POINTS",
        help="points kept while InfluxDB is unreachable; beyond this the oldest are dropped"
        " (default %(default)d)",
    )
    group.add_argument(
        "--drain-timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="when stopping, keep trying to write buffered points this long (default 30)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``amshan`` command line."""
    parser = argparse.ArgumentParser(
        prog="amshan",
        description="Read and decode the HAN port of smart electricity meters (Aidon, Kaifa, Kamstrup and"
        " other DLMS/COSEM meters that push OBIS lists).",
        epilog="Serial settings: " + SERIAL_HELP + " Try `amshan demo` first: it needs no meter.",
    )
    parser.add_argument("--version", action="version", version=f"amshan {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    read = commands.add_parser(
        "read",
        help="read a meter or a capture and print each message",
        description="Read a meter or a capture and print each message (or each frame).",
        epilog="Serial settings: " + SERIAL_HELP,
    )
    _add_source(read)
    read.add_argument(
        "--format",
        choices=("json", "obis", "frames"),
        default="json",
        help="json: one JSON object per message (default); obis: every item by OBIS code with value and unit;"
        " frames: every HDLC frame with its addresses, control field and checks",
    )
    read.add_argument("--influxdb", dest="influxdb_url", metavar="URL", help="also write to InfluxDB at URL")
    read.add_argument("--database", help="InfluxDB database (with --influxdb)")
    _add_influxdb_options(read)
    _add_common(read)

    forward = commands.add_parser(
        "forward-influxdb",
        help="forward a meter's messages to InfluxDB",
        description="Write every message as an InfluxDB point (HTTP /write: InfluxDB 1.x, or 2.x's v1 API):"
        " one measurement, a float field per numeric value, tags meter_id and manufacturer, the meter's"
        " own timestamp when it sends one. Batches writes, retries with back-off while the database is down.",
        epilog="Serial settings: " + SERIAL_HELP,
    )
    _add_source(forward)
    forward.add_argument("influxdb_url", metavar="URL", help="InfluxDB base URL, e.g. http://localhost:8086")
    forward.add_argument("database", metavar="DATABASE", help="database (InfluxDB 2.x: a mapped bucket)")
    _add_influxdb_options(forward)
    _add_common(forward)

    demo = commands.add_parser(
        "demo",
        help="read a simulated meter for a few seconds (no hardware needed)",
        description="Start a simulated meter on 127.0.0.1 that replays real Aidon, Kaifa and Kamstrup frames,"
        " read it through the TCP connection factory and the ConnectionManager, print what it decodes.",
    )
    demo.add_argument(
        "--format", choices=("json", "obis", "frames"), default="obis", help="output format (default obis)"
    )
    demo.add_argument(
        "--duration", type=_positive_float, default=DEFAULT_DEMO_DURATION, help="seconds to run (default 6)"
    )
    demo.add_argument(
        "--interval",
        type=_positive_float,
        default=DEFAULT_DEMO_INTERVAL,
        help="seconds between frames (default 0.5)",
    )
    _add_common(demo)

    simulate = commands.add_parser(
        "simulate",
        help="run the simulated meter: a TCP server pushing real captured frames",
        description="A TCP server that behaves like a meter behind ser2net: every client receives real"
        " captured frames. Read it with: amshan read tcp://HOST:PORT",
    )
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    simulate.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    simulate.add_argument(
        "--meter", choices=(*METERS, "all"), default="all", help="whose frames to send (default all)"
    )
    simulate.add_argument(
        "--interval",
        type=_positive_float,
        default=DEFAULT_INTERVAL,
        help=f"seconds between frames (default {DEFAULT_INTERVAL:g})",
    )
    simulate.add_argument(
        "--once", action="store_true", help="close each connection after the last frame instead of looping"
    )
    simulate.add_argument("--duration", type=_positive_float, metavar="SECONDS", help="stop after this long")
    _add_common(simulate)
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], Coroutine[Any, Any, int]]] = {
    "read": _run_read,
    "forward-influxdb": _run_read,
    "demo": _run_demo,
    "simulate": _run_simulate,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``amshan`` command line; return the exit status (0 ok, 1 failure, 2 usage, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    if args.command == "forward-influxdb":
        args.format = "none"
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format=("%(asctime)s " if args.verbose else "") + "%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(_COMMANDS[args.command](args, sys.stdout, sys.stderr))
    except UsageError as error:
        sys.stderr.write(f"amshan: {error}\n")
        return _EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C while buffered points were being written
        return _EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (amshan read ... | head)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _EXIT_OK
