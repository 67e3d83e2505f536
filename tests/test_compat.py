"""amshan 2021.12.1's API kept for its users: value types, the decoder extension point, partial headers."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

import pytest
from _support import corpus_frames

from amshan.autodecoder import AutoDecoder, MeterItem
from amshan.hdlc import HdlcFrame, HdlcFrameReader, HdlcMessageAssembler
from amshan.tcp_connection_factory import create_tcp_frame_content_connection

POWER = ("active_power_import", "active_power_export", "reactive_power_import", "reactive_power_export")
ENERGY = tuple(f"{name}_hour" for name in POWER)
CURRENT = ("current_l1", "current_l2", "current_l3")
VOLTAGE = ("voltage_l1", "voltage_l2", "voltage_l3")
TEXT = ("list_ver_id", "meter_id", "meter_type", "meter_manufacturer")

# The types 2021.12.1 gave on the Norwegian lists (han-spec 6.1-6.3).  Aidon sends a scaler-unit with every
# register: scaler 0 (power) gives an int, any other (current and voltage 10^-1, energy 10^1) a float.
# Kaifa and Kamstrup send none: value * 10**scale with the documented scale, an int for a scale >= 0
# (Kaifa power and energy; Kamstrup power, voltage, energy x10), a float below (currents, Kaifa voltage).
TYPES: Dict[str, Dict[str, type]] = {
    "aidon": {**dict.fromkeys(POWER, int), **dict.fromkeys(CURRENT + VOLTAGE + ENERGY, float)},
    "kaifa": {**dict.fromkeys(POWER + ENERGY, int), **dict.fromkeys(CURRENT + VOLTAGE, float)},
    "kamstrup": {**dict.fromkeys(POWER + ENERGY + VOLTAGE, int), **dict.fromkeys(CURRENT, float)},
}
for _types in TYPES.values():
    _types.update(dict.fromkeys(TEXT, str), meter_datetime=datetime)


def messages(vector: Dict[str, object]) -> List[bytes]:
    """Return the information fields of a corpus vector's whole messages (HDLC) or the LLC PDU itself."""
    raw = bytes.fromhex(str(vector["hex"]))
    if vector["layer"] == "llc":
        return [raw]
    assembler = HdlcMessageAssembler()
    return [content for content in map(assembler.add, HdlcFrameReader().read(raw)) if content]


NORWEGIAN: List[Tuple[str, str, bytes]] = [
    (str(vector["id"]), str(vector["meter"]), content)
    for vector in corpus_frames(valid=True, country="NO")
    if vector["meter"] in TYPES
    and vector["list"] in ("list1", "list2", "list3")
    and vector["layer"] in ("hdlc", "llc")
    for content in messages(vector)
]


def test_the_corpus_has_the_norwegian_lists_of_each_meter() -> None:
    assert {meter for _, meter, _ in NORWEGIAN} == set(TYPES)
    assert len(NORWEGIAN) >= 50


@pytest.mark.parametrize("vector_id, meter, content", NORWEGIAN, ids=[case[0] for case in NORWEGIAN])
def test_every_field_has_the_type_2021_12_1_gave_it(vector_id: str, meter: str, content: bytes) -> None:
    decoder = AutoDecoder()
    first = decoder.decode_frame_content(content)
    decoder.decode_frame_content(content)  # the second sighting makes the shape
    again = decoder.decode_frame_content(content)  # the third time through the shape cache
    message = AutoDecoder().decode_message(content)
    assert first is not None and again is not None and message is not None
    assert decoder.shape_cache_hits == 1
    for found in (first, again, {item.name: item.value for item in message.items}):
        for key, value in found.items():
            assert type(value) is TYPES[meter][key], (key, value)


def test_a_scaled_aidon_energy_register_is_an_exact_float() -> None:
    (vector,) = corpus_frames(id="no-aidon-list3-amshan-llc")
    decoded = AutoDecoder().decode_frame_content(bytes.fromhex(vector["hex"]))
    assert decoded is not None
    energy = decoded["active_power_import_hour"]  # 2272138 x 10^1 Wh
    assert type(energy) is float and energy == 22721380 == vector["values"]["active_power_import_hour"]


# Headers of a frame built byte by byte (HdlcFrame() + append, 2021.12.1's TestHdlcFrameHeader): a field is
# None until its octets are all there.  One real corpus frame per address layout (octets of each address).


def _first_frame_per_address_layout() -> Dict[Tuple[int, int], bytes]:
    """Return one valid corpus frame (between its flags) for each (destination, source) address length."""
    found: Dict[Tuple[int, int], bytes] = {}
    for vector in corpus_frames(layer="hdlc", valid=True):
        for frame in HdlcFrameReader().read(bytes.fromhex(vector["hex"])):
            data = frame.frame_data
            ends = [at + 1 for at in range(2, len(data)) if data[at] & 1][:2]  # bit 0 ends an address
            if frame.is_valid and len(ends) == 2:
                found.setdefault((ends[0] - 2, ends[1] - ends[0]), data)
    return found


