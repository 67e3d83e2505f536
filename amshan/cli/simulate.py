"""``amshan simulate``: the simulated meter alone, a TCP server pushing real captured frames to clients."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, TextIO

from amshan.cli.options import EXIT_OK, add_common, positive_float
from amshan.cli.sources import stop_on_signals, until
from amshan.simulator import DEFAULT_INTERVAL, METERS, MeterSimulator, bundled_frames


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
    simulate.add_argument(
        "--meter", choices=(*METERS, "all"), default="all", help="whose frames to send (default all)"
    )
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
    who = "Aidon, Kaifa and Kamstrup" if args.meter == "all" else args.meter.capitalize()
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
            stdout.flush()
            if args.duration is not None:
                await until(asyncio.sleep(args.duration), stop)
            else:
                await stop.wait()
    return EXIT_OK
