"""``amshan serve``: a live web page of the meter (or of a capture's whole history), a JSON API, /metrics.

The source is opened as ``amshan read`` opens it; every frame it yields goes to the web hub's MeterReader.
A capture file is read to its end before the page is served, so the page opens on the whole recording.
Needs the ``web`` extra (aiohttp, prometheus_client).
"""

from __future__ import annotations

import argparse
import asyncio
import io
from typing import TYPE_CHECKING, Any, TextIO

from amshan.cli.formats import Sink
from amshan.cli.options import (
    EXIT_FAILURE,
    EXIT_OK,
    SERIAL_HELP,
    UsageError,
    add_common,
    add_keys,
    add_source,
    epilog,
    keys_of,
)
from amshan.cli.sources import (
    Capture,
    Source,
    on_signals,
    parse_source,
    read_live,
    read_recorded,
    stop_watchers,
)
from amshan.hdlc import HdlcFrame
from amshan.reader import MeterReader, ReadFrame

if TYPE_CHECKING:
    from amshan.web import MeterHub

DEFAULT_PORT = 8080
RECORDING_SAMPLES = 250_000  # messages of a capture kept per meter (~400 bytes each): a week at one per 2.5 s


def add_web_options(parser: argparse.ArgumentParser, port: int = DEFAULT_PORT) -> None:
    """Add where the page listens and where its history is kept (``serve`` and ``demo --serve``)."""
    group = parser.add_argument_group("web page")
    group.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for the whole network)",
    )
    group.add_argument("--port", type=int, default=port, help=f"TCP port (default {port}; 0: any free port)")
    group.add_argument(
        "--history",
        metavar="FILE",
        help="keep the charts' history in this SQLite file, so a restart keeps them (default: in memory)",
    )


def add_parser(commands: Any) -> None:
    """Add the ``serve`` command to the subcommands of the parser."""
    serve = commands.add_parser(
        "serve",
        help="show a meter (or a capture) on a live web page, with a JSON API and Prometheus /metrics",
        description="Serve a web page of the meter: power now, per phase, the last hour's power, energy per"
        " hour for 48 hours, the meter's identity and the connection's health, updated as each message"
        " arrives; /api/latest, /api/history and /api/health in JSON; /metrics for Prometheus. A capture"
        " file is read first and shown whole. Needs: pip install 'amshan[web]'.",
        epilog=epilog("Serial settings: " + SERIAL_HELP),
    )
    add_source(serve)
    add_web_options(serve)
    add_keys(serve)
    add_common(serve)


class HubSink(Sink):
    """Hand every frame the source yields to the web hub, whose MeterReader decodes it; print nothing."""

    def __init__(
        self, hub: MeterHub, stderr: TextIO, limit: int | None, keys: tuple[bytes | None, bytes | None]
    ) -> None:
        """Feed ``hub`` (its reader holds the same keys); finish after ``limit`` decoded messages if set."""
        super().__init__(
            "none", stdout=io.StringIO(), stderr=stderr, encryption_key=keys[0], authentication_key=keys[1]
        )
        self.hub = hub
        self._message_limit = limit

    @property
    def wants_frames(self) -> bool:
        """Return True: the hub's reader takes frames whole, valid or not, and counts them."""
        return True

    def frame(self, read: ReadFrame) -> None:
        """Feed one frame of any transport as its bytes (HDLC: flags restored; HAN meters stuff no octets)."""
        self.frames += 1
        frame = read.frame
        data = b"\x7e" + frame.frame_data + b"\x7e" if isinstance(frame, HdlcFrame) else frame
        self.decoded += self.hub.feed(data)
        if self._message_limit is not None and self.decoded >= self._message_limit:
            self.finished.set()


async def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Serve the source's page until Ctrl-C (or --duration, --count); return the exit status."""
    return await serve_source(parse_source(args.source), args, stdout, stderr)


async def serve_source(source: Source, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Read ``source`` into a web hub and serve it on args.host and args.port until stopped."""
    if source.kind == "mqtt":  # the page shows one meter's stream; a subscription may carry many
        raise UsageError(
            f"amshan serve shows one meter's serial, TCP, file or stdin stream, not {source.name}"
        )
    try:  # the web extra is optional: every other command works without aiohttp and prometheus_client
        from amshan.web import (  # noqa: PLC0415
            History,
            HistoryError,
            HistoryFile,
            MeterHub,
            create_app,
            start_server,
        )
    except ImportError as error:
        raise UsageError(f"amshan serve needs the web extra ({error}): pip install 'amshan[web]'") from None
    if args.hex and source.is_live:
        raise UsageError("--hex reads hex text from a file or stdin, not from a live meter")
    history = (
        History()
        if source.is_live
        else History(window=None, max_samples=RECORDING_SAMPLES, energy_hours=None)
    )
    try:
        store = HistoryFile(args.history, history) if args.history else history
    except HistoryError as error:
        stderr.write(f"amshan: {error}\n")
        return EXIT_FAILURE
    keys = keys_of(args)
    hub = MeterHub(store, live=source.is_live, source=source.location, reader=MeterReader(*keys))
    sink = HubSink(hub, stderr, args.count, keys)
    save = Capture(args.save) if args.save else None
    stop = asyncio.Event()
    watchers = stop_watchers(stop, sink, args.duration)
    app = create_app(hub)
    try:
        with on_signals(stop.set):
            if source.kind == "file":  # the whole recording first: the page opens on all of it
                await read_recorded(source, args.hex, sink, stop, stderr, save=save)
                stderr.write(f"amshan serve: {hub.sequence} messages read from {source.location}\n")
            try:
                runner, port = await start_server(app, args.host, args.port)
            except OSError as error:
                stderr.write(f"amshan: cannot listen on {args.host} port {args.port}: {error.strerror}\n")
                return EXIT_FAILURE
            stdout.write(f"amshan serve: the page of {source.location} is at http://{args.host}:{port}/\n")
            stdout.flush()
            try:
                if source.is_live:
                    await read_live(
                        source,
                        args,
                        sink,
                        stop,
                        stderr,
                        save=save,
                        managed=lambda manager: setattr(hub, "link", manager),
                    )
                elif source.kind == "stdin":
                    await read_recorded(source, args.hex, sink, stop, stderr, save=save)
                await stop.wait()
            finally:
                await runner.cleanup()
    finally:
        for watcher in watchers:
            watcher.cancel()
        if save is not None:
            save.close()
        hub.close()
    return EXIT_OK
