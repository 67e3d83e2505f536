"""The MQTT parts of the ``amshan`` command line: its options, the publisher sink and the ``mqtt://`` source.

``amshan.mqtt`` (and so the ``mqtt`` extra) is imported only when a command uses MQTT; without the extra the
command says which extra to install.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import os
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Dict

from amshan.mqtt_core import (
    DEFAULT_DISCOVERY_PREFIX,
    DEFAULT_MAX_BUFFER,
    DEFAULT_TOPIC_PREFIX,
    Outbox,
    parse_broker_url,
)

if TYPE_CHECKING:
    from amshan.mqtt import MqttPublisher, MqttSettings

PASSWORD_VARIABLE = "AMSHAN_MQTT_PASSWORD"
_SCHEMES = ("mqtt://", "mqtts://")


class MqttUnavailable(Exception):
    """MQTT cannot be used: the extra is missing, or the broker refused the login or is unreachable."""


def _usage(message: str) -> Exception:
    """Return the command line's UsageError (reported without a traceback, exit status 2)."""
    from amshan.cli import UsageError  # noqa: PLC0415 - amshan.cli imports this module

    return UsageError(message)


def is_mqtt_url(text: str) -> bool:
    """Return True for an ``mqtt://`` or ``mqtts://`` address."""
    return text.lower().startswith(_SCHEMES)


def _mqtt() -> types.ModuleType:
    """Return amshan.mqtt, imported on first use: only MQTT commands need the ``mqtt`` extra."""
    try:
        return importlib.import_module("amshan.mqtt")
    except ImportError:
        raise MqttUnavailable("MQTT needs the mqtt extra: pip install 'amshan[mqtt]'") from None


def settings(url: str, args: argparse.Namespace) -> MqttSettings:
    """Return the connection settings of a broker URL, the password from AMSHAN_MQTT_PASSWORD if not in it."""
    mqtt = _mqtt()
    try:
        broker = parse_broker_url(url)
    except ValueError as error:
        raise _usage(str(error)) from None
    password = os.environ.get(PASSWORD_VARIABLE)
    if broker.password is None and password is not None:
        broker = dataclasses.replace(broker, username=broker.username or "", password=password)
    if args.ca_file is not None and not broker.tls:
        raise _usage(f"--ca-file is for mqtts:// brokers, found {broker}")
    result: MqttSettings = mqtt.MqttSettings(broker, ca_file=args.ca_file)
    return result


def make_publisher(url: str, args: argparse.Namespace) -> MqttPublisher:
    """Return the publisher of ``--mqtt URL`` / ``forward-mqtt SOURCE URL`` with the command's options."""
    mqtt_settings = settings(url, args)
    if mqtt_settings.broker.topic:
        raise _usage(f"expected a broker URL without a topic, found {url!r}")
    outbox = Outbox(
        topic_prefix=args.topic_prefix,
        discovery_prefix=None if args.no_discovery else args.discovery_prefix,
        max_buffer=args.mqtt_max_buffer,
    )
    publisher: MqttPublisher = _mqtt().MqttPublisher(mqtt_settings, outbox, qos=args.qos)
    return publisher


async def run_publisher(publisher: MqttPublisher, stop: asyncio.Event) -> None:
    """Run the publisher; when the broker cannot be used at all, stop the command and say why."""
    try:
        await publisher.run()
    except _mqtt().BrokerError as error:
        stop.set()
        raise MqttUnavailable(str(error)) from None


def publisher_summary(publisher: MqttPublisher) -> tuple[str, bool]:
    """Return the publisher's counts as one line, and whether anything was lost (dropped or not sent)."""
    outbox = publisher.outbox
    lost = bool(outbox.dropped or outbox.pending_states)
    return (
        f"MQTT: {outbox.added} messages queued, {publisher.published} published,"
        f" {outbox.pending_states} not published, {outbox.dropped} dropped (buffer full),"
        f" {outbox.unidentified} skipped before the meter named itself",
        lost,
    )


async def read_mqtt(
    url: str, args: argparse.Namespace, deliver: Callable[[str, Dict[str, Any]], None], stop: asyncio.Event
) -> None:
    """Subscribe to ``mqtt://HOST[:PORT]/TOPIC`` and deliver each topic's decoded messages until stopped."""
    mqtt_settings = settings(url, args)
    if not mqtt_settings.broker.topic:
        raise _usage(f"expected mqtt://HOST[:PORT]/TOPIC to read, found {url!r}")
    mqtt = _mqtt()
    try:
        source = mqtt.MqttSource(
            mqtt_settings, mqtt_settings.broker.topic, share_group=args.share_group, qos=args.source_qos
        )
    except ValueError as error:
        raise _usage(str(error)) from None
    task = asyncio.ensure_future(source.run(deliver))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        source.stop()
        await asyncio.wait({task}, timeout=10)
    if not task.done():
        task.cancel()
        return
    try:
        task.result()
    except mqtt.BrokerError as error:
        raise MqttUnavailable(str(error)) from None


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of an ``mqtt://`` source (and of TLS for any MQTT connection)."""
    group = parser.add_argument_group(
        "MQTT (SOURCE mqtt://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC, mqtts:// for TLS)",
        f"Each topic is one meter's byte stream, binary or hex text; the password can also come from"
        f" {PASSWORD_VARIABLE}.",
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


def add_publish_options(
    parser: argparse.ArgumentParser, max_buffer_option: str, positive_int: Callable[[str], int]
) -> None:
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
        default=DEFAULT_MAX_BUFFER,
        metavar="MESSAGES",
        help="messages kept while the broker is unreachable; beyond this the oldest are dropped"
        " (default %(default)d)",
    )
