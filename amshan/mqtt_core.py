"""The sans-IO half of amshan's MQTT support: everything but the connection, testable without a broker.

Broker URLs, topic names, state JSON, Home Assistant discovery configs, the bounded outbox of a publisher and
the per-topic readers of a subscriber. Nothing here does I/O or needs the ``mqtt`` extra; ``amshan.mqtt``
drives these with a real client.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import re
import string
import urllib.parse
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple, Union

from amshan import __version__
from amshan._ratelimit import LogLimiter
from amshan.obis_map import (
    FIELD_UNITS,
    NEK_HAN_FIELD_METER_ID,
    NEK_HAN_FIELD_METER_MANUFACTURER,
    NEK_HAN_FIELD_METER_TYPE,
)
from amshan.reader import MeterReader

__all__ = [
    "DEFAULT_DISCOVERY_PREFIX",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_TOPIC_PREFIX",
    "BrokerUrl",
    "Outbox",
    "Outgoing",
    "TopicReaders",
    "discovery_config",
    "parse_broker_url",
    "payload_bytes",
    "state_payload",
    "topic_part",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_TOPIC_PREFIX = "amshan"
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
DEFAULT_MAX_BUFFER = 1000
DEFAULT_MAX_TOPICS = 10_000
STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
_PORTS = {"mqtt": 1883, "mqtts": 8883}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

MessageValue = Union[str, int, float, datetime]


# --- broker URLs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerUrl:
    """Where a broker is and how to log in: ``mqtt://[user[:password]@]host[:port][/TOPIC]``."""

    host: str
    port: int
    tls: bool = False
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    topic: str = ""

    def __str__(self) -> str:
        """Show the URL without its password (for messages and logs)."""
        user = f"{self.username}@" if self.username is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = f"/{self.topic}" if self.topic else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}{path}"


def parse_broker_url(text: str) -> BrokerUrl:
    """Parse ``mqtt[s]://[user[:password]@]host[:port][/TOPIC]``; raise ValueError if it is not one.

    The topic is everything after the first ``/`` of the address, taken as is (``#`` and ``+`` are MQTT
    wildcards here, not URL syntax); user and password may be percent-encoded.
    """
    scheme, separator, rest = text.partition("://")
    if not separator or scheme.lower() not in _PORTS:
        raise ValueError(f"expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], found {text!r}")
    address, _, topic = rest.partition("/")
    credentials, at, host_port = address.rpartition("@")
    username = password = None
    if at:
        user_text, colon, password_text = credentials.partition(":")
        username = urllib.parse.unquote(user_text)
        password = urllib.parse.unquote(password_text) if colon else None
    match = re.fullmatch(r"(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d{1,5}))?", host_port)
    if not match:
        raise ValueError(f"expected a broker host[:port] in {text!r}, found {host_port!r}")
    port = int(match["port"]) if match["port"] else _PORTS[scheme.lower()]
    if not 0 < port < 65536:
        raise ValueError(f"expected a TCP port 1..65535 in {text!r}, found {port}")
    return BrokerUrl(
        match["ipv6"] or match["host"], port, scheme.lower() == "mqtts", username, password, topic
    )


# --- payloads of a subscription -----------------------------------------------------------------------------

_HEX_DIGITS = string.hexdigits.encode("ascii")
_WHITESPACE = b" \t\r\n"
_CLEARLY_HEX_LENGTH = 32  # a meter's binary stream never has this many hex-digit bytes in a row (ids: 16-18)


def payload_bytes(payload: bytes, binary_stream: bool = False) -> Tuple[bytes, bool]:
    """Return the stream bytes a payload carries, and whether it was read as binary.

    A payload is hex text when it holds only hex digits and whitespace, in pairs. A short one that could also
    be a chunk of binary (``"3037"`` may be two digits of a meter id) is read the way the topic's previous
    payload was (``binary_stream``); one of 32 characters or more is always hex text.
    """
    if payload.translate(None, _HEX_DIGITS + _WHITESPACE):
        return payload, True
    digits = payload.translate(None, _WHITESPACE)
    if len(digits) % 2 or not digits or (binary_stream and len(payload) < _CLEARLY_HEX_LENGTH):
        return payload, True
    return bytes.fromhex(digits.decode("ascii")), False


@dataclass
class _TopicStream:
    reader: MeterReader
    binary: bool = False


