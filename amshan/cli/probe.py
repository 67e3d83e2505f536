"""``amshan probe``: find a meter's serial settings by listening with each plausible one in turn.

Each setting is listened to for a few seconds through ``MeterReader``, stopping early once valid frames are
seen; its ``ReaderStats`` say what arrived (bytes, valid and invalid frames per transport, messages decoded,
and whatever else the reader counts). A ``tcp://`` source (ser2net) is listened to once: its serial settings
are the server's. Without a source, probe lists the serial ports pyserial finds.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import time
from typing import Any, Callable, TextIO

import serial
from serial.tools import list_ports

from amshan.cli.options import EXIT_FAILURE, EXIT_OK, UsageError, add_common, epilog, positive_float
from amshan.cli.sources import Source, error_words, explain_connect_error, parse_source, refused_setting
from amshan.obis_map import (
    NEK_HAN_FIELD_METER_ID,
    NEK_HAN_FIELD_METER_MANUFACTURER,
    NEK_HAN_FIELD_METER_TYPE,
    NEK_HAN_FIELD_OBIS_LIST_VER_ID,
)
from amshan.reader import MeterReader, ReaderStats

# (baud rate, data bits, parity), the most common first: Aidon/Kaifa HAN, Kamstrup HAN, P1 (DSMR 4/5 and
# H1), then the rarer 9600 8N1 readers, DSMR 2.2's 9600 7E1 and Iskraemeco's 38400.
SETTINGS = ((2400, 8, "E"), (2400, 8, "N"), (115200, 8, "N"), (9600, 8, "N"), (9600, 7, "E"), (38400, 8, "N"))
DEFAULT_SECONDS = 12.0  # Kamstrup pushes every 10 s
_ENOUGH_FRAMES = 2
_READ_TIMEOUT = 0.1
_CHUNK = 4096


def add_parser(commands: Any) -> None:
    """Add the ``probe`` command to the subcommands of the parser."""
    probe = commands.add_parser(
        "probe",
        help="find the serial settings of a meter (or list the serial ports)",
        description="Listen to a serial port with each plausible setting in turn ("
        + ", ".join(_setting(*setting) for setting in SETTINGS)
        + "), stopping early once valid frames arrive; report what each setting gave and end with the"
        " amshan read command to use. A tcp:// source (ser2net) is listened to once. Without SOURCE,"
        " list the serial ports.",
        epilog=epilog(),
    )
    probe.add_argument(
        "source",
        metavar="SOURCE",
        nargs="?",
        help="a serial device (/dev/ttyUSB0, COM3, rfc2217://...) or tcp://HOST:PORT",
    )
    probe.add_argument(
        "--seconds",
        type=positive_float,
        default=DEFAULT_SECONDS,
        help="how long to listen with each setting (default %(default)g; stops early on valid frames)",
    )
    add_common(probe)


async def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """List the ports, or probe the source's settings; exit 0 when a setting gave valid frames."""
    if args.source is None:
        return _list_ports(stdout, stderr)
    source = parse_source(args.source)
    if not source.is_live:
        raise UsageError(
            f"probe listens to a serial device or tcp://HOST:PORT, not to the file {args.source}"
        )
    if source.kind == "mqtt":
        raise UsageError(
            f"probe finds serial settings, which {source.name} has none of: read it with amshan read"
        )
    if source.kind == "tcp":
        return _probe_tcp(source, args, stdout, stderr)
    return _probe_serial(source, args, stdout, stderr)


def _list_ports(stdout: TextIO, stderr: TextIO) -> int:
    """Print the serial ports with their USB descriptions; exit 1 when there are none."""
    ports = sorted(list_ports.comports(), key=lambda port: port.device)
    if not ports:
        stderr.write(
            "amshan: no serial ports found: plug in the meter's dongle,"
            " or probe a network reader with: amshan probe tcp://HOST:PORT\n"
        )
        return EXIT_FAILURE
    for port in ports:
        details = [text for text in (port.description, port.hwid) if text and text != "n/a"]
        stdout.write(f"{port.device}  {'  '.join(details)}".rstrip() + "\n")
    stdout.write(f"probe one with: amshan probe {ports[0].device}\n")
    return EXIT_OK


