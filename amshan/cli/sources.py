"""What ``amshan`` reads and writes: sources (serial, TCP, MQTT, file, stdin) and sinks (InfluxDB, MQTT)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import importlib
import logging
import os
import re
import signal
import socket
import stat
import sys
import threading
import types
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, TextIO

from amshan.cli.diagnose import SAMPLE_SIZE
from amshan.cli.formats import Progress, Sink
from amshan.cli.options import MqttUnavailable, UsageError, check_host
from amshan.influxdb import DRAIN_ENDED, InfluxDbWriter
from amshan.meter_connection import ConnectionManager, MeterTransportProtocol
from amshan.mqtt_core import BrokerUrl, Outbox, TopicReaders, parse_broker_url
from amshan.reader import MeterReader
from amshan.serial_connection_factory import create_serial_read_frame_connection
from amshan.simulator import parse_hex_line
from amshan.tcp_connection_factory import create_tcp_read_frame_connection

if TYPE_CHECKING:
    from amshan.mqtt import MqttPublisher, MqttSettings

_CHUNK_SIZE = 1 << 16
_QUEUE_SIZE = 1000
_MAX_HEX_LINE = 1 << 20
_TCP_SOURCE = re.compile(r"^tcp://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+)/?$")
_WINDOWS_PORT = re.compile(r"^COM\d+$", re.IGNORECASE)
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Source:
    """Where the bytes come from: ``kind`` is serial, tcp, mqtt, file or stdin."""

    kind: str
    location: str
    host: str = ""
    port: int = 0

    @property
    def is_live(self) -> bool:
        """Return True for a meter connection (serial, TCP, MQTT subscription), False for recorded bytes."""
        return self.kind in ("serial", "tcp", "mqtt")

    @property
    def name(self) -> str:
        """Return the source as messages name it: "serial port /dev/ttyUSB0", "host h port 3001", ..."""
        if self.kind == "tcp":
            return f"host {self.host} port {self.port}"
        if self.kind == "serial":
            return f"serial port {self.location}"
        if self.kind == "mqtt":
            return str(parse_broker_url(self.location))  # the URL without its password
        return "stdin" if self.kind == "stdin" else self.location


@dataclass
class Reading:
    """What reading a source found besides frames: the first bytes (recorded) or the connections (live)."""

    sample: bytes = b""
    connections: int = 0
    bytes_read: int = 0
    payloads: int = 0  # MQTT messages received (an mqtt:// source)


class SourceError(ConnectionError):
    """A live source that cannot be opened, in words naming it and what to do; the CLI has reported it."""


def parse_source(text: str) -> Source:
    """Tell a serial device, a ``tcp://HOST:PORT`` address, a capture file and ``-`` (stdin) apart."""
    if text == "-":
        return Source("stdin", text)
    if text.lower().startswith(("mqtt://", "mqtts://")):
        broker = broker_url(text, topic=True)
        return Source("mqtt", text, broker.host, broker.port)
    match = _TCP_SOURCE.match(text)
    if match:
        host, port = match["host"].strip("[]"), int(match["port"])
        if not 1 <= port <= 65535:
            raise UsageError(f"the port of {text} must be 1-65535, found {port}")
        check_host(host, port, text)
        return Source("tcp", text, host, port)
    if text.startswith("tcp:"):
        raise UsageError(f"expected tcp://HOST:PORT (e.g. tcp://192.168.1.10:3001), found {text!r}")
    if "://" in text:  # a pyserial URL: rfc2217://, socket://, loop://, ...
        return Source("serial", text)
    try:
        mode = os.stat(text).st_mode
    except OSError:
        if text.startswith("/dev/") or _WINDOWS_PORT.match(text):
            return Source("serial", text)  # a dongle not plugged in yet: the connection manager retries
        raise UsageError(
            f"no such file or device: {text}; give a capture file, a serial device, tcp://HOST:PORT or -"
        ) from None
    if stat.S_ISCHR(mode):
        return Source("serial", text)
    if stat.S_ISDIR(mode):
        raise UsageError(f"{text} is a folder: give a capture file or a device")
    return Source("file", text)