LAYOUTS = _first_frame_per_address_layout()


def test_the_corpus_has_frames_with_long_addresses() -> None:
    assert {(1, 1), (1, 2), (2, 1), (1, 4)} <= set(LAYOUTS)


def expected_header(data: bytes, layout: Tuple[int, int], count: int) -> Dict[str, Optional[object]]:
    """The header fields 2021.12.1 reported after ``count`` octets of a frame with these address lengths."""
    seen = data[:count]
    destination_end = 2 + layout[0]
    control = destination_end + layout[1]
    format_read = count >= 2
    return {
        "frame_format": int.from_bytes(data[:2], "big") if format_read else None,
        "frame_format_type": data[0] >> 4 if format_read else None,
        "segmentation": bool(data[0] & 0x08) if format_read else None,
        "frame_length": int.from_bytes(data[:2], "big") & 0x7FF if format_read else None,
        "destination_address": seen[2:destination_end] if count >= destination_end else None,
        "source_address": seen[destination_end:control] if count >= control else None,
        "information_position": control + 3 if count >= control else None,
        "control": data[control] if count > control else None,
        "header_check_sequence": int.from_bytes(data[control + 1 : control + 3], "big")
        if count >= control + 3
        else None,
    }


@pytest.mark.parametrize("layout", sorted(LAYOUTS), ids=[f"addresses{d}+{s}" for d, s in sorted(LAYOUTS)])
def test_partial_headers_at_every_byte_count(layout: Tuple[int, int]) -> None:
    data = LAYOUTS[layout]
    frame = HdlcFrame()
    for count in range(len(data) + 1):
        if count:
            frame.append(data[count - 1])
        expected = expected_header(data, layout, count)
        for built in (frame, HdlcFrame(data[:count])):
            header = built.header
            header.update()  # 2021.12.1 callers call it; the fields never depend on it
            found = {name: getattr(header, name) for name in expected}
            assert found == expected, count


# AutoDecoder.decoder_functions: 2021.12.1's list of (name, decoder) pairs, users appended their own to it.

# A Landis+Gyr EMBRIQ list 2, which no built-in meter decoder takes: its bytes hold the list id 0a 0b
# "EMBRIQ_V1_1" and 09 06 0100010700ff 06 000024f4, active power import 9460 W.
LANDIS_GYR = corpus_frames(id="no-landisgyr-list2-lg-e350-1")[0]
EMBRIQ_STATED = {"list_ver_id": "EMBRIQ_V1_1", "active_power_import": 0x24F4}
AIDON = corpus_frames(id="no-aidon-list2-hass-short")[0]
KAIFA_LIST_2 = next(
    v
    for v in corpus_frames(valid=True, meter="kaifa", list="list2", layer="hdlc")
    if {"list_ver_id", "active_power_import"} <= set(v["values"]) and not v["frames"]
)
ACTIVE_POWER_IMPORT = bytes.fromhex("0906 0100010700ff 06")  # OBIS 1.0.1.7.0.255, then a double-long-unsigned


def embriq(content: bytes) -> Dict[str, object]:
    """A user's decoder of the EMBRIQ list: its list id and active power import; raises on anything else."""
    start = content.find(b"\x0a\x0bEMBRIQ")
    power = content.find(ACTIVE_POWER_IMPORT)
    if start < 0 or power < 0:
        raise ValueError("not an EMBRIQ list")
    at = power + len(ACTIVE_POWER_IMPORT)
    return {
        "meter_manufacturer": "Landis+Gyr",
        "list_ver_id": content[start + 2 : start + 13].decode(),
        "active_power_import": int.from_bytes(content[at : at + 4], "big"),
    }


@pytest.fixture
def own_list(monkeypatch: pytest.MonkeyPatch) -> List[Tuple[str, Any]]:
    """Give the test its own copy of AutoDecoder.decoder_functions, restored afterwards."""
    functions: List[Tuple[str, Any]] = list(AutoDecoder.decoder_functions)
    monkeypatch.setattr(AutoDecoder, "decoder_functions", functions)
    return functions


def test_decoder_functions_lists_the_three_meters_of_2021_12_1() -> None:
    assert [name for name, _ in AutoDecoder.decoder_functions] == ["Aidon", "Kaifa", "Kamstrup"]
    assert all(callable(function) for _, function in AutoDecoder.decoder_functions)


