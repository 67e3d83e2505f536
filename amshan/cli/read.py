"""``amshan read``: read a meter or a capture, print each message (or frame), maybe to InfluxDB or MQTT."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable, TextIO

from amshan.cli.diagnose import describe_sample
from amshan.cli.formats import FORMATS, Sink, counted
from amshan.cli.options import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    SERIAL_HELP,
    UsageError,
    add_common,
    add_influxdb_options,
    add_keys,
    add_mqtt_publish_options,
    add_source,
    epilog,
    keys_of,
)
from amshan.cli.sources import (
    Capture,
    Reading,
    Source,
    make_publisher,
    make_writer,
    on_signals,
    parse_source,
    publisher_summary,
    read_live,
    read_mqtt,
    read_recorded,
    run_publisher,
    stop_watchers,
    until,
)
from amshan.influxdb import InfluxDbWriter, PointMaker

if TYPE_CHECKING:
    from amshan.mqtt import MqttPublisher


def add_parser(commands: Any) -> None:
    """Add the ``read`` command to the subcommands of the parser."""
    read = commands.add_parser(
        "read",
        help="read a meter or a capture and print each message",
        description="Read a meter or a capture and print each message (or each frame).",
        epilog=epilog("Serial settings: " + SERIAL_HELP),
    )
    add_source(read)
    read.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="json: one JSON object per message (default); obis: every item by OBIS code with value and unit;"
        " frames: every frame (HDLC, M-Bus, bare ciphered APDU) with its fields and checks, and the security"
        " header (system title, security control, invocation counter) of each ciphered message",
    )
    read.add_argument("--influxdb", dest="influxdb_url", metavar="URL", help="also write to InfluxDB at URL")
    read.add_argument("--database", help="InfluxDB database (with --influxdb)")
    read.add_argument(
        "--mqtt", dest="mqtt_url", metavar="BROKER_URL", help="also publish to MQTT (mqtt://HOST[:PORT])"
    )
    add_influxdb_options(read)
    add_keys(read)
    add_mqtt_publish_options(read, "--mqtt-max-buffer")
    add_common(read)


async def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Read the source into stdout in the chosen format (and InfluxDB when asked); return the exit status."""
    source = parse_source(args.source)
    encryption_key, authentication_key = keys_of(args)
    if args.hex and source.is_live:
        raise UsageError("--hex reads hex text from a file or stdin, not from a live meter")
    writer = None
    if args.influxdb_url is not None:
        if args.database is None:
            raise UsageError("--influxdb needs --database")
        writer = make_writer(args, args.influxdb_url, args.database)
    elif args.database is not None:
        raise UsageError("--database needs --influxdb URL")
    if source.kind == "mqtt" and args.format in ("obis", "frames"):
        raise UsageError(f"--format {args.format} reads serial, TCP or recorded sources; MQTT gives json")
    mqtt_url = getattr(args, "mqtt_url", None)
    publisher = make_publisher(mqtt_url, args) if mqtt_url is not None else None
    sink = Sink(
        args.format,
        stdout=stdout,
        stderr=stderr,
        writer=writer,
        point_maker=PointMaker(args.measurement, use_meter_time=not args.receive_time) if writer else None,
        publisher=publisher,
        flush_each=source.is_live,
        limit=args.count,
        encryption_key=encryption_key,
        authentication_key=authentication_key,
        stamp_received=source.is_live,
    )
    return await run_pipeline(source, args, sink, writer, stderr, publisher=publisher)