class TopicReaders:
    """One MeterReader per topic (one meter per topic): payloads in, decoded dictionaries out; never raises.

    At most ``max_topics`` topics are followed; beyond that the least recently heard one is forgotten (its
    partial frames lost) and counted in ``evicted``, so a flood of topics cannot grow memory without bound.
    ``new_reader`` makes each topic's reader (``lambda: MeterReader(key)`` for ciphering meters).
    """

    def __init__(
        self, max_topics: int = DEFAULT_MAX_TOPICS, new_reader: Callable[[], MeterReader] = MeterReader
    ) -> None:
        """Start without any topic."""
        self._max_topics = max_topics
        self._new_reader = new_reader
        self._streams: collections.OrderedDict[str, _TopicStream] = collections.OrderedDict()
        self._evictions = LogLimiter()
        self._tap_errors = LogLimiter()
        self.payloads = 0
        self.evicted = 0
        # Called with the stream bytes of every payload, before decoding (e.g. to record a capture).
        self.on_data: Optional[Callable[[bytes], None]] = None

    def reader(self, topic: str) -> MeterReader | None:
        """Return the reader of a topic heard recently, None for one never heard (or forgotten)."""
        stream = self._streams.get(topic)
        return None if stream is None else stream.reader

    def read(self, topic: str, payload: bytes) -> List[Dict[str, Any]]:
        """Feed one payload of a topic to that topic's reader; return the dictionaries it completes."""
        self.payloads += 1
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = _TopicStream(self._new_reader())
            if len(self._streams) > self._max_topics:
                forgotten, _ = self._streams.popitem(last=False)
                self.evicted += 1
                if self._evictions.ready():
                    _LOGGER.warning(
                        "more than %d topics: forgot the least recently heard (%s), %d so far",
                        self._max_topics,
                        forgotten,
                        self.evicted,
                    )
        else:
            self._streams.move_to_end(topic)
        data, stream.binary = payload_bytes(payload, stream.binary)
        if self.on_data is not None:
            try:
                self.on_data(data)
            except Exception:  # the listener's failure must not cost the meter's data
                if self._tap_errors.ready():
                    _LOGGER.exception("the on_data listener of topic %s failed", topic)
        return stream.reader.read(data)


# --- publishing: topics, state JSON, discovery configs ------------------------------------------------------


def topic_part(text: str) -> str:
    """Return text made safe as one MQTT topic level and Home Assistant id (letters, digits, ``_``, ``-``)."""
    return _UNSAFE.sub("_", text) or "_"


def _json_value(value: object) -> str:
    """Show what JSON cannot hold natively: datetimes (and dates, times) in ISO 8601, bytes in hex."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return str(value)


def state_payload(message: Mapping[str, object]) -> bytes:
    """Return a decoded message as the JSON of its state topic (ISO 8601 datetimes)."""
    return json.dumps(message, default=_json_value, ensure_ascii=False, separators=(",", ":")).encode()


# (device_class, state_class) by unit; the *_hour fields are the cumulative registers 1.8.0..4.8.0.
_CUMULATIVE = "total_increasing"
_MEASUREMENT = "measurement"
_SENSOR_CLASSES: Dict[str, Tuple[Optional[str], str]] = {
    "Wh": ("energy", _CUMULATIVE),
    "varh": (None, _CUMULATIVE),  # Home Assistant's energy class takes Wh only; reactive energy stays plain
    "W": ("power", _MEASUREMENT),
    "var": ("reactive_power", _MEASUREMENT),
    "V": ("voltage", _MEASUREMENT),
    "A": ("current", _MEASUREMENT),
}
_NAME_WORDS = {"l1": "L1", "l2": "L2", "l3": "L3", "hour": ""}


def _sensor_name(name: str) -> str:
    """Return a field's entity name ("Voltage L1", "Active energy import" for the hourly register)."""
    if re.fullmatch(r"\d+(\.\d+){5}", name):
        return f"OBIS {name}"
    words = name.split("_")
    if words[-1] == "hour":
        words[1] = "energy"
    text = " ".join(filter(None, (_NAME_WORDS.get(word, word) for word in words)))
    return text[:1].upper() + text[1:]


def _sensor_classes(name: str) -> Tuple[Optional[str], Optional[str], str]:
    """Return a numeric field's device class, unit and state class (cumulative OBIS registers: D = 8)."""
    unit = FIELD_UNITS.get(name)
    if unit is not None:
        device_class, state_class = _SENSOR_CLASSES[unit]
        return device_class, unit, state_class
    if name.startswith("power_factor"):
        return "power_factor", None, _MEASUREMENT
    groups = name.split(".")
    return None, None, _CUMULATIVE if len(groups) == 6 and groups[3] == "8" else _MEASUREMENT