def _hex_item(number: int, line: bytes, raw: bytes) -> tuple[str, Any, bytes]:
    """Turn a line of hex text into a queue item: the frame's bytes (flags added if missing), or an error."""
    text = line.decode("utf-8", "replace")
    try:
        data = parse_hex_line(text)
    except ValueError:
        shown = "".join(c if c.isprintable() else "?" for c in text.strip()[:60])
        return ("error", f"line {number} is not hex, skipped: {shown}", raw)
    if data is None:
        data = b""
    elif data[:1] != b"\x7e" and data[-1:] != b"\x7e":
        data = b"\x7e" + data + b"\x7e"  # a frame published without its flags
    return ("data", data, raw)


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

    def items() -> Iterator[tuple[str, Any, bytes]]:
        """Yield (kind, payload, the raw bytes it came from): data and its bytes, or an error in words."""
        if not as_hex:
            for data in blocks():
                yield ("data", data, data)
            return
        pending = b""
        number = 0
        for data in blocks():
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                number += 1
                yield _hex_item(number, line, line + b"\n")
            if len(pending) > _MAX_HEX_LINE:
                yield ("error", f"line {number + 1} is longer than {_MAX_HEX_LINE} bytes, skipped", pending)
                pending = b""
        if pending:
            yield _hex_item(number + 1, pending, pending)

    def put(item: Any) -> None:
        slots.acquire()
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            try:
                for item in items():
                    put(item)
            except OSError as error:  # the stream failed: say so, then end as at end of file
                put(("error", f"reading failed: {error.strerror or error}", b""))
            put(None)
        except RuntimeError:  # the event loop has closed: nobody reads any more
            pass
        finally:
            if close:
                os.close(fd)

    threading.Thread(target=run, name="amshan-reader", daemon=True).start()
    return slots


async def read_recorded(
    source: Source,
    as_hex: bool,
    sink: Sink,
    stop: asyncio.Event,
    stderr: TextIO,
    *,
    save: Capture | None = None,
) -> Reading:
    """Read a capture file or stdin to its end (or until stopped), feeding every frame to the sink.

    The frames may be of any transport (HDLC, M-Bus, bare ciphered APDUs): MeterReader tells them apart.
    """
    if source.kind == "stdin":
        fd = sys.stdin.fileno()
        total = None
    else:
        try:
            fd = os.open(source.location, os.O_RDONLY)  # closed by the reader thread
        except OSError as error:
            raise UsageError(f"cannot read {source.location}: {error.strerror}") from None
        total = os.fstat(fd).st_size or None
    reading = Reading()
    progress = Progress(stderr, total, sink) if source.kind == "file" and stderr.isatty() else None
    queue: asyncio.Queue[Any] = asyncio.Queue()
    slots = _start_reader_thread(fd, source.kind == "file", as_hex, asyncio.get_running_loop(), queue)
    reader = MeterReader(*sink.keys)
    try:
        while not stop.is_set() and not sink.finished.is_set():
            item = await until(queue.get(), stop)
            if item is None:
                break
            slots.release()
            kind, payload, raw = item
            reading.bytes_read += len(raw)
            if save is not None:
                save.write(raw)
            if len(reading.sample) < SAMPLE_SIZE:
                reading.sample += raw[: SAMPLE_SIZE - len(reading.sample)]
            if kind == "error":
                sink.complaints.report("unreadable lines", str(payload))
            else:
                for frame in reader.read_frames(payload):
                    sink.frame(frame)
                    if sink.finished.is_set():
                        break
                    if sink.backlogged:  # a capture reads faster than MQTT publishes: wait, drop nothing
                        await until(sink.drained(), stop)
            if progress is not None:
                progress.advance(len(raw))
    finally:
        if progress is not None:
            progress.close()
    return reading


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


