"""``amshan forward-influxdb``: write every message of a meter (or capture) to InfluxDB, printing nothing."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from amshan.cli import read
from amshan.cli.options import SERIAL_HELP, add_common, add_influxdb_options, add_keys, add_source, epilog


def add_parser(commands: Any) -> None:
    """Add the ``forward-influxdb`` command to the subcommands of the parser."""
    forward = commands.add_parser(
        "forward-influxdb",
        help="forward a meter's messages to InfluxDB",
        description="Write every message as an InfluxDB point (HTTP /write: InfluxDB 1.x, or 2.x's v1 API):"
        " one measurement, a float field per numeric value, tags meter_id and manufacturer, the meter's"
        " own timestamp when it sends one. Batches writes, retries with back-off while the database is"
        " down.",
        epilog=epilog("Serial settings: " + SERIAL_HELP),
    )
    add_source(forward)
    forward.add_argument("influxdb_url", metavar="URL", help="InfluxDB base URL, e.g. http://localhost:8086")
    forward.add_argument("database", metavar="DATABASE", help="database (InfluxDB 2.x: a mapped bucket)")
    add_influxdb_options(forward)
    add_keys(forward)
    add_common(forward)


async def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Read the source as ``amshan read`` does, with InfluxDB as the only output; return the exit status."""
    args.format = "none"
    return await read.run(args, stdout, stderr)