@dataclass(frozen=True)
class MeterDevice:
    """What Home Assistant shows about a meter: its id, manufacturer and model (meter type)."""

    meter_id: str
    manufacturer: Optional[str] = None
    model: Optional[str] = None


def discovery_config(
    device: MeterDevice,
    name: str,
    *,
    topic_prefix: str = DEFAULT_TOPIC_PREFIX,
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
) -> Tuple[str, Dict[str, Any]]:
    """Return the discovery topic and config of the Home Assistant sensor of one numeric field of a meter.

    Follows Home Assistant's MQTT discovery: ``<discovery_prefix>/sensor/<node_id>/<object_id>/config``, a
    stable ``unique_id``, the device, a ``value_template`` into the JSON of the meter's state topic (an absent
    field renders empty, which Home Assistant ignores for numeric sensors, so short lists keep the others'
    values), and availability on ``<topic_prefix>/status``.
    """
    node_id = f"amshan_{topic_part(device.meter_id)}"
    object_id = topic_part(name)
    device_class, unit, state_class = _sensor_classes(name)
    config: Dict[str, Any] = {
        "name": _sensor_name(name),
        "unique_id": f"{node_id}_{object_id}",
        "state_topic": f"{topic_prefix}/{topic_part(device.meter_id)}/state",
        "value_template": f"{{{{ value_json[{json.dumps(name)}] | default('') }}}}",
        "state_class": state_class,
        "availability_topic": f"{topic_prefix}/status",
        "payload_available": STATUS_ONLINE,
        "payload_not_available": STATUS_OFFLINE,
        "device": {
            "identifiers": [node_id],
            "name": f"{device.manufacturer or 'Meter'} {device.meter_id}",
            **({"manufacturer": device.manufacturer} if device.manufacturer else {}),
            **({"model": device.model} if device.model else {}),
        },
        "origin": {"name": "amshan", "sw_version": __version__},
    }
    if device_class is not None:
        config["device_class"] = device_class
    if unit is not None:
        config["unit_of_measurement"] = unit
    return f"{discovery_prefix}/sensor/{node_id}/{object_id}/config", config


# --- the publisher's outbox ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """One MQTT message to publish: topic, payload, and whether the broker retains it."""

    topic: str
    payload: bytes
    retain: bool = False


@dataclass
class _Meter:
    """What the outbox remembers of a meter: its device and the fields announced to Home Assistant."""

    device: MeterDevice
    announced: set[str] = field(default_factory=set)