async def run_pipeline(
    source: Source,
    args: argparse.Namespace,
    sink: Sink,
    writer: InfluxDbWriter | None,
    stderr: TextIO,
    *,
    publisher: MqttPublisher | None = None,
) -> int:
    """Feed the source to the sink until it ends, stops or times out; drain the writers; return the status."""
    save = Capture(args.save) if args.save else None
    stop = asyncio.Event()
    watchers = stop_watchers(stop, sink, args.duration)
    writer_task = asyncio.ensure_future(writer.run()) if writer is not None else None
    publisher_task = None
    if publisher is not None:
        publisher_task = asyncio.ensure_future(run_publisher(publisher, stop))
    started = time.monotonic()
    try:
        with on_signals(stop.set):
            if source.kind == "mqtt":
                reading = await read_mqtt(source, args, sink.dictionary, stop, save=save, keys=sink.keys)
            elif source.is_live:
                reading = await read_live(source, args, sink, stop, stderr, save=save)
            else:
                reading = await read_recorded(source, args.hex, sink, stop, stderr, save=save)
    finally:
        for watcher in watchers:
            watcher.cancel()
        if save is not None:
            save.close()
    sink.flush()
    if publisher_task is not None and publisher_task.done():
        publisher_task.result()  # the broker could not be used at all: MqttUnavailable, said in one line
    status = _summarize(source, args, sink, reading, elapsed=time.monotonic() - started, stderr=stderr)
    if writer is not None and writer_task is not None:
        status = max(status, await _drain(writer, writer_task, args, stderr))
    if publisher is not None and publisher_task is not None:
        status = max(status, await _drain_publisher(publisher, publisher_task, args, stderr))
    return status


def _summarize(
    source: Source, args: argparse.Namespace, sink: Sink, reading: Reading, *, elapsed: float, stderr: TextIO
) -> int:
    """Print what the run saw when it had problems or decoded nothing; return the status that says so."""
    problems = sink.complaints.summary()
    if problems:
        stderr.write(f"amshan: {problems}\n")
    if source.kind == "mqtt":  # each topic's own reader frames and decodes: the sink sees the results only
        payloads = counted(reading.payloads, "payloads")
        counts = f"{reading.bytes_read:,} bytes in {payloads}, {sink.decoded} decoded"
    else:
        counts = (
            f"{reading.bytes_read:,} bytes, {sink.frames} frames ({sink.invalid_frames} invalid),"
            f" {sink.messages} messages, {sink.decoded} decoded"
        )
    span = f"within {args.duration:g} s" if args.duration is not None else f"in {elapsed:.0f} s"
    if source.is_live and not reading.connections:
        stderr.write(f"amshan: never connected to {source.name} {span}\n")
        return EXIT_FAILURE
    if not sink.succeeded:
        within = f" {span}" if source.is_live else ""
        hint = _hint(source, args, sink, reading)
        stderr.write(f"amshan: nothing decoded from {source.name}{within}: {counts}; {hint}\n")
        return EXIT_FAILURE
    if not source.is_live and (args.verbose or problems):
        stderr.write(f"amshan: {counts}\n")
    return EXIT_OK


def _hint(source: Source, args: argparse.Namespace, sink: Sink, reading: Reading) -> str:
    """Return what to try when a run decoded nothing, from what it did see."""
    kinds = sink.complaints.kinds
    if kinds.get("encrypted messages"):
        if sink.keys[0] is not None:
            return "the messages are encrypted and the keys given do not decrypt them: check the keys"
        return "the messages are encrypted: pass the meter's key"
    if kinds.get("unsupported messages"):
        return "the messages are in a format amshan does not read"
    if kinds.get("damaged messages"):
        return "the messages are damaged, or of a list no decoder knows"
    if source.kind == "serial":
        if not reading.bytes_read:
            return "nothing arrived: is the meter's HAN port enabled and the cable in?"
        return f"wrong serial settings? find them with: amshan probe {source.location}"
    if source.kind == "tcp":
        if not reading.bytes_read:
            return "nothing arrived: is the meter connected to the reader behind this port?"
        return "wrong serial settings in the reader behind this port (ser2net: try 2400 8E1 or 8N1)?"
    if source.kind == "mqtt":
        if not reading.payloads:
            return "nothing was published there: check the topic (+ and # are wildcards) and the bridge"
        return describe_sample(reading.sample, as_hex=True)  # hex payloads are told apart on their own
    return describe_sample(reading.sample, as_hex=args.hex)


