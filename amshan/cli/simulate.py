"""``amshan simulate``: the simulated meter alone, a TCP server pushing real captured frames to clients."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable
from typing import Any, TextIO

from amshan.cli.options import (
    EXIT_FAILURE,
    EXIT_OK,
    add_common,
    add_meter_choice,
    check_host,
    epilog,
    positive_float,
    tcp_port,
)
from amshan.cli.sources import error_words, on_signals
from amshan.simulator import DEFAULT_INTERVAL, METER_NAMES, MeterSimulator, bundled_frames, bundled_keys


def add_parser(commands: Any) -> None:
    """Add the ``simulate`` command to the subcommands of the parser."""
    simulate = commands.add_parser(
        "simulate",
        help="run the simulated meter: a TCP server pushing real captured frames",
        description="A TCP server that behaves like a meter behind ser2net: every client receives real"
        " captured frames. Read it with: amshan read tcp://HOST:PORT",
        epilog=epilog(),
    )
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    simulate.add_argument("--port", type=tcp_port, default=0, help="TCP port (default 0: any free port)")
    add_meter_choice(simulate)
    simulate.add_argument(
        "--interval",
        type=positive_float,
        default=DEFAULT_INTERVAL,
        help=f"seconds between frames (default {DEFAULT_INTERVAL:g})",
    )
    simulate.add_argument(
        "--once",
        action="store_true",
        help="send the frames once to the first client, then stop (a reader of it then ends)",
    )
    simulate.add_argument("--duration", type=positive_float, metavar="SECONDS", help="stop after this long")
    add_common(simulate)


async def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Serve the chosen meter's frames until Ctrl-C, ``--duration`` or (``--once``) one whole replay."""
    check_host(args.host, args.port, "--host")
    frames = bundled_frames(args.meter)
    who = METER_NAMES[args.meter]
    encryption_key, authentication_key = bundled_keys(args.meter)
    simulator = MeterSimulator(
        frames, host=args.host, port=args.port, interval=args.interval, repeat=not args.once
    )
    try:
        await simulator.start()
    except OSError as error:
        stderr.write(
            f"amshan: cannot listen on {args.host} port {args.port}: {error_words(error).lower()};"
            " choose another --port (0 picks a free one)\n"
        )
        return EXIT_FAILURE
    stop = asyncio.Event()
    try:
        with on_signals(stop.set):
            stdout.write(f"amshan simulate: listening on tcp://{simulator.host}:{simulator.port}\n")
            stdout.write(
                f"amshan simulate: each client gets {len(frames)} real {who} frames,"
                f" one every {args.interval:g} s{_ending(args.once)}; Ctrl-C stops\n"
            )
            if encryption_key is not None:  # public demo keys, printed so that the stream can be read
                stdout.write(
                    f"amshan simulate: read it with --encryption-key {encryption_key.hex()}"
                    + (f" --authentication-key {authentication_key.hex()}" if authentication_key else "")
                    + "\n"
                )
            stdout.flush()
            waits: list[Awaitable[Any]] = [stop.wait()]
            if args.duration is not None:
                waits.append(asyncio.sleep(args.duration))
            if args.once:
                waits.append(simulator.wait_replayed())
            await _first(waits)
    finally:
        await simulator.close()
    if args.once and simulator.replays_done:
        stdout.write("amshan simulate: one replay done, stopped\n")
    return EXIT_OK


def _ending(once: bool) -> str:
    """Return how the replay ends, for the banner."""
    return ", once: the first client gets them all, then the server stops" if once else ", in a loop"


async def _first(awaitables: list[Awaitable[Any]]) -> None:
    """Wait until the first of the awaitables completes, and cancel the others."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
