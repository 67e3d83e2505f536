"""What every ``amshan`` command shares: exit statuses, usage errors, argument types and option groups."""

from __future__ import annotations

import argparse
import math
import os
import socket
import textwrap
from typing import Any, Callable, NoReturn, Optional, Tuple, TypeVar

from amshan.cipher import parse_key
from amshan.influxdb import DEFAULT_MAX_BUFFER, DEFAULT_MEASUREMENT
from amshan.meter_connection import DROP_POLICIES
from amshan.mqtt_core import DEFAULT_DISCOVERY_PREFIX, DEFAULT_TOPIC_PREFIX
from amshan.mqtt_core import DEFAULT_MAX_BUFFER as DEFAULT_MQTT_MAX_BUFFER
from amshan.simulator import METERS, P1_METERS

_N = TypeVar("_N", int, float)

DEFAULT_IDLE_TIMEOUT = 60.0  # meters push at least every 10 s; a minute of silence means a dead link
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

SERIAL_HELP = (
    "HAN (RJ45 M-Bus): Aidon and Kaifa send 2400 baud 8E1 (--parity E); Kamstrup sends 2400 baud 8N1"
    " (--parity N). P1 (RJ12, an inverting cable): Sweden, Finland, Denmark, the Netherlands (DSMR 4/5),"
    " Belgium and Luxembourg send 115200 baud 8N1 (--baudrate 115200); Dutch DSMR 2.2/3.0 meters 9600 baud"
    " 7E1 (--baudrate 9600 --bytesize 7 --parity E)."
)


EXIT_STATUS_HELP = """exit status:
  0    done: something was decoded (or served, or found)
  1    nothing decoded from a file or stdin; a live source never connected, or
       sent nothing decodable; InfluxDB points or MQTT messages not sent; an
       MQTT broker that cannot be used; a port that cannot be listened on;
       probe found no working setting
  2    usage error: bad arguments, a missing file, an invalid port or host
       (reported before anything starts)
  130  interrupted: a second Ctrl-C abandoned points or messages not yet sent"""


def epilog(*paragraphs: str) -> str:
    """Return the paragraphs, then the exit status table, as the closing text of a command's --help."""
    return "\n\n".join([*paragraphs, EXIT_STATUS_HELP])


class HelpFormatter(argparse.HelpFormatter):
    """Wrap each paragraph of a description or epilog; keep indented paragraphs (tables) as they are."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """Fill paragraph by paragraph, leaving alone those with an indented line."""
        return "\n\n".join(
            paragraph
            if any(line.startswith(" ") for line in paragraph.splitlines())
            else textwrap.fill(paragraph, width, initial_indent=indent, subsequent_indent=indent)
            for paragraph in text.split("\n\n")
        )


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (what is wrong, where to read more), exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Make a parser (and subcommand parsers) that wrap help text by paragraphs."""
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print the error in one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


class UsageError(Exception):
    """A command line that cannot work (bad source, option combination); reported without a traceback."""


class MqttUnavailable(Exception):
    """MQTT cannot be used: the extra is missing, or the broker refused the login or is unreachable."""


def check_host(host: str, port: int, where: str) -> None:
    """Refuse, as a usage error, a host name that does not resolve (``where`` names the argument)."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UsageError(
            f"cannot resolve host {host!r} in {where}: check the name, or give an IP address"
        ) from None


def _number(text: str, parse: Callable[[str], _N], accept: Callable[[_N], bool], expected: str) -> _N:
    """Parse a numeric argument; a usage error says what was expected and what was found."""
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, found {text!r}")
    return value


def tcp_port(text: str) -> int:
    """Parse a TCP port to listen on: 0 (any free port) to 65535."""
    return _number(text, int, lambda port: 0 <= port <= 65535, "a TCP port 0-65535 (0: any free port)")


def positive_float(text: str) -> float:
    """Parse an argument that must be a number above zero (seconds, intervals)."""
    return _number(text, float, lambda value: 0 < value < math.inf, "a number above 0 (e.g. 2.5)")


def non_negative_float(text: str) -> float:
    """Parse an argument that must be a number of seconds, 0 or more (0 turns the feature off)."""
    return _number(text, float, lambda value: 0 <= value < math.inf, "a number of seconds, 0 or more")


def positive_int(text: str) -> int:
    """Parse an argument that must be a whole number above zero (counts, sizes)."""
    return _number(text, int, lambda value: value > 0, "a whole number above 0 (e.g. 10)")


def add_common(parser: argparse.ArgumentParser) -> None:
    """Add the options every command has (verbosity)."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")


