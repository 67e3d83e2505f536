"""amshan 2021.12.1's API kept for its users: value types, the decoder extension point, partial headers."""

from __future__ import annotations

from datetime import datetime
from typing import Dict, List, Optional, Tuple

import pytest
from _support import corpus_frames

from amshan.autodecoder import AutoDecoder
from amshan.hdlc import HdlcFrame, HdlcFrameReader, HdlcMessageAssembler

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
    again = decoder.decode_frame_content(content)  # the second time through the shape cache
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