class Outbox:
    """What a publisher has to send, in order, whatever the connection does: discovery configs, then states.

    ``add()`` turns each decoded message into the JSON state on ``<topic_prefix>/<meter_id>/state`` and, for
    each numeric field of that meter seen for the first time, a retained Home Assistant discovery config that
    goes out before the state. A message without a meter id (Aidon/Kaifa list 1) takes the id of the last
    message from the same ``stream`` that had one; until a stream has named its meter its messages are
    skipped (counted in ``unidentified``). At most ``max_buffer`` states wait: beyond that the oldest is
    dropped and counted in ``dropped`` with a rate-limited warning (it counts the states that never reach the
    broker: one dropped while it was being sent, yet delivered, is taken off it again). Configs are few (one
    per field of a meter) and are all kept, to be sent again by ``announce_all()`` on reconnect and when Home
    Assistant restarts.
    """

    def __init__(
        self,
        *,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        discovery_prefix: Optional[str] = DEFAULT_DISCOVERY_PREFIX,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        """Publish under ``topic_prefix``; announce to Home Assistant unless ``discovery_prefix`` is None."""
        if max_buffer < 1:
            raise ValueError(f"expected a buffer of at least 1 message, found {max_buffer}")
        self.topic_prefix = topic_prefix
        self.discovery_prefix = discovery_prefix
        self._max_buffer = max_buffer
        self._meters: Dict[str, _Meter] = {}
        self._stream_ids: Dict[str, str] = {}
        self._configs: Dict[str, bytes] = {}
        self._pending_configs: Dict[str, None] = {}  # topics of configs to send, in order
        self._states: Deque[Tuple[int, Outgoing]] = collections.deque()
        self._next_sequence = 0
        self._overflow_log = LogLimiter()
        self._unidentified_log = LogLimiter()
        self.added = 0
        self.dropped = 0
        self.unidentified = 0

    @property
    def status_topic(self) -> str:
        """Return the availability topic: ``online`` while connected, the last will ``offline`` after."""
        return f"{self.topic_prefix}/status"

    @property
    def pending(self) -> int:
        """Return how many states and configs wait to be published."""
        return len(self._states) + len(self._pending_configs)

    @property
    def max_buffer(self) -> int:
        """Return how many states may wait before the oldest is dropped."""
        return self._max_buffer

    @property
    def pending_states(self) -> int:
        """Return how many states wait to be published."""
        return len(self._states)

    def add(self, message: Mapping[str, object], stream: str = "") -> None:
        """Queue one decoded message of a stream: its new discovery configs, then its state."""
        meter_id = message.get(NEK_HAN_FIELD_METER_ID)
        if meter_id is not None:
            meter_id = self._stream_ids[stream] = str(meter_id)
        else:
            meter_id = self._stream_ids.get(stream)
            if meter_id is None:
                self.unidentified += 1
                if self._unidentified_log.ready():
                    _LOGGER.info(
                        "skipped %d messages without a meter id: waiting for one that names the meter",
                        self.unidentified,
                    )
                return
        self.added += 1
        if self.discovery_prefix is not None:
            self._announce(meter_id, message)
        topic = f"{self.topic_prefix}/{topic_part(meter_id)}/state"
        if len(self._states) >= self._max_buffer:
            self._states.popleft()
            self.dropped += 1
            if self._overflow_log.ready():
                _LOGGER.warning(
                    "MQTT buffer full (%d messages): dropped the oldest, %d so far",
                    self._max_buffer,
                    self.dropped,
                )
        self._states.append((self._next_sequence, Outgoing(topic, state_payload(message))))
        self._next_sequence += 1

    def _announce(self, meter_id: str, message: Mapping[str, object]) -> None:
        """Queue the configs of the message's numeric fields this meter has not announced yet."""
        meter = self._meters.get(meter_id)
        manufacturer = message.get(NEK_HAN_FIELD_METER_MANUFACTURER)
        model = message.get(NEK_HAN_FIELD_METER_TYPE)
        if meter is None:
            meter = self._meters[meter_id] = _Meter(MeterDevice(meter_id))
        if (manufacturer is not None and str(manufacturer) != meter.device.manufacturer) or (
            model is not None and str(model) != meter.device.model
        ):  # the device is described better now: announce every field again with it
            meter.device = MeterDevice(
                meter_id,
                str(manufacturer) if manufacturer is not None else meter.device.manufacturer,
                str(model) if model is not None else meter.device.model,
            )
            meter.announced.clear()
        assert self.discovery_prefix is not None
        for name, value in message.items():
            if name in meter.announced or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            meter.announced.add(name)
            topic, config = discovery_config(
                meter.device, name, topic_prefix=self.topic_prefix, discovery_prefix=self.discovery_prefix
            )
            self._configs[topic] = json.dumps(config, ensure_ascii=False).encode()
            self._pending_configs[topic] = None

    def announce_all(self) -> None:
        """Queue every discovery config again, ahead of the states (after a reconnect, or HA's birth)."""
        for topic in self._configs:
            self._pending_configs[topic] = None

    def peek(self) -> Optional[Tuple[int, Outgoing]]:
        """Return the next message to publish with its key for ``done()``, or None when nothing waits."""
        for topic in self._pending_configs:
            return -1, Outgoing(topic, self._configs[topic], retain=True)
        return self._states[0] if self._states else None

    def next_states(self, limit: int) -> List[Tuple[int, Outgoing]]:
        """Return up to ``limit`` states from the head (none while configs wait: they go first)."""
        if self._pending_configs:
            return []
        return list(itertools.islice(self._states, limit))

    def done(self, key: int, message: Outgoing) -> None:
        """Forget a message ``peek()`` gave once the broker has it (a state dropped meanwhile is not lost)."""
        if key < 0:
            if self._configs.get(message.topic) == message.payload:
                self._pending_configs.pop(message.topic, None)
        elif self._states and self._states[0][0] == key:
            self._states.popleft()
        else:  # a full buffer dropped this state while it was being sent, yet the broker has it
            self.dropped -= 1
