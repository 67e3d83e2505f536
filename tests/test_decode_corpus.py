"""Every valid Norwegian and Swedish corpus message decodes to the values the corpus states.

Run as a script (``python tests/test_decode_corpus.py``) it prints, per country and manufacturer, how many
corpus vectors with stated values decode with all of them equal, and why the others do not.
"""

from __future__ import annotations

import math
import struct
import sys
from collections import defaultdict
from datetime import datetime
from typing import Any, Callable, Dict, List

import pytest
from _support import load_corpus

from amshan import DecodeError, aidon, generic, kaifa, kamstrup
from amshan.autodecoder import AutoDecoder
from amshan.hdlc import HdlcFrameReader, HdlcMessageAssembler

DECODED_LAYERS = ("hdlc", "llc", "apdu", "notification_body")
NOTIFICATION_HEADER_WITHOUT_DATE_TIME = bytes.fromhex(
    "0f4000000000"
)  # tag, invoke id 0x40000000, date-time 00

# Vectors whose stated 1.8.0 energy contradicts their own bytes (reported on issue 3): the source printed
# the register through a 32-bit float. For each: the register octets in the frame, and the scaler sent.
DISPUTED = {
    "no-aidon-list3-gh1119-1": ("0600a729d9", 1),
    "no-aidon-list3-gh1119-2": ("0600a72a8a", 1),
    "no-aidon-list3-gh1119-3": ("0600a72a8a", 1),
    "no-aidon-list3-gh1119-4": ("0600a72daf", 1),
    "se-aidon-se-list-gh143-2": ("0603b85d4b", 0),
}

METER_DECODERS: Dict[str, Callable[[bytes], Dict[str, Any]]] = {
    "aidon": aidon.decode_frame_content,
    "kaifa": kaifa.decode_frame_content,
    "kamstrup": kamstrup.decode_frame_content,
}


def messages_of(vector: Dict[str, Any]) -> List[bytes]:
    """Return the information fields (LLC + APDU) a vector carries, through the real HDLC reader."""
    raw = bytes.fromhex(vector["hex"])
    layer = vector["layer"]
    if layer == "hdlc":
        assembler = HdlcMessageAssembler()
        messages = []
        for frame in HdlcFrameReader().read(raw):
            message = assembler.add(frame)
            if message is not None:
                messages.append(message)
        return messages
    if layer == "notification_body":
        return [NOTIFICATION_HEADER_WITHOUT_DATE_TIME + raw]
    return [raw]


def same(expected: Any, found: Any) -> bool:
    """Compare a corpus value with a decoded one: floats approximately, datetimes by their ISO form."""
    if isinstance(found, datetime):
        return found.isoformat() == expected
    if isinstance(expected, float) or isinstance(found, float):
        return (
            isinstance(found, (int, float))
            and not isinstance(found, bool)
            and math.isclose(found, expected, rel_tol=1e-9, abs_tol=1e-9)
        )
    return type(found) is type(expected) and found == expected


def mismatches(vector: Dict[str, Any]) -> Dict[str, Any]:
    """Decode a vector's last message; return {field: (stated, decoded)} for every value that differs."""
    messages = messages_of(vector)
    if not messages:
        return {"<message>": ("a message", None)}
    decoded = AutoDecoder().decode_frame_content(messages[-1])
    if decoded is None:
        return {"<decode>": ("a dictionary", why_not(messages[-1]))}
    return {
        key: (want, decoded.get(key))
        for key, want in vector["values"].items()
        if not same(want, decoded.get(key))
    }


def why_not(content: bytes) -> str:
    """Say why no decoder takes a message: the header's error, else the generic decoder's."""
    try:
        generic.decode_frame_content(content)
    except DecodeError as error:
        return str(error)
    return "?"


def stated_vectors(*countries: str) -> List[Dict[str, Any]]:
    """Return the vectors of the given countries (all if none) that state values for a decodable layer."""
    return [
        v
        for v in load_corpus()
        if v["values"]
        and v["valid"] in (True, "partial")
        and v["layer"] in DECODED_LAYERS
        and (not countries or v["country"] in countries)
    ]


NORDIC = stated_vectors("NO", "SE")


