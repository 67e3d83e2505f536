"""``amshan forward-mqtt``: publish every message of a meter (or capture) to MQTT, with HA discovery."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from amshan.cli import read
from amshan.cli.options import SERIAL_HELP, add_common, add_keys, add_mqtt_publish_options, add_source, epilog


def add_parser(commands: Any) -> None:
    """Add the ``forward-mqtt`` command to the subcommands of the parser."""
    forward = commands.add_parser(
        "forward-mqtt",
        help="publish a meter's messages to MQTT, with Home Assistant discovery",
        description="Publish every message as JSON to PREFIX/METER_ID/state; announce one Home Assistant"
        " sensor per numeric field (MQTT discovery, retained), availability on PREFIX/status (last will"
        " offline). Reconnects with back-off while the broker is away, keeping the newest messages.",
        epilog=epilog("Serial settings: " + SERIAL_HELP),
    )
    add_source(forward)
    forward.add_argument(
        "mqtt_url",
        metavar="BROKER_URL",
        help="mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://... (password also from AMSHAN_MQTT_PASSWORD)",
    )
    add_mqtt_publish_options(forward, "--max-buffer")
    forward.set_defaults(influxdb_url=None, database=None)
    add_keys(forward)
    add_common(forward)


async def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Read the source as ``amshan read`` does, with MQTT as the only output; return the exit status."""
    args.format = "none"
    return await read.run(args, stdout, stderr)
