"""MQTT both ways against a real mosquitto: Home Assistant discovery and states, outages, the MQTT source."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import aiomqtt
import pytest
from _mqtt import Mosquitto, Recorder, kaifa_list1_frame, make_password_file
from _processes import free_tcp_port, random_chunks, vector_frames
from _support import corpus_frames
from test_decode_corpus import DISPUTED, same

from amshan.mqtt import BrokerError, MqttPublisher, MqttSettings, MqttSource
from amshan.mqtt_core import (
    BrokerUrl,
    Outbox,
    TopicReaders,
    discovery_config,
    parse_broker_url,
    payload_bytes,
)
from amshan.reader import MeterReader
from amshan.simulator import PLAIN_METERS, bundled_frames

# Home Assistant's sensor device classes and the units each accepts (HA developer docs, sensor entity), for
# the classes amshan uses; power_factor also takes no unit (a ratio).
HA_UNITS = {
    "power": {"W", "kW"},
    "energy": {"Wh", "kWh", "MWh"},
    "reactive_power": {"var", "kvar"},
    "voltage": {"V", "mV"},
    "current": {"A", "mA"},
    "power_factor": {None, "%"},
}
HA_REQUIRED = {"state_topic", "unique_id", "device", "name", "value_template", "state_class"}
ENERGY_DASHBOARD = {"active_power_import_hour", "active_power_export_hour"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path).running() as server:
        yield server


def settings_for(server: Mosquitto, **kwargs: Any) -> MqttSettings:
    return MqttSettings(parse_broker_url(server.url), max_back_off=0.2, **kwargs)


# --- sans-IO -----------------------------------------------------------------------------------------------


def test_broker_urls() -> None:
    assert parse_broker_url("mqtt://homeassistant.local") == BrokerUrl("homeassistant.local", 1883)
    url = parse_broker_url("mqtts://us%40er:p%3Ass@[::1]:8884/meters/+/raw")
    assert (url.host, url.port, url.tls, url.username, url.password) == ("::1", 8884, True, "us@er", "p:ss")
    assert url.topic == "meters/+/raw"
    assert parse_broker_url("mqtt://h/a/#").topic == "a/#"  # '#' is a wildcard here, not a URL fragment
    assert "p:ss" not in str(url) and str(url) == "mqtts://us@er@[::1]:8884/meters/+/raw"
    for bad in ("http://h", "mqtt://", "mqtt://h:0", "mqtt://h:99999", "h:1883", "mqtt://a:b:c"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)


def test_payloads_are_binary_or_hex_text() -> None:
    frame = bundled_frames("aidon")[0]
    assert payload_bytes(frame) == (frame, True)
    spaced = " ".join(f"{b:02X}" for b in frame).encode()
    assert payload_bytes(spaced) == (frame, False)
    assert payload_bytes(frame.hex().encode() + b"\r\n") == (frame, False)
    assert payload_bytes(b"abc") == (b"abc", True)  # odd number of digits: not hex text
    assert payload_bytes(b"") == (b"", True)
    # a chunk of a binary stream that looks like hex (two digits of a meter id) stays binary in a binary
    # stream; a long run of hex digits is hex text whatever came before
    assert payload_bytes(b"3037", binary_stream=True) == (b"3037", True)
    assert payload_bytes(b"3037") == (b"07", False)
    assert payload_bytes(frame.hex().encode(), binary_stream=True) == (frame, False)


def test_discovery_config_follows_home_assistant() -> None:
    device_with = {"meter_id": "123/4", "meter_manufacturer": "Aidon", "meter_type": "6525"}
    outbox = Outbox(topic_prefix="home/amshan")
    outbox.add({**device_with, "active_power_import": 10, "active_power_import_hour": 1, "power_factor": 0.9})
    configs = {}
    while (item := outbox.peek()) is not None and item[1].retain:
        configs[item[1].topic] = json.loads(item[1].payload)
        outbox.done(*item)
    assert set(configs) == {
        f"homeassistant/sensor/amshan_123_4/{name}/config"
        for name in ("active_power_import", "active_power_import_hour", "power_factor")
    }
    power = configs["homeassistant/sensor/amshan_123_4/active_power_import/config"]
    assert power["device"] == {
        "identifiers": ["amshan_123_4"],
        "name": "Aidon 123/4",
        "manufacturer": "Aidon",
        "model": "6525",
    }
    assert power["state_topic"] == "home/amshan/123_4/state"
    assert power["availability_topic"] == "home/amshan/status"
    assert (power["device_class"], power["unit_of_measurement"], power["state_class"]) == (
        "power",
        "W",
        "measurement",
    )
    energy = configs["homeassistant/sensor/amshan_123_4/active_power_import_hour/config"]
    assert (energy["device_class"], energy["unit_of_measurement"], energy["state_class"]) == (
        "energy",
        "Wh",
        "total_increasing",
    )
    assert energy["name"] == "Active energy import"
    assert "unit_of_measurement" not in configs["homeassistant/sensor/amshan_123_4/power_factor/config"]
    state = outbox.peek()
    assert state is not None and state[1].topic == "home/amshan/123_4/state" and not state[1].retain
    _, tariff = discovery_config(outbox_device("1"), "1.0.1.8.1.255")
    assert tariff["state_class"] == "total_increasing" and "device_class" not in tariff
    assert tariff["value_template"] == "{{ value_json[\"1.0.1.8.1.255\"] | default('') }}"


def outbox_device(meter_id: str) -> Any:
    from amshan.mqtt_core import MeterDevice

    return MeterDevice(meter_id)


def test_outbox_takes_list1_ids_and_bounds_its_buffer() -> None:
    outbox = Outbox(discovery_prefix=None, max_buffer=3)
    outbox.add({"active_power_import": 1}, stream="a")  # no meter named on stream a yet
    assert outbox.unidentified == 1 and outbox.pending == 0
    outbox.add({"meter_id": "A", "active_power_import": 2}, stream="a")
    outbox.add({"meter_id": "B", "active_power_import": 3}, stream="b")
    outbox.add({"active_power_import": 4}, stream="a")
    outbox.add({"active_power_import": 5}, stream="b")
    assert outbox.dropped == 1 and outbox.pending == 3
    sent = []
    while (item := outbox.peek()) is not None:
        sent.append((item[1].topic, json.loads(item[1].payload)["active_power_import"]))
        outbox.done(*item)
    assert sent == [("amshan/B/state", 3), ("amshan/A/state", 4), ("amshan/B/state", 5)]
    # a state dropped while it was being published is not confused with the next one
    for power in (6, 7, 8):
        outbox.add({"active_power_import": power}, stream="a")
    key, head = outbox.peek() or (0, None)
    outbox.add({"active_power_import": 9}, stream="a")  # drops 6, the one being published
    assert head is not None and outbox.dropped == 2
    outbox.done(key, head)  # the broker has 6 after all: only the state 1 was lost
    assert outbox.dropped == 1
    assert [json.loads(m.payload)["active_power_import"] for _, m in [outbox.peek()] if m] == [7]
    # a QoS 0 batch: the two oldest dropped while the batch was in flight, and still delivered
    batch = outbox.next_states(3)
    for power in (10, 11):
        outbox.add({"active_power_import": power}, stream="a")
    assert outbox.dropped == 3
    for item in batch:
        outbox.done(*item)
    assert outbox.dropped == 1 and outbox.pending == 2  # 10 and 11 wait; 7, 8, 9 were delivered


def test_configs_go_first_and_again_on_announce_all() -> None:
    outbox = Outbox()
    outbox.add({"meter_id": "A", "active_power_import": 1, "voltage_l1": 230.0})
    assert outbox.next_states(10) == []  # no state goes out in a batch before the configs
    kinds = []
    while (item := outbox.peek()) is not None:
        kinds.append(item[1].retain)
        outbox.done(*item)
    assert kinds == [True, True, False]
    outbox.add({"meter_id": "A", "active_power_import": 2})
    outbox.add({"meter_id": "A", "active_power_import": 3})
    assert [json.loads(m.payload)["active_power_import"] for _, m in outbox.next_states(10)] == [2, 3]
    outbox.announce_all()
    order = []
    while (item := outbox.peek()) is not None:
        order.append(item[1].topic.rsplit("/", 2)[-2] if item[1].retain else "state")
        outbox.done(*item)
    assert order == ["active_power_import", "voltage_l1", "state", "state"]


def test_topic_readers_decode_segmented_and_ciphered_streams_with_the_meters_keys() -> None:
    [ciphered] = corpus_frames(id="at-landisgyr-hdlc-gh501-1")  # general-glo-ciphering
    [segmented] = corpus_frames(id="ch-iskra-hdlc-sdc-am550-unencrypted-valid-data")  # in 5 frames
    keys = {name: bytes.fromhex(ciphered["keys"][name]) for name in ("encryption_key", "authentication_key")}
    readers = TopicReaders(new_reader=lambda: MeterReader(**keys))
    decoded = {
        topic: [d for frame in vector_frames(vector) for d in readers.read(topic, frame.hex().encode())]
        for topic, vector in (("m/ciphered", ciphered), ("m/segmented", segmented))
    }
    assert len(decoded["m/ciphered"]) == 1 and decoded["m/ciphered"][0]
    assert len(decoded["m/segmented"]) == 1
    assert all(same(want, decoded["m/segmented"][0].get(k)) for k, want in segmented["values"].items())
    without_keys = TopicReaders()
    assert [d for f in vector_frames(ciphered) for d in without_keys.read("m", f)] == []


def test_topic_readers_are_bounded() -> None:
    readers = TopicReaders(max_topics=5)
    frame = bundled_frames("kamstrup")[0]
    for n in range(20):
        readers.read(f"t/{n}", frame[:10])
    assert readers.evicted == 15 and readers.reader("t/0") is None and readers.reader("t/19") is not None
    assert readers.read("t/19", frame[10:]) != []  # a followed topic keeps its partial frame


def test_topic_readers_tap_hands_over_each_payloads_stream_bytes_and_cannot_cost_a_message() -> None:
    frame = bundled_frames("kamstrup")[0]
    seen: list[bytes] = []
    readers = TopicReaders()
    readers.on_data = seen.append
    assert readers.read("m", frame[:10]) == [] and readers.read("m", frame[10:].hex(" ").encode()) != []
    assert seen == [frame[:10], frame[10:]]  # the hex payload as the bytes it spells

    def broken(data: bytes) -> None:
        raise OSError("disk full")

    readers.on_data = broken
    assert readers.read("m", frame) != []


# --- publishing to a real broker ---------------------------------------------------------------------------


def meter_vectors(meter: str) -> list[dict[str, Any]]:
    """Real single-message captures of a meter with values stated and checked; longer lists first."""
    vectors = [
        v
        for v in corpus_frames(layer="hdlc", valid=True, encrypted=False, values_checked=True, meter=meter)
        if v["values"] and v["id"] not in DISPUTED
    ]
    return sorted(vectors, key=lambda v: "meter_id" not in v["values"])


async def publish_all(publisher: MqttPublisher, deadline: float = 10.0) -> None:
    """Run the publisher until its outbox is drained."""
    task = asyncio.ensure_future(publisher.run())
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while publisher.outbox.pending or publisher.published == 0:
        assert not task.done(), task.exception()
        assert loop.time() < end, "the publisher did not drain its outbox"
        await asyncio.sleep(0.01)
    publisher.stop()
    await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("meter", PLAIN_METERS)
async def test_discovery_and_states_read_back_by_a_subscriber(broker: Mosquitto, meter: str) -> None:
    vectors = meter_vectors(meter)
    assert vectors, f"no {meter} vectors"
    outbox = Outbox()
    publisher = MqttPublisher(settings_for(broker), outbox, qos=1)
    expected: list[tuple[str, dict[str, Any]]] = []
    stream_id = None
    for vector in vectors:
        reader = MeterReader()
        decoded = [d for frame in vector_frames(vector) for d in reader.read(frame)]
        assert len(decoded) == 1, vector["id"]
        stream_id = decoded[0].get("meter_id", stream_id)
        publisher.add(decoded[0])
        expected.append((f"amshan/{stream_id}/state", vector["values"]))
    simulator = MeterReader()  # the simulator's frames too, as one stream
    simulated = [d for frame in bundled_frames(meter) for d in simulator.read(frame)]
    unnamed = next(i for i, d in enumerate(simulated) if "meter_id" in d)  # list 1 before any id: skipped
    for decoded in simulated:
        publisher.add(decoded, stream="simulator")
    async with Recorder(broker.port) as recorder:
        await publish_all(publisher)
        await recorder.wait_for(
            lambda: sum(len(v) for k, v in recorder.messages.items() if k.endswith("/state")) == outbox.added,
            "every state",
        )
    assert outbox.unidentified == unnamed
    states = {
        t: [json.loads(p) for p in payloads] for t, payloads in recorder.messages.items() if "/state" in t
    }
    for topic, values in expected:
        assert any(all(same(want, state.get(key)) for key, want in values.items()) for state in states[topic])
        async with Recorder(broker.port) as later:  # what a Home Assistant subscribing now gets: retained
            await later.wait_for(lambda: later.count >= len(recorder.messages) - len(states), "the retained")
    configs = {t: json.loads(p[0]) for t, p in recorder.messages.items() if t.startswith("homeassistant/")}
    assert configs and {t: p[0] for t, p in later.messages.items()} == {
        **{t: recorder.messages[t][0] for t in configs},
        "amshan/status": b"offline",  # a clean stop
    }
    assert all(later.retained[t] == [True] for t in later.messages)
    sent_fields = {
        (topic.split("/")[1], name)
        for topic, payloads in states.items()
        if topic.endswith("/state")
        for payload in payloads
        for name, value in payload.items()
        if isinstance(value, (int, float))
    }
    announced = {
        (c["state_topic"].split("/")[1], c["value_template"].split('"')[1]) for c in configs.values()
    }
    assert announced == sent_fields and len(configs) == len(sent_fields)  # one sensor per field sent
    for config in configs.values():
        assert set(config) >= HA_REQUIRED, config
        assert config["device"]["identifiers"] and config["device"]["manufacturer"].lower() == meter
        if "device_class" in config:
            assert config.get("unit_of_measurement") in HA_UNITS[config["device_class"]], config
        field = config["value_template"].split('"')[1]
        cumulative = field.endswith("_hour")
        assert config["state_class"] == ("total_increasing" if cumulative else "measurement")
        if field in ENERGY_DASHBOARD:
            assert config["device_class"] == "energy"
    assert any('_hour"' in c["value_template"] for c in configs.values())  # the cumulative registers too
    assert recorder.messages["amshan/status"] == [b"online", b"offline"]


async def test_broker_restart_loses_nothing_and_the_buffer_bound_holds(tmp_path: Path) -> None:
    server = Mosquitto(tmp_path, persistence=True)
    server.start()
    outbox = Outbox(max_buffer=25)
    publisher = MqttPublisher(settings_for(server), outbox, qos=1)
    added_up: list[int] = []
    added_down: list[int] = []
    peak = 0
    try:
        async with Recorder(server.port, "#", client_id="recorder", clean_session=False) as recorder:
            task = asyncio.ensure_future(publisher.run())
            number = 0

            async def feed(count: int, into: list[int]) -> None:
                nonlocal number, peak
                for _ in range(count):
                    number += 1
                    publisher.add({"meter_id": "M", "active_power_import": number})
                    into.append(number)
                    peak = max(peak, outbox.pending_states)
                    await asyncio.sleep(0.005)

            await feed(100, added_up)
            await recorder.wait_for(lambda: outbox.pending == 0, "the broker to take what was read")
            await asyncio.get_running_loop().run_in_executor(None, server.stop)
            await feed(100, added_down)  # 100 read while the broker is away: only the newest 25 can wait
            assert outbox.pending_states == 25 and peak <= 25
            connections = publisher.connections
            await asyncio.get_running_loop().run_in_executor(None, server.start)
            await recorder.wait_for(lambda: publisher.connections > connections, "the publisher to reconnect")
            await feed(100, added_up)
            await recorder.wait_for(lambda: outbox.pending == 0, "the publisher to drain")
            await recorder.wait_for(
                lambda: len(recorder.messages["amshan/M/state"]) >= number - outbox.dropped, "every state"
            )
            received = [json.loads(p)["active_power_import"] for p in recorder.messages["amshan/M/state"]]
            publisher.stop()
            await asyncio.wait_for(task, 10)
    finally:
        server.stop()
    counts = Counter(received)
    assert all(counts[n] == 1 for n in added_up), [n for n in added_up if counts[n] != 1]
    # the buffer held the newest 25 while the broker was away (until the publisher had sent them again): the
    # oldest read while it was down were dropped, each counted; nothing read while amshan was connected
    assert 75 <= outbox.dropped < 100
    assert sorted(received) == received == sorted(added_up + added_down[outbox.dropped :])
    assert publisher.connections == 2
    # published on each connection (live: retain flag clear; the resubscription also got it retained)
    assert recorder.retained["homeassistant/sensor/amshan_M/active_power_import/config"].count(False) == 2
    live = [
        p for p, r in zip(recorder.messages["amshan/status"], recorder.retained["amshan/status"]) if not r
    ]
    assert live.count(b"online") == 2 and live[-1] == b"offline"  # (mosquitto sends our will as it stops)


async def test_discovery_is_republished_on_reconnect_and_on_home_assistant_birth(broker: Mosquitto) -> None:
    outbox = Outbox()
    publisher = MqttPublisher(settings_for(broker), outbox)
    config_topic = "homeassistant/sensor/amshan_M/active_power_import/config"
    async with Recorder(broker.port) as recorder:
        task = asyncio.ensure_future(publisher.run())
        publisher.add({"meter_id": "M", "active_power_import": 1})
        await recorder.wait_for(lambda: len(recorder.messages[config_topic]) == 1, "the config")
        async with aiomqtt.Client("127.0.0.1", broker.port) as home_assistant:
            await home_assistant.publish("homeassistant/status", b"online")
        await recorder.wait_for(lambda: len(recorder.messages[config_topic]) == 2, "the config again")
        publisher.stop()
        await asyncio.wait_for(task, 10)
    assert recorder.messages["amshan/M/state"] == [b'{"meter_id":"M","active_power_import":1}']


async def test_connection_errors_are_clear(tmp_path: Path) -> None:
    password_file = make_password_file(tmp_path, "meter", "right")
    server = Mosquitto(tmp_path, password_file=password_file)
    server.start()
    try:
        wrong = MqttSettings(parse_broker_url(f"mqtt://meter:wrong@127.0.0.1:{server.port}"))
        with pytest.raises(BrokerError, match="refused the login"):
            await asyncio.wait_for(MqttPublisher(wrong, Outbox()).run(), 10)
        right = MqttSettings(parse_broker_url(f"mqtt://meter:right@127.0.0.1:{server.port}"))
        publisher = MqttPublisher(right, Outbox())
        task = asyncio.ensure_future(publisher.run())
        while publisher.connections == 0:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.01)
        publisher.stop()
        await asyncio.wait_for(task, 10)
    finally:
        server.stop()
    unreachable = MqttSettings(parse_broker_url(f"mqtt://127.0.0.1:{free_tcp_port()}"))
    with pytest.raises(BrokerError, match="refused"):
        await asyncio.wait_for(MqttSource(unreachable, "x").run(lambda t, d: None), 10)


# --- the MQTT source ---------------------------------------------------------------------------------------


async def test_source_decodes_chunked_binary_and_hex_topics_exactly_once(
    broker: Mosquitto,
) -> None:
    rng = random.Random(13)
    streams: dict[str, tuple[list[bytes], bool]] = {}
    expected: dict[str, list[int]] = {}
    for index in range(6):
        powers = [index * 1000 + n for n in range(40)]
        data = b"".join(rng.randbytes(rng.randint(0, 30)) + kaifa_list1_frame(p) for p in powers)
        streams[f"meters/{index}/raw"] = (random_chunks(data, rng), index % 2 == 1)
        expected[f"meters/{index}/raw"] = powers
    received: dict[str, list[int]] = {topic: [] for topic in streams}
    source = MqttSource(settings_for(broker), "meters/+/raw", qos=1)

    def deliver(topic: str, dictionary: dict[str, Any]) -> None:
        received[topic].append(dictionary["active_power_import"])

    task = asyncio.ensure_future(source.run(deliver))
    await asyncio.sleep(0)
    await wait_for_log(broker, "meters/+/raw")
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        positions = dict.fromkeys(streams, 0)
        while any(positions[t] < len(streams[t][0]) for t in streams):  # topics interleaved at random
            topic = rng.choice([t for t in streams if positions[t] < len(streams[t][0])])
            chunks, as_hex = streams[topic]
            chunk = chunks[positions[topic]]
            positions[topic] += 1
            payload = " ".join(f"{b:02x}" for b in chunk).encode() if as_hex else chunk
            await client.publish(topic, payload, qos=1)
    deadline = asyncio.get_running_loop().time() + 10
    while received != expected and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    source.stop()
    await asyncio.wait_for(task, 10)
    assert received == expected


async def wait_for_log(server: Mosquitto, text: str, timeout: float = 10.0) -> None:
    """Wait until mosquitto's log mentions text (a subscription it accepted)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while text not in server.log():
        assert asyncio.get_running_loop().time() < deadline, f"mosquitto never logged {text!r}"
        await asyncio.sleep(0.01)