def add_source(parser: argparse.ArgumentParser) -> None:
    """Add the SOURCE argument and the options that say how to read it (serial, live, recorded, limits)."""
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a serial device (/dev/ttyUSB0, COM3, rfc2217://...), tcp://HOST:PORT (ser2net, ESP readers),"
        " mqtt://HOST[:PORT]/TOPIC (what bridges publish), a capture file of raw bytes, or - for stdin",
    )
    group = parser.add_argument_group("serial port", SERIAL_HELP)
    group.add_argument("--baudrate", type=positive_int, default=2400, help="baud rate (default 2400)")
    group.add_argument(
        "--bytesize", type=int, choices=(7, 8), default=8, help="data bits (default 8; 7 for DSMR 2.2/3.0 P1)"
    )
    group.add_argument(
        "--parity", choices=("N", "E", "O"), default="N", help="parity: N none (default), E even, O odd"
    )
    live = parser.add_argument_group("live meters (serial and TCP)")
    live.add_argument(
        "--idle-timeout",
        type=non_negative_float,
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
    add_mqtt_source_options(parser)
    parser.add_argument("--duration", type=positive_float, metavar="SECONDS", help="stop after this long")
    parser.add_argument("--count", type=positive_int, metavar="N", help="stop after N messages (or frames)")
    parser.add_argument(
        "--save",
        metavar="FILE",
        help="also append every byte read, exactly as received, to FILE (replay it with: amshan read FILE);"
        " from mqtt:// the bytes each payload carries (hex text as the bytes it spells), in arrival order",
    )


KEY_HELP = (
    "Ciphered meters (Denmark, Austria, Switzerland, Luxembourg, Poland) need the meter's keys, 32 hex digits"
    " each, from the grid operator (DSO). On the command line they show in the process list: prefer"
    " --key-file or the environment (AMSHAN_ENCRYPTION_KEY, AMSHAN_AUTHENTICATION_KEY). Keys are never"
    " printed or logged."
)


def add_keys(parser: argparse.ArgumentParser) -> None:
    """Add the options that give the meter's encryption and authentication keys."""
    group = parser.add_argument_group("encrypted meters", KEY_HELP)
    group.add_argument("--encryption-key", metavar="HEX", help="the encryption key (GUEK; Kamstrup: GPK60)")
    group.add_argument(
        "--authentication-key",
        metavar="HEX",
        help="the authentication key (GAK; Kamstrup: GPK61): with it every message's tag is checked",
    )
    group.add_argument(
        "--key-file",
        metavar="PATH",
        help="a file with the encryption key on its first line and the authentication key on its second"
        " (blank lines and # comments ignored)",
    )


def keys_of(args: argparse.Namespace) -> Tuple[Optional[bytes], Optional[bytes]]:
    """Return (encryption key, authentication key) from the options, the key file or the environment.

    An option wins over the key file, which wins over the environment; a bad key is a usage error whose
    message never shows the key.
    """
    texts = [
        os.environ.get("AMSHAN_ENCRYPTION_KEY") or None,
        os.environ.get("AMSHAN_AUTHENTICATION_KEY") or None,
    ]
    if args.key_file is not None:
        try:
            with open(args.key_file, encoding="utf-8") as file:
                lines = [line.split("#", 1)[0].strip() for line in file]
        except OSError as error:
            raise UsageError(f"cannot read the key file {args.key_file!r}: {error.strerror}") from None
        lines = [line for line in lines if line]
        if not 1 <= len(lines) <= 2:
            raise UsageError(f"expected one or two keys in {args.key_file!r}, found {len(lines)} lines")
        texts = [*lines, None][:2]
    for index, option in enumerate((args.encryption_key, args.authentication_key)):
        if option is not None:
            texts[index] = option
    keys = []
    for text, name in zip(texts, ("encryption key", "authentication key")):
        try:
            keys.append(None if text is None else parse_key(text, name))
        except ValueError as error:
            raise UsageError(str(error)) from None
    if keys[1] is not None and keys[0] is None:
        raise UsageError("an authentication key was given without an encryption key")
    return keys[0], keys[1]


def add_meter_choice(parser: argparse.ArgumentParser) -> None:
    """Add ``--meter``: whose bundled frames the simulated meter sends (``demo``, ``simulate``)."""
    parser.add_argument(
        "--meter",
        choices=(*METERS, "all", *P1_METERS, "p1"),
        default="all",
        help="whose frames (default all: Aidon, Kaifa and Kamstrup interleaved); dk and at are ciphered"
        " (Danish Kamstrup in HDLC, Austrian M-Bus) and read with their public keys; p1-se, p1-nl, p1-be"
        " are Swedish, Dutch and Belgian P1 telegrams (p1: all three)",
    )


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


def add_mqtt_source_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of an ``mqtt://`` source (and of TLS for any MQTT connection)."""
    group = parser.add_argument_group(
        "MQTT (SOURCE mqtt://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC, mqtts:// for TLS)",
        "Each topic is one meter's byte stream, binary or hex text; the password can also come from"
        " AMSHAN_MQTT_PASSWORD.",
    )
    group.add_argument(
        "--share-group",
        metavar="NAME",
        help="subscribe as $share/NAME/TOPIC: processes of one group split the messages between them"
        " (each payload must then hold whole messages)",
    )
    group.add_argument(
        "--source-qos", type=int, choices=(0, 1), default=1, help="QoS of the subscription (default 1)"
    )
    group.add_argument("--ca-file", metavar="PEM", help="CA certificates to verify an mqtts:// broker")


def add_mqtt_publish_options(parser: argparse.ArgumentParser, max_buffer_option: str) -> None:
    """Add the options of publishing to MQTT (``max_buffer_option`` names the buffer option)."""
    group = parser.add_argument_group("publishing to MQTT (Home Assistant discovery on by default)")
    group.add_argument(
        "--topic-prefix",
        default=DEFAULT_TOPIC_PREFIX,
        help="states go to PREFIX/METER_ID/state, availability to PREFIX/status (default %(default)s)",
    )
    group.add_argument(
        "--qos", type=int, choices=(0, 1), default=0, help="QoS of the states (default 0; 1: never lose one)"
    )
    group.add_argument(
        "--discovery-prefix",
        default=DEFAULT_DISCOVERY_PREFIX,
        help="Home Assistant's discovery prefix (default %(default)s)",
    )
    group.add_argument(
        "--no-discovery", action="store_true", help="do not announce the sensors to Home Assistant"
    )
    group.add_argument(
        max_buffer_option,
        dest="mqtt_max_buffer",
        type=positive_int,
        default=DEFAULT_MQTT_MAX_BUFFER,
        metavar="MESSAGES",
        help="messages kept while the broker is unreachable; beyond this the oldest are dropped"
        " (default %(default)d)",
    )
