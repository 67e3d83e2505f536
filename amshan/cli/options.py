"""What every ``amshan`` command shares: exit statuses, usage errors, argument types and option groups."""

from __future__ import annotations

import argparse

from amshan.influxdb import DEFAULT_MAX_BUFFER, DEFAULT_MEASUREMENT
from amshan.meter_connection import DROP_POLICIES

DEFAULT_IDLE_TIMEOUT = 60.0  # meters push at least every 10 s; a minute of silence means a dead link
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

SERIAL_HELP = "Aidon and Kaifa send 2400 baud 8E1 (--parity E); Kamstrup sends 2400 baud 8N1 (--parity N)."


class UsageError(Exception):
    """A command line that cannot work (bad source, option combination); reported without a traceback."""


def positive_float(text: str) -> float:
    """Parse an argument that must be a number above zero (seconds, intervals)."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, found {text}")
    return value


def positive_int(text: str) -> int:
    """Parse an argument that must be a whole number above zero (counts, sizes)."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, found {text}")
    return value


def add_common(parser: argparse.ArgumentParser) -> None:
    """Add the options every command has (verbosity)."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")


def add_source(parser: argparse.ArgumentParser) -> None:
    """Add the SOURCE argument and the options that say how to read it (serial, live, recorded, limits)."""
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a serial device (/dev/ttyUSB0, COM3, rfc2217://...), tcp://HOST:PORT (ser2net, ESP readers),"
        " a capture file of raw bytes, or - for stdin",
    )
    group = parser.add_argument_group("serial port", SERIAL_HELP)
    group.add_argument("--baudrate", type=int, default=2400, help="baud rate (default 2400)")
    group.add_argument(
        "--parity", choices=("N", "E", "O"), default="N", help="parity: N none (default), E even, O odd"
    )
    live = parser.add_argument_group("live meters (serial and TCP)")
    live.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="reconnect when no valid frame came for this long (default %(default)g; 0 turns it off)",
    )
    live.add_argument(
        "--drop",
        choices=DROP_POLICIES,
        default="newest",
        help="when the output falls behind and the queue of readings is full, drop the newest (default) "
        "or the oldest reading (keeps the latest reading of a live meter flowing)",
    )
    recorded = parser.add_argument_group("files and stdin")
    recorded.add_argument(
        "--hex", action="store_true", help="the input is hex text, one frame per line (spaces allowed)"
    )
    parser.add_argument("--duration", type=positive_float, metavar="SECONDS", help="stop after this long")
    parser.add_argument("--count", type=positive_int, metavar="N", help="stop after N messages (or frames)")


def add_influxdb_options(parser: argparse.ArgumentParser) -> None:
    """Add the InfluxDB options shared by ``read --influxdb`` and ``forward-influxdb``."""
    group = parser.add_argument_group("InfluxDB")
    group.add_argument("--measurement", default=DEFAULT_MEASUREMENT, help="measurement (default %(default)s)")
    group.add_argument("--retention-policy", metavar="RP", help="retention policy (default: the database's)")
    group.add_argument("--username", help="user name (InfluxDB 1.x, or 2.x v1 authorization)")
    group.add_argument("--password", help="password (or set AMSHAN_INFLUXDB_PASSWORD)")
    group.add_argument("--token", help="InfluxDB 2.x API token (or set AMSHAN_INFLUXDB_TOKEN)")
    group.add_argument(
        "--receive-time",
        action="store_true",
        help="stamp points with the time they were received instead of the meter's clock",
    )
    group.add_argument("--batch-size", type=positive_int, default=500, help="points per write (default 500)")
    group.add_argument(
        "--flush-interval",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="write at least this often (default 5)",
    )
    group.add_argument(
        "--max-buffer",
        type=positive_int,
        default=DEFAULT_MAX_BUFFER,
        metavar="POINTS",
        help="points kept while InfluxDB is unreachable; beyond this the oldest are dropped"
        " (default %(default)d)",
    )
    group.add_argument(
        "--drain-timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="when stopping, keep trying to write buffered points this long (default 30)",
    )