async def test_an_appended_decoder_is_tried_end_to_end(own_list: List[Tuple[str, Any]]) -> None:
    """A meter behind a real TCP socket, read by SmartMeterFrameContentProtocol, decoded by AutoDecoder."""
    AutoDecoder.decoder_functions.append(("EMBRIQ", embriq))
    wire = [bytes.fromhex(AIDON["hex"]), bytes.fromhex(LANDIS_GYR["hex"]), b"\x7e\x00\x13\x7e"]
    wire += [bytes.fromhex(KAIFA_LIST_2["hex"]), bytes.fromhex(LANDIS_GYR["hex"])]

    async def meter(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"".join(wire))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(meter, "127.0.0.1", 0)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    port = server.sockets[0].getsockname()[1]
    transport, _ = await create_tcp_frame_content_connection(queue, None, "127.0.0.1", port)
    try:
        contents = [await asyncio.wait_for(queue.get(), timeout=10) for _ in range(4)]
    finally:
        transport.close()
        server.close()
        await server.wait_closed()
    decoder = AutoDecoder()
    found = []
    for content in contents:
        decoded = decoder.decode_frame_content(content)
        assert decoded is not None
        name = decoder.previous_success_decoder
        found.append((name, decoded["list_ver_id"], decoded["active_power_import"]))
    stated = EMBRIQ_STATED
    assert found == [
        ("Aidon", AIDON["values"]["list_ver_id"], AIDON["values"]["active_power_import"]),
        ("EMBRIQ", stated["list_ver_id"], stated["active_power_import"]),
        ("Kaifa", KAIFA_LIST_2["values"]["list_ver_id"], KAIFA_LIST_2["values"]["active_power_import"]),
        ("EMBRIQ", stated["list_ver_id"], stated["active_power_import"]),
    ]
    assert decoder.decode_frame_content(contents[1]) == embriq(contents[1])
    items = decoder.decode_items(contents[1])
    assert items == [
        MeterItem("1.1.0.2.129.255", "list_ver_id", stated["list_ver_id"], None),
        MeterItem("1.0.1.7.0.255", "active_power_import", stated["active_power_import"], "W"),
    ]


def landis_gyr_content() -> bytes:
    (content,) = messages(LANDIS_GYR)
    return content


def test_without_the_added_decoder_the_generic_one_decodes_that_list() -> None:
    decoder = AutoDecoder()
    decoded = decoder.decode_frame_content(landis_gyr_content())
    assert decoder.previous_success_decoder == "Generic"
    assert decoded is not None and decoded["list_ver_id"] == EMBRIQ_STATED["list_ver_id"]


def failing(content: bytes) -> Dict[str, object]:
    raise KeyError(content[:4])


def not_a_dictionary(content: bytes) -> Any:
    return [content]


def test_added_decoders_that_do_not_fit_never_raise(
    own_list: List[Tuple[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    own_list += [("Failing", failing), ("List", not_a_dictionary), ("EMBRIQ", embriq)]
    decoder = AutoDecoder()
    assert decoder.decode_frame_content(landis_gyr_content()) == embriq(landis_gyr_content())
    assert decoder.previous_success_decoder == "EMBRIQ"
    with caplog.at_level(logging.WARNING, logger="amshan.autodecoder"):
        assert decoder.decode_frame_content(b"\x01\x02\x03\x04\x05") is None  # no notification, none fits
    assert decoder.decode_message(b"") is None
    assert decoder.previous_success_decoder == "EMBRIQ"
    [warning] = [record.getMessage() for record in caplog.records]
    assert "Failing: KeyError(b'\\x01\\x02\\x03\\x04')" in warning  # what each added decoder said
    assert "List: returned list, not a dictionary" in warning
    assert "EMBRIQ: ValueError('not an EMBRIQ list')" in warning


def test_an_added_decoder_may_return_fields_without_a_name(own_list: List[Tuple[str, Any]]) -> None:
    """A key that is no field name stays as it is (no unit), as the generic decoder keys unknown codes."""

    def frequency(content: bytes) -> Dict[str, object]:
        return {"1.0.14.7.0.255": 50.0, "active_power_import": int.from_bytes(content[-4:], "big")}

    own_list.append(("Frequency", frequency))
    content = landis_gyr_content()
    decoder = AutoDecoder()
    assert decoder.decode_frame_content(content) == frequency(content)
    assert decoder.decode_items(content) == [
        MeterItem("1.0.14.7.0.255", None, 50.0, None),
        MeterItem("1.0.1.7.0.255", "active_power_import", int.from_bytes(content[-4:], "big"), "W"),
    ]
    message = decoder.decode_message(content)
    assert message is not None and message.manufacturer is None and message.date_time is None


def test_removing_a_built_in_pair_turns_that_decoder_off(own_list: List[Tuple[str, Any]]) -> None:
    (content,) = messages(KAIFA_LIST_2)
    assert AutoDecoder().decode_frame_content(content) is not None
    own_list[:] = [entry for entry in own_list if entry[0] != "Kaifa"]
    assert AutoDecoder().decode_frame_content(content) is None