async def read_live(
    source: Source,
    args: argparse.Namespace,
    sink: Sink,
    stop: asyncio.Event,
    stderr: TextIO,
    *,
    save: Capture | None = None,
    managed: Callable[[ConnectionManager], None] | None = None,
) -> Reading:
    """Read a serial port or TCP stream (any transport) through the ConnectionManager until stopped.

    ``managed`` is given the manager before it connects (``serve`` reports its connections as health).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=_QUEUE_SIZE)
    connect: Callable[[], Awaitable[MeterTransportProtocol]]
    encryption_key, authentication_key = sink.keys
    if source.kind == "tcp":

        def connect() -> Awaitable[MeterTransportProtocol]:
            return create_tcp_read_frame_connection(
                queue,
                loop,
                source.host,
                source.port,
                encryption_key=encryption_key,
                authentication_key=authentication_key,
                drop=args.drop,
            )

    else:

        def connect() -> Awaitable[MeterTransportProtocol]:
            return create_serial_read_frame_connection(
                queue,
                loop,
                url=source.location,
                baudrate=args.baudrate,
                bytesize=args.bytesize,
                parity=args.parity,
                encryption_key=encryption_key,
                authentication_key=authentication_key,
                drop=args.drop,
            )

    reported = ""
    reading = Reading()

    def received(data: bytes) -> None:
        """Count (and save) the bytes of the live stream as they arrive."""
        reading.bytes_read += len(data)
        if save is not None:
            save.write(data)

    async def factory() -> MeterTransportProtocol:
        """Connect; say once in words why a connection fails, and tap the raw bytes for --save."""
        nonlocal reported
        try:
            transport, protocol = await connect()
        except Exception as error:
            words = explain_connect_error(source, args, error)
            if words != reported:
                reported = words
                stderr.write(f"amshan: {words}; retrying\n")
                stderr.flush()
            raise SourceError(words) from None
        if reported:
            stderr.write(f"amshan: connected to {source.name}\n")
            stderr.flush()
            reported = ""
        protocol.on_data = received
        return transport, protocol

    idle_timeout = args.idle_timeout if args.idle_timeout > 0 else None
    manager = ConnectionManager(factory, idle_timeout=idle_timeout)
    if managed is not None:
        managed(manager)
    connect_task = asyncio.ensure_future(manager.connect_loop())
    try:
        while not stop.is_set() and not sink.finished.is_set():
            item = await until(queue.get(), stop)
            if item is None:
                break
            sink.frame(item)
    finally:
        manager.close()
        await asyncio.wait({connect_task}, timeout=10)
        if not connect_task.done():
            connect_task.cancel()
    reading.connections = manager.connection_count
    return reading


def explain_connect_error(source: Source, args: argparse.Namespace, error: BaseException) -> str:
    """Return why a live source failed to open, naming it and saying what to do, in one line."""
    number = _errno(error)
    text = str(error)
    if source.kind == "serial":
        port = f"serial port {source.location}"
        if number == errno.ENOENT or "No such file or directory" in text:
            return f"cannot open {port}: no such device; check the name (`amshan probe` lists serial ports)"
        if number == errno.EACCES or "Permission denied" in text:
            return (
                f"cannot open {port}: permission denied; add your user to the dialout group and log in again"
            )
        if number == errno.EBUSY or "busy" in text.lower():
            return f"cannot open {port}: it is in use by another program; stop that program first"
        if refused_setting(error):
            setting = f"{args.baudrate} baud {args.bytesize}{args.parity}1"
            return (
                f"{port} refuses {setting}: it cannot do that setting; try another --baudrate or --parity,"
                f" or run `amshan probe {source.location}`"
            )
        return f"cannot open {port}: {error_words(error)}"
    where = source.name
    if isinstance(error, ConnectionRefusedError):
        return f"{where} refused the connection: check that ser2net (or the meter reader) listens there"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve host {source.host}: check the name, or give an IP address"
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return f"{where} does not answer: check the address and the network"
    return f"cannot connect to {where}: {error_words(error)}"


def refused_setting(error: BaseException) -> bool:
    """Return True when opening a serial port failed because it refuses the settings (EINVAL, e.g. a pty)."""
    text = str(error)
    return _errno(error) == errno.EINVAL or "Invalid argument" in text or "(22," in text


def _errno(error: BaseException) -> int | None:
    """Return the OS error number an exception carries (OSError.errno, or termios.error's first arg)."""
    number = getattr(error, "errno", None)
    if number is None and error.args and isinstance(error.args[0], int):  # termios.error(22, "...")
        number = error.args[0]
    return number if isinstance(number, int) and number > 0 else None


def error_words(error: BaseException) -> str:
    """Return an OS error's own words (without the [Errno N] prefix), or the exception's text."""
    number = _errno(error)
    if number:
        return os.strerror(number)
    words = getattr(error, "strerror", None)
    return str(words) if isinstance(words, str) and words else (str(error) or type(error).__name__)


class Capture:
    """The --save file: every byte read, appended exactly as received, written through at once."""

    def __init__(self, path: str) -> None:
        """Open ``path`` for appending; a file that cannot be opened is a usage error."""
        self.path = path
        try:
            self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        except OSError as error:
            raise UsageError(f"cannot write the --save file {path}: {error_words(error)}") from None
        self.written = 0

    def write(self, data: bytes) -> None:
        """Append the bytes."""
        self._file.write(data)
        self.written += len(data)

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class QuietReported(logging.Filter):
    """Leave out library records the command line reports itself, so each problem is said once."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for a connection error, an undecryptable message, the InfluxDB drain's end."""
        if record.name == "amshan.cipher" and record.levelno == logging.ERROR:  # each message is reported
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        return record.msg is not DRAIN_ENDED and not any(isinstance(arg, SourceError) for arg in args)


def stop_watchers(stop: asyncio.Event, sink: Sink, duration: float | None) -> list[asyncio.Future[Any]]:
    """Set ``stop`` once the sink has finished or ``duration`` seconds passed; cancel the result to stop."""
    watchers: list[asyncio.Future[Any]] = [asyncio.ensure_future(sink.finished.wait())]
    if duration is not None:
        watchers.append(asyncio.ensure_future(asyncio.sleep(duration)))
    for watcher in watchers:
        watcher.add_done_callback(lambda _: stop.set())
    return watchers


@contextlib.contextmanager
def on_signals(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` on Ctrl-C or SIGTERM while inside, so a command ends cleanly, not by an exception."""
    loop = asyncio.get_running_loop()
    for signal_number in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal_number, callback)
    try:
        yield
    finally:
        for signal_number in _STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal_number)


def make_writer(args: argparse.Namespace, url: str, database: str) -> InfluxDbWriter:
    """Open the InfluxDB writer the options describe (secrets may come from the environment).

    Like a tcp:// source, the URL's port and host are checked before anything starts.
    """
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UsageError(f"the port of the InfluxDB URL {url} must be 1-65535") from None
    if parts.hostname:
        check_host(parts.hostname, port, url)
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


# --- MQTT: the publisher sink and the mqtt:// source --------------------------------------------------------


def _mqtt() -> types.ModuleType:
    """Return amshan.mqtt, imported on first use: only MQTT commands need the ``mqtt`` extra."""
    try:
        return importlib.import_module("amshan.mqtt")
    except ImportError:
        raise MqttUnavailable("MQTT needs the mqtt extra: pip install 'amshan[mqtt]'") from None


def broker_url(text: str, *, topic: bool) -> BrokerUrl:
    """Parse a broker URL that must (a source) or must not (a publisher) name a topic; check its host."""
    try:
        broker = parse_broker_url(text)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if topic and not broker.topic:
        raise UsageError(f"expected mqtt://HOST[:PORT]/TOPIC to read, found {broker}")
    if not topic and broker.topic:
        raise UsageError(f"expected a broker URL without a topic, found {broker}")
    check_host(broker.host, broker.port, str(broker))
    return broker


def settings(broker: BrokerUrl, args: argparse.Namespace) -> MqttSettings:
    """Return the connection settings of a broker, the password from AMSHAN_MQTT_PASSWORD if not in it."""
    mqtt = _mqtt()
    password = os.environ.get("AMSHAN_MQTT_PASSWORD")
    if broker.password is None and password is not None:
        broker = dataclasses.replace(broker, username=broker.username or "", password=password)
    if args.ca_file is not None and not broker.tls:
        raise UsageError(f"--ca-file is for mqtts:// brokers, found {broker}")
    result: MqttSettings = mqtt.MqttSettings(broker, ca_file=args.ca_file)
    return result


def make_publisher(url: str, args: argparse.Namespace) -> MqttPublisher:
    """Return the publisher of ``--mqtt URL`` / ``forward-mqtt SOURCE URL`` with the command's options."""
    mqtt_settings = settings(broker_url(url, topic=False), args)
    outbox = Outbox(
        topic_prefix=args.topic_prefix,
        discovery_prefix=None if args.no_discovery else args.discovery_prefix,
        max_buffer=args.mqtt_max_buffer,
    )
    publisher: MqttPublisher = _mqtt().MqttPublisher(mqtt_settings, outbox, qos=args.qos)
    return publisher


async def run_publisher(publisher: MqttPublisher, stop: asyncio.Event) -> None:
    """Run the publisher; when the broker cannot be used at all, stop the command and say why."""
    try:
        await publisher.run()
    except _mqtt().BrokerError as error:
        stop.set()
        raise MqttUnavailable(str(error)) from None


def publisher_summary(publisher: MqttPublisher) -> tuple[str, bool]:
    """Return the publisher's counts as one line, and whether anything was lost (dropped or not sent)."""
    outbox = publisher.outbox
    lost = bool(outbox.dropped or outbox.pending_states)
    return (
        f"MQTT: {outbox.added} messages queued, {publisher.published} published (with the discovery configs),"
        f" {outbox.pending_states} not published, {outbox.dropped} dropped (buffer full),"
        f" {outbox.unidentified} skipped before the meter named itself",
        lost,
    )


async def read_mqtt(
    source: Source,
    args: argparse.Namespace,
    deliver: Callable[[str, Dict[str, Any]], None],
    stop: asyncio.Event,
    *,
    save: Capture | None = None,
    keys: tuple[bytes | None, bytes | None] = (None, None),
) -> Reading:
    """Subscribe to ``mqtt://HOST[:PORT]/TOPIC`` and deliver each topic's decoded messages until stopped.

    Each topic's MeterReader holds the meter's ``keys`` (encryption, authentication; None when plain).
    The stream bytes of every payload (hex text as the bytes it spells) are counted, and appended to the
    ``--save`` file in arrival order, so ``amshan read FILE`` replays them.
    """
    mqtt_settings = settings(parse_broker_url(source.location), args)
    reading = Reading()

    def received(data: bytes) -> None:
        """Count (and save) the bytes each payload carries, and keep the first for the run's summary."""
        reading.bytes_read += len(data)
        if len(reading.sample) < SAMPLE_SIZE:
            reading.sample += data[: SAMPLE_SIZE - len(reading.sample)]
        if save is not None:
            save.write(data)

    readers = TopicReaders(new_reader=lambda: MeterReader(*keys))
    readers.on_data = received
    mqtt = _mqtt()
    try:
        subscription = mqtt.MqttSource(
            mqtt_settings,
            mqtt_settings.broker.topic,
            share_group=args.share_group,
            qos=args.source_qos,
            readers=readers,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    task = asyncio.ensure_future(subscription.run(deliver))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        subscription.stop()
        await asyncio.wait({task}, timeout=10)
    reading.connections = subscription.connections
    reading.payloads = readers.payloads
    if not task.done():
        task.cancel()
        return reading
    try:
        task.result()
    except mqtt.BrokerError as error:
        raise MqttUnavailable(str(error)) from None
    return reading
