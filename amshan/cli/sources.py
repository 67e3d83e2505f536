"""Where ``amshan`` reads and writes: parse and open sources (serial, TCP, file, stdin), sinks (InfluxDB)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import stat
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from amshan.cli.formats import Progress, Sink
from amshan.cli.options import UsageError
from amshan.hdlc import HdlcFrame, HdlcFrameReader
from amshan.influxdb import InfluxDbWriter
from amshan.meter_connection import ConnectionManager, MeterTransportProtocol
from amshan.serial_connection_factory import (
    create_serial_frame_connection,
    create_serial_frame_content_connection,
)
from amshan.simulator import parse_hex_line
from amshan.tcp_connection_factory import create_tcp_frame_connection, create_tcp_frame_content_connection

_CHUNK_SIZE = 1 << 16
_QUEUE_SIZE = 1000
_MAX_HEX_LINE = 1 << 20
_TCP_SOURCE = re.compile(r"^tcp://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+)/?$")
_WINDOWS_PORT = re.compile(r"^COM\d+$", re.IGNORECASE)
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
    progress = Progress(stderr, total, sink) if source.kind == "file" and stderr.isatty() else None
    queue: asyncio.Queue[Any] = asyncio.Queue()
    slots = _start_reader_thread(fd, source.kind == "file", as_hex, asyncio.get_running_loop(), queue)
    reader = HdlcFrameReader()
    try:
        while not stop.is_set() and not sink.finished.is_set():
            item = await until(queue.get(), stop)
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


async def until(awaitable: Awaitable[Any], stop: asyncio.Event) -> Any:
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
            return create_tcp(queue, loop, source.host, source.port, drop=args.drop)

    else:
        create_serial = (
            create_serial_frame_connection if sink.wants_frames else create_serial_frame_content_connection
        )

        def factory() -> Awaitable[MeterTransportProtocol]:
            return create_serial(
                queue, loop, url=source.location, baudrate=args.baudrate, parity=args.parity, drop=args.drop
            )

    idle_timeout = args.idle_timeout if args.idle_timeout > 0 else None
    manager = ConnectionManager(factory, idle_timeout=idle_timeout)
    connect_task = asyncio.ensure_future(manager.connect_loop())
    try:
        while not stop.is_set() and not sink.finished.is_set():
            item = await until(queue.get(), stop)
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


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` on Ctrl-C or SIGTERM while inside, so a command ends cleanly, not by an exception."""
    loop = asyncio.get_running_loop()
    for signal_number in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal_number, stop.set)
    try:
        yield
    finally:
        for signal_number in _STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal_number)


def make_writer(args: argparse.Namespace, url: str, database: str) -> InfluxDbWriter:
    """Open the InfluxDB writer the options describe (secrets may come from the environment)."""
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
