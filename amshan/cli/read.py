"""``amshan read``: read a meter or a capture, print each message (or frame), optionally to InfluxDB too."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, TextIO

from amshan.cli.formats import FORMATS, Sink
from amshan.cli.options import (
    EXIT_FAILURE,
    EXIT_OK,
    SERIAL_HELP,
    UsageError,
    add_common,
    add_influxdb_options,
    add_source,
)
from amshan.cli.sources import Source, make_writer, parse_source, read_live, read_recorded, stop_on_signals
from amshan.influxdb import InfluxDbWriter, PointMaker


def add_parser(commands: Any) -> None:
    """Add the ``read`` command to the subcommands of the parser."""
    read = commands.add_parser(
        "read",
        help="read a meter or a capture and print each message",
        description="Read a meter or a capture and print each message (or each frame).",
        epilog="Serial settings: " + SERIAL_HELP,
    )
    add_source(read)
    read.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="json: one JSON object per message (default); obis: every item by OBIS code with value and unit;"
        " frames: every HDLC frame with its addresses, control field and checks",
    )
    read.add_argument("--influxdb", dest="influxdb_url", metavar="URL", help="also write to InfluxDB at URL")
    read.add_argument("--database", help="InfluxDB database (with --influxdb)")
    add_influxdb_options(read)
    add_common(read)


async def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Read the source into stdout in the chosen format (and InfluxDB when asked); return the exit status."""
    source = parse_source(args.source)
    if args.hex and source.is_live:
        raise UsageError("--hex reads hex text from a file or stdin, not from a live meter")
    writer = None
    if args.influxdb_url is not None:
        if args.database is None:
            raise UsageError("--influxdb needs --database")
        writer = make_writer(args, args.influxdb_url, args.database)
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
    return await run_pipeline(source, args, sink, writer, stderr)


async def run_pipeline(
    source: Source, args: argparse.Namespace, sink: Sink, writer: InfluxDbWriter | None, stderr: TextIO
) -> int:
    """Feed the source to the sink until it ends, stops or times out; drain the writer; return the status."""
    stop = asyncio.Event()
    watchers: list[asyncio.Future[Any]] = [asyncio.ensure_future(sink.finished.wait())]
    if args.duration is not None:
        watchers.append(asyncio.ensure_future(asyncio.sleep(args.duration)))
    for watcher in watchers:
        watcher.add_done_callback(lambda _: stop.set())
    writer_task = asyncio.ensure_future(writer.run()) if writer is not None else None
    try:
        with stop_on_signals(stop):
            if source.is_live:
                await read_live(source, args, sink, stop)
            else:
                await read_recorded(source, args.hex, sink, stop, stderr)
    finally:
        for watcher in watchers:
            watcher.cancel()
    sink.flush()
    status = EXIT_OK
    if writer is not None and writer_task is not None:
        writer.stop()
        await writer_task
        if writer.pending or writer.dropped or writer.rejected:
            stderr.write(
                f"amshan: InfluxDB: {writer.written} points written, {writer.pending} not written,"
                f" {writer.dropped} dropped (buffer full), {writer.rejected} rejected by the server\n"
            )
            status = EXIT_FAILURE
        elif args.verbose:
            stderr.write(f"amshan: InfluxDB: {writer.written} points written\n")
    if not source.is_live and (args.verbose or sink.complaints.count):
        stderr.write(
            f"amshan: {sink.frames} frames ({sink.invalid_frames} invalid), {sink.messages} messages,"
            f" {sink.decoded} decoded\n"
        )
    return status