def test_the_nordic_corpus_is_there() -> None:
    assert len(NORDIC) >= 70
    assert {v["meter"] for v in NORDIC} >= {"aidon", "kaifa", "kamstrup"}


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["id"]) for v in NORDIC])
def test_nordic_vector_decodes_to_every_stated_value(vector: Dict[str, Any]) -> None:
    found = mismatches(vector)
    if vector["id"] in DISPUTED:
        register, scaler = DISPUTED[vector["id"]]
        assert bytes.fromhex(register) in bytes.fromhex(vector["hex"])
        from_bytes = int(register[2:], 16) * 10**scaler
        stated, decoded = found.pop("active_power_import_hour")
        assert decoded == from_bytes, "we decode what the register octets say"
        assert stated == struct.unpack(">f", struct.pack(">f", from_bytes))[0], "the corpus printed a float32"
    assert found == {}


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["id"]) for v in NORDIC if v["meter"] in METER_DECODERS]
)
def test_meter_module_gives_the_same_dictionary_as_autodecoder(vector: Dict[str, Any]) -> None:
    message = messages_of(vector)[-1]
    decoder = AutoDecoder()
    assert METER_DECODERS[vector["meter"]](message) == decoder.decode_frame_content(message)
    assert decoder.previous_success_decoder == vector["meter"].capitalize()


@pytest.mark.parametrize(
    "vector",
    [
        pytest.param(v, id=v["id"])
        for v in load_corpus()
        if v["country"] in ("NO", "SE") and v["valid"] is True and v["layer"] in DECODED_LAYERS
    ],
)
def test_every_valid_nordic_message_decodes(vector: Dict[str, Any]) -> None:
    messages = messages_of(vector)
    assert messages
    decoder = AutoDecoder()
    for message in messages:
        decoded = decoder.decode_frame_content(message)
        assert decoded is not None
        if vector["meter"] in METER_DECODERS:
            assert decoded["meter_manufacturer"] == vector["meter"].capitalize()


def test_meter_manufacturer_follows_the_meter() -> None:
    for vector in NORDIC:
        if vector["meter"] in METER_DECODERS and "meter_manufacturer" in vector["values"]:
            decoded = AutoDecoder().decode_frame_content(messages_of(vector)[-1])
            assert decoded is not None
            assert decoded["meter_manufacturer"] == vector["values"]["meter_manufacturer"]


def _frame_contents(vector: Dict[str, Any]) -> List[bytes]:
    """Return every information field in a vector, also of frames whose checks fail."""
    raw = bytes.fromhex(vector["hex"])
    if vector["layer"] != "hdlc":
        return [raw]
    return [frame.information for frame in HdlcFrameReader().read(raw) if frame.information]


ALL_DECODERS: List[Callable[[bytes], Dict[str, Any]]] = [
    aidon.decode_frame_content,
    kaifa.decode_frame_content,
    kamstrup.decode_frame_content,
    generic.decode_frame_content,
]


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["id"]) for v in load_corpus() if v["layer"] in DECODED_LAYERS]
)
def test_any_vector_gives_a_dictionary_or_a_decode_error(vector: Dict[str, Any]) -> None:
    for content in _frame_contents(vector):
        for decode in ALL_DECODERS:
            try:
                result = decode(content)
            except DecodeError as error:
                assert "expected" in str(error) and "found" in str(error)
            else:
                assert isinstance(result, dict)
        result = AutoDecoder().decode_frame_content(content)
        assert result is None or isinstance(result, dict)


@pytest.mark.parametrize(
    "vector",
    [
        pytest.param(v, id=v["id"])
        for v in load_corpus()
        if v["valid"] is False and v["layer"] in ("llc", "apdu", "notification_body")
    ],
)
def test_invalid_messages_give_none(vector: Dict[str, Any]) -> None:
    assert AutoDecoder().decode_frame_content(bytes.fromhex(vector["hex"])) is None


def test_encrypted_messages_give_none() -> None:
    encrypted = [v for v in load_corpus() if v["encrypted"] and v["layer"] in DECODED_LAYERS]
    assert encrypted
    for vector in encrypted:
        for content in _frame_contents(vector):
            assert AutoDecoder().decode_frame_content(content) is None


def report() -> str:
    """Tabulate, per country and manufacturer, the vectors with stated values that decode to all of them."""
    groups: Dict[tuple[str, str], List[Dict[str, Any]]] = defaultdict(list)
    for vector in stated_vectors():
        groups[(vector["country"] or "-", vector["meter"])].append(vector)
    lines = [
        "| country | meter | vectors with values | all values equal | failing: why |",
        "|---|---|---|---|---|",
    ]
    for (country, meter), vectors in sorted(groups.items()):
        failing = []
        for vector in vectors:
            bad = mismatches(vector)
            if bad:
                why = DISPUTED.get(vector["id"]) or ", ".join(
                    f"{k}: stated {w!r}, got {g!r}" for k, (w, g) in bad.items()
                )
                failing.append(f"{vector['id']} ({why})")
        passing = len(vectors) - len(failing)
        lines.append(f"| {country} | {meter} | {len(vectors)} | {passing} | {'; '.join(failing) or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(report() + "\n")