async def _await_drain(
    task: asyncio.Future[None], waiting: Callable[[], str], started: str, stderr: TextIO
) -> bool:
    """Await a writer's drain, saying what it waits for; a 2nd Ctrl-C abandons it; return True if abandoned.

    ``started`` (said when not empty) tells what is waited for and how long; ``waiting()`` says what is still
    buffered when the first Ctrl-C comes.
    """
    abandon = asyncio.Event()
    interrupts = 0

    def interrupted() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            abandon.set()
            return
        stderr.write(f"amshan: still {waiting()}; press Ctrl-C again to abandon them\n")
        stderr.flush()

    with on_signals(interrupted):
        if started and not task.done():
            stderr.write(f"amshan: {started}\n")
            stderr.flush()
        await until(task, abandon)
    return abandon.is_set()


async def _drain(
    writer: InfluxDbWriter, writer_task: asyncio.Future[None], args: argparse.Namespace, stderr: TextIO
) -> int:
    """Write the buffered points (saying what is waited for), give up at a 2nd Ctrl-C; return the status."""
    url = args.influxdb_url
    writer.stop()
    started = ""
    if writer.pending:
        started = (
            f"writing {writer.pending} buffered points to InfluxDB at {url},"
            f" waiting up to {args.drain_timeout:g} s (--drain-timeout)"
        )
    if await _await_drain(
        writer_task, lambda: f"writing {writer.pending} points to InfluxDB at {url}", started, stderr
    ):
        stderr.write(f"amshan: abandoned {writer.pending} points not written to InfluxDB at {url}\n")
        return EXIT_INTERRUPTED
    if writer.pending or writer.dropped or writer.rejected:
        reason = _influx_reason(writer.last_error, args)
        stderr.write(
            f"amshan: InfluxDB at {url}: {writer.written} points written, {writer.pending} not written,"
            f" {writer.dropped} dropped (buffer full), {writer.rejected} rejected by the server{reason}\n"
        )
        return EXIT_FAILURE
    if args.verbose:
        stderr.write(f"amshan: InfluxDB: {writer.written} points written\n")
    return EXIT_OK


async def _drain_publisher(
    publisher: MqttPublisher, publisher_task: asyncio.Future[None], args: argparse.Namespace, stderr: TextIO
) -> int:
    """Publish the buffered messages (saying what is waited for), give up at a 2nd Ctrl-C; return status."""
    broker = publisher.broker
    publisher.stop()
    pending = publisher.outbox.pending_states
    started = ""
    if pending:
        started = (
            f"publishing {pending} buffered messages to the MQTT broker {broker},"
            f" waiting up to {publisher.drain_timeout:g} s"
        )
    if await _await_drain(
        publisher_task,
        lambda: f"publishing {publisher.outbox.pending_states} messages to the MQTT broker {broker}",
        started,
        stderr,
    ):
        stderr.write(
            f"amshan: abandoned {publisher.outbox.pending_states} messages not published to {broker}\n"
        )
        return EXIT_INTERRUPTED
    summary, lost = publisher_summary(publisher)
    if lost or args.verbose:
        stderr.write(f"amshan: {summary}\n")
    return EXIT_FAILURE if lost else EXIT_OK


def _influx_reason(error: str | None, args: argparse.Namespace) -> str:
    """Return "; why and what to do" for the last failed write, or ""."""
    if error is None:
        return ""
    if "database not found" in error:
        return (
            f"; the database {args.database!r} does not exist:"
            f" create it (influx -execute 'CREATE DATABASE {args.database}') and run again"
        )
    if "HTTP 401" in error or "HTTP 403" in error:
        return f"; the server refused the credentials ({error}): check --username/--password or --token"
    return f"; last error: {error}"
