"""``amshan demo``: a simulated meter read through the real TCP connection and ConnectionManager.

With ``--serve`` the simulated meters are shown on ``amshan serve``'s live web page instead of printed.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from amshan.cli.formats import FORMATS, Sink
from amshan.cli.options import (
    DEFAULT_IDLE_TIMEOUT,
    EXIT_FAILURE,
    EXIT_OK,
    add_common,
    add_meter_choice,
    epilog,
    positive_float,
)
from amshan.cli.read import run_pipeline
from amshan.cli.serve import add_web_options, serve_source
from amshan.cli.sources import parse_source
from amshan.simulator import METER_NAMES, MeterSimulator, bundled_frames, bundled_keys

DEFAULT_DEMO_DURATION = 6.0
DEFAULT_DEMO_INTERVAL = 0.5


def add_parser(commands: Any) -> None:
    """Add the ``demo`` command to the subcommands of the parser."""
    demo = commands.add_parser(
        "demo",
        help="read a simulated meter for a few seconds (no hardware needed)",
        description="Start a simulated meter on 127.0.0.1 that replays real Aidon, Kaifa and Kamstrup frames,"
        " read it through the TCP connection factory and the ConnectionManager, print what it decodes.",
        epilog=epilog(),
    )
    demo.add_argument("--format", choices=FORMATS, default="obis", help="output format (default obis)")
    add_meter_choice(demo)
    demo.add_argument(
        "--duration",
        type=positive_float,
        help=f"seconds to run (default {DEFAULT_DEMO_DURATION:g}; with --serve: until Ctrl-C)",
    )
    demo.add_argument(
        "--interval",
        type=positive_float,
        default=DEFAULT_DEMO_INTERVAL,
        help="seconds between frames (default 0.5)",
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="show the simulated meters on the live web page of amshan serve (open the address it prints)",
    )
    add_web_options(demo)
    add_common(demo)


async def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Serve the bundled frames on a loopback port and read them back; exit 1 when nothing decoded."""
    frames = bundled_frames(args.meter)
    encryption_key, authentication_key = bundled_keys(args.meter)
    keys = "" if encryption_key is None else f" --encryption-key {encryption_key.hex()}"
    if authentication_key is not None:
        keys += f" --authentication-key {authentication_key.hex()}"
    async with MeterSimulator(frames, interval=args.interval) as simulator:
        address = f"tcp://{simulator.host}:{simulator.port}"
        stderr.write(
            f"amshan demo: a simulated meter on {address} replays {len(frames)} real messages"
            f" ({METER_NAMES[args.meter]}) every {args.interval:g} s;\n"
            + (
                f"amshan demo: serving its page with: amshan serve {address} --port {args.port}{keys}\n"
                if args.serve
                else f"amshan demo: reading it for {args.duration or DEFAULT_DEMO_DURATION:g} s with:"
                f" amshan read {address} --format {args.format}{keys}\n"
            )
        )
        stderr.flush()
        args.source = address
        args.hex = False
        args.influxdb_url = None
        args.database = None
        args.count = None
        args.idle_timeout = DEFAULT_IDLE_TIMEOUT
        args.drop = "newest"
        args.save = None
        args.encryption_key = None if encryption_key is None else encryption_key.hex()
        args.authentication_key = None if authentication_key is None else authentication_key.hex()
        args.key_file = None
        if args.serve:
            return await serve_source(parse_source(address), args, stdout, stderr)
        if args.duration is None:
            args.duration = DEFAULT_DEMO_DURATION
        sink = Sink(
            args.format,
            stdout=stdout,
            stderr=stderr,
            flush_each=True,
            encryption_key=encryption_key,
            authentication_key=authentication_key,
        )
        await run_pipeline(parse_source(address), args, sink, None, stderr)
    stderr.write(f"amshan demo: {sink.decoded} messages decoded from {sink.messages} received\n")
    return EXIT_OK if sink.decoded else EXIT_FAILURE