def _probe_serial(source: Source, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Try each setting in turn; report each; end with the read command of the first that gave frames."""
    stdout.write(f"probing {source.name}, up to {args.seconds:g} s per setting\n")
    for baudrate, bytesize, parity in SETTINGS:
        setting = _setting(baudrate, bytesize, parity)
        try:
            port = serial.serial_for_url(
                source.location, baudrate=baudrate, bytesize=bytesize, parity=parity, timeout=_READ_TIMEOUT
            )
        except Exception as error:
            if not refused_setting(error):
                settings = argparse.Namespace(baudrate=baudrate, bytesize=bytesize, parity=parity)
                stderr.write(f"amshan: {explain_connect_error(source, settings, error)}\n")
                return EXIT_FAILURE
            stdout.write(
                f"  {setting:<11}refused by the port ({error_words(error)}): it cannot do that, skipped\n"
            )
            continue
        stdout.write(f"  {setting:<11}")
        stdout.flush()
        try:
            reader, found = _listen(port.read, args.seconds)
        finally:
            port.close()
        stdout.write(_describe(reader.stats, found) + "\n")
        if reader.stats.valid_frames:
            options = f"--baudrate {baudrate} --parity {parity}" + (" --bytesize 7" if bytesize == 7 else "")
            return _found(f"amshan read {source.location} {options}", setting, reader.stats, stdout)
    stdout.write(
        "no setting gave a valid frame: check the cable, and that the meter's HAN port is enabled"
        " (grid operators open it on request)\n"
    )
    return EXIT_FAILURE


def _probe_tcp(source: Source, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Listen to a network reader once: its serial settings are the server's."""
    try:
        connection = socket.create_connection((source.host, source.port), timeout=10)
    except OSError as error:
        stderr.write(f"amshan: {explain_connect_error(source, args, error)}\n")
        return EXIT_FAILURE
    stdout.write(
        f"probing {source.name} for up to {args.seconds:g} s (its serial settings are the server's)\n"
    )
    with connection:
        connection.settimeout(_READ_TIMEOUT)
        reader, found = _listen(lambda size: _receive(connection, size), args.seconds)
    stdout.write(f"  {_describe(reader.stats, found)}\n")
    if reader.stats.valid_frames:
        return _found(f"amshan read {source.location}", "this port", reader.stats, stdout)
    stdout.write(
        "no valid frame: set the serial port in the server's configuration (ser2net: 2400 8E1 for Aidon and"
        " Kaifa, 2400 8N1 for Kamstrup, 115200 8N1 for P1), or serve it as rfc2217:// so probe can try them\n"
    )
    return EXIT_FAILURE


def _receive(connection: socket.socket, size: int) -> bytes:
    """Return what arrived within the socket's timeout (b"" when nothing did); raise when the peer left."""
    try:
        data = connection.recv(size)
    except socket.timeout:
        return b""
    if not data:
        raise ConnectionResetError("the server closed the connection")
    return data


def _listen(read: Callable[[int], bytes], seconds: float) -> tuple[MeterReader, dict[str, Any]]:
    """Feed what ``read`` returns to a MeterReader until enough valid frames came or time is up."""
    reader = MeterReader()
    found: dict[str, Any] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and reader.stats.valid_frames < _ENOUGH_FRAMES:
        try:
            data = read(_CHUNK)
        except (OSError, serial.SerialException):  # the port went away: report what was seen so far
            break
        for message in reader.read(data):
            found = message
    return reader, found


def _describe(stats: ReaderStats, message: dict[str, Any]) -> str:
    """Return what the reader saw: every counter it keeps, so new transports and counters show up too."""
    text = ", ".join(_counters(stats)) if stats.bytes_read else "nothing received"
    meter = [
        f"{label} {message[key]}"
        for label, key in (
            ("meter", NEK_HAN_FIELD_METER_MANUFACTURER),
            ("list", NEK_HAN_FIELD_OBIS_LIST_VER_ID),
            ("type", NEK_HAN_FIELD_METER_TYPE),
            ("id", NEK_HAN_FIELD_METER_ID),
        )
        if message.get(key)
    ]
    if meter:
        text += ": " + ", ".join(meter)
    elif stats.last_decoder:
        text += f": {stats.last_decoder} meter"
    return text


def _counters(stats: Any) -> list[str]:
    """Return a stats dataclass's non-zero counters (and valid frames) as words, nested ones prefixed."""
    parts = []
    for field in dataclasses.fields(stats):
        value = getattr(stats, field.name)
        words = field.name.replace("_", " ")
        nested = _counters(value) if dataclasses.is_dataclass(value) else []
        if isinstance(value, dict) and value:
            parts.append(", ".join(f"{name.upper()} {count}" for name, count in value.items()))
        elif nested:
            parts.append(f"{words}: " + ", ".join(nested))
        elif (
            isinstance(value, int) and not isinstance(value, bool) and (value or field.name == "valid_frames")
        ):
            parts.append(f"{value:,} {words}")
    return parts


def _found(command: str, setting: str, stats: ReaderStats, stdout: TextIO) -> int:
    """Print the command to read the meter with the setting found; exit 0."""
    stdout.write(f"found: {setting} gives valid frames; read the meter with:\n  {command}\n")
    if not stats.decoded:
        stdout.write(
            "no message decoded yet: they may be encrypted (pass the meter's key) or of a format not read\n"
        )
    return EXIT_OK


def _setting(baudrate: int, bytesize: int, parity: str) -> str:
    """Return a setting as people write it: 2400 8E1."""
    return f"{baudrate} {bytesize}{parity}1"
