"""amshan 2021.12.1's API kept for its users: value types per meter and field."""

from __future__ import annotations

from datetime import datetime
from typing import Dict, List, Tuple

import pytest
from _support import corpus_frames

from amshan.autodecoder import AutoDecoder
from amshan.hdlc import HdlcFrameReader, HdlcMessageAssembler

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
