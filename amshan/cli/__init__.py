"""The ``amshan`` command: read a meter (serial, TCP, MQTT, file, stdin), print it, or forward it on.

Subcommands: ``read`` (print each message as JSON, as OBIS items, or each HDLC frame), ``forward-influxdb``,
``forward-mqtt`` (with Home Assistant discovery), ``probe`` (find a serial port's settings),
``demo`` (a simulated meter read through the real TCP connection and ConnectionManager), ``simulate``
(the simulated meter alone) and ``serve`` (a live web page, JSON API and Prometheus metrics). Run
``amshan --help`` or ``amshan COMMAND --help``. Each command is a module of
this package; ``sources`` opens sources and sinks, ``formats`` prints, ``options`` holds what they share.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, Callable, Optional, TextIO

from amshan import __version__
from amshan.cli import demo, forward_influxdb, forward_mqtt, probe, read, serve, simulate
from amshan.cli.demo import DEFAULT_DEMO_DURATION, DEFAULT_DEMO_INTERVAL
from amshan.cli.formats import Sink, describe_frame
from amshan.cli.options import (
    DEFAULT_IDLE_TIMEOUT,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    SERIAL_HELP,
    MqttUnavailable,
    Parser,
    UsageError,
    epilog,
)
from amshan.cli.sources import QuietReported, Source, parse_source, read_live, read_recorded

__all__ = [
    "DEFAULT_DEMO_DURATION",
    "DEFAULT_DEMO_INTERVAL",
    "DEFAULT_IDLE_TIMEOUT",
    "SERIAL_HELP",
    "Sink",
    "Source",
    "UsageError",
    "build_parser",
    "describe_frame",
    "main",
    "parse_source",
    "read_live",
    "read_recorded",
]

_Command = Callable[[argparse.Namespace, TextIO, TextIO], Coroutine[Any, Any, int]]
_COMMANDS: dict[str, _Command] = {
    "read": read.run,
    "forward-influxdb": forward_influxdb.run,
    "forward-mqtt": forward_mqtt.run,
    "demo": demo.run,
    "simulate": simulate.run,
    "probe": probe.run,
    "serve": serve.run,
}


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``amshan`` command line."""
    parser = Parser(
        prog="amshan",
        description="Read and decode the HAN port of smart electricity meters (Aidon, Kaifa, Kamstrup and"
        " other DLMS/COSEM meters that push OBIS lists).",
        epilog=epilog("Serial settings: " + SERIAL_HELP + " Try `amshan demo` first: it needs no meter."),
    )
    parser.add_argument("--version", action="version", version=f"amshan {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for command in (read, forward_influxdb, forward_mqtt, probe, demo, simulate, serve):
        command.add_parser(commands)
    return parser


def _configure_logging(verbose: int) -> None:
    """Log to stderr: warnings in the command line's own style, or everything in detail with -v/-vv.

    Without -v the command line reports undecodable messages and connection errors itself (once, in words),
    so the library's records about them are left out rather than said twice.
    """
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose else "amshan: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        logging.getLogger("amshan.autodecoder").setLevel(logging.ERROR)
        for handler in logging.getLogger().handlers:
            handler.addFilter(QuietReported())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``amshan`` command line; return the exit status (0 ok, 1 failure, 2 usage, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return asyncio.run(_COMMANDS[args.command](args, sys.stdout, sys.stderr))
    except UsageError as error:
        sys.stderr.write(f"amshan: {error}\n")
        return EXIT_USAGE
    except MqttUnavailable as error:  # no extra, login refused, broker unreachable: say so in one line
        sys.stderr.write(f"amshan: {error}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:  # Ctrl-C where no command handles it (probe, or between reading and draining)
        sys.stderr.write("amshan: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (amshan read ... | head)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
