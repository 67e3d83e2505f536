"""``amshan simulate``: the simulated meter alone, a TCP server pushing real captured frames to clients."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, TextIO

from amshan.cli.options import EXIT_OK, add_common, add_meter_choice, positive_float
from amshan.cli.sources import stop_on_signals, until
from amshan.simulator import DEFAULT_INTERVAL, METER_NAMES, MeterSimulator, bundled_frames, bundled_keys


def add_parser(commands: Any) -> None:
    """Add the ``simulate`` command to the subcommands of the parser."""
    simulate = commands.add_parser(
        "simulate",
        help="run the simulated meter: a TCP server pushing real captured frames",
        description="A TCP server that behaves like a meter behind ser2net: every client receives real"
        " captured frames. Read it with: amshan read tcp://HOST:PORT",
    )
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    simulate.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    add_meter_choice(simulate)
    simulate.add_argument(
        "--interval",
        type=positive_float,
        default=DEFAULT_INTERVAL,
        help=f"seconds between frames (default {DEFAULT_INTERVAL:g})",
    )
    simulate.add_argument(
        "--once", action="store_true", help="close each connection after the last frame instead of looping"
    )
    simulate.add_argument("--duration", type=positive_float, metavar="SECONDS", help="stop after this long")
    add_common(simulate)


async def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Serve the chosen meter's frames until Ctrl-C or ``--duration``; return the exit status."""
    frames = bundled_frames(args.meter)
    who = METER_NAMES[args.meter]
    encryption_key, authentication_key = bundled_keys(args.meter)
    stop = asyncio.Event()
    with stop_on_signals(stop):
        async with MeterSimulator(
            frames, host=args.host, port=args.port, interval=args.interval, repeat=not args.once
        ) as simulator:
            stdout.write(f"amshan simulate: listening on tcp://{simulator.host}:{simulator.port}\n")
            stdout.write(
                f"amshan simulate: each client gets {len(frames)} real {who} frames,"
                f" one every {args.interval:g} s{', once' if args.once else ', in a loop'}; Ctrl-C stops\n"
            )
            if encryption_key is not None:  # public demo keys, printed so that the stream can be read
                stdout.write(
                    f"amshan simulate: read it with --encryption-key {encryption_key.hex()}"
                    + (f" --authentication-key {authentication_key.hex()}" if authentication_key else "")
                    + "\n"
                )
            stdout.flush()
            if args.duration is not None:
                await until(asyncio.sleep(args.duration), stop)
            else:
                await stop.wait()
    return EXIT_OK
