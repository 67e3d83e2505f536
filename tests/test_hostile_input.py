"""Hostile A-XDR and DLMS: each bad input gives a DecodeError naming what was wrong and where, within bounds.

Every decoder (the three meter modules, generic and dlms.decode_data_notification) raises only DecodeError,
whose offset points into the content; AutoDecoder returns None (or, where a test says so, a dictionary
without the bad value). Claimed counts and lengths are checked against the data before anything is
allocated, nesting stops at axdr.MAX_DEPTH without recursing further, so time and memory stay bounded.
"""

from __future__ import annotations

import logging
import re
import time
import tracemalloc
from datetime import datetime
from functools import partial
from typing import Any, Callable, Iterator

import _cosem_encoder as enc
import pytest
from _decoders import DECODERS, assert_contained
from _processes import expected_messages
from _support import corpus_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amshan import DecodeError, aidon, generic, kaifa, kamstrup
from amshan.autodecoder import AutoDecoder
from amshan.axdr import MAX_DEPTH, DataType, read_data
from amshan.dlms import decode_data_notification
from amshan.items import Trace, field_of

MEMORY_LIMIT = 128 << 10  # bytes of peak allocation decoding hostile input (65535 list slots take 512 KiB)
TIME_LIMIT = 5.0  # seconds; generous (shared machine), yet far below what a claimed count would cost


def content_of(vector_id: str) -> bytes:
    """Return the first message of a corpus vector (an LLC-layer vector is the message itself)."""
    (vector,) = corpus_frames(id=vector_id)
    return bytes.fromhex(vector["hex"]) if vector["layer"] != "hdlc" else expected_messages(vector)[0]


AIDON = content_of("no-aidon-list3-amshan-llc")
KAIFA = content_of("no-kaifa-list3-amshan-llc")
KAIFA_SE = content_of("se-kaifa-se-list-amshan-llc")
KAMSTRUP = content_of("no-kamstrup-list2-em001-1")
SAMPLES = {"aidon": AIDON, "kaifa": KAIFA, "kaifa-se": KAIFA_SE, "kamstrup": KAMSTRUP}
OWN_DECODER = {"aidon": aidon, "kaifa": kaifa, "kaifa-se": kaifa, "kamstrup": kamstrup}


def value_offsets(sample: str) -> dict[str, int]:
    """Return where each item's value (its tag) sits in a sample, by field name (else dotted code)."""
    trace: Trace = []
    OWN_DECODER[sample].decode_message(SAMPLES[sample], trace)
    return {field_of(code).name or field_of(code).obis: offset for offset, code, _ in trace}


def replace_value(sample: str, name: str, new: bytes) -> tuple[bytes, int]:
    """Return the sample with the named item's tagged value replaced by new, and the value's offset."""
    content = SAMPLES[sample]
    offset = value_offsets(sample)[name]
    end = read_data(content, offset)[1]
    return content[:offset] + new + content[end:], offset


def raises_everywhere(
    content: bytes, decoders: dict[str, Callable[[bytes], Any]] = DECODERS
) -> dict[str, Any]:
    """Run each decoder on content; assert each raises DecodeError with an offset inside it; return them."""
    errors = {}
    for name, decode in decoders.items():
        with pytest.raises(DecodeError) as caught:
            decode(content)
        error = caught.value
        assert error.offset is not None and 0 <= error.offset <= len(content), f"{name}: {error}"
        assert str(error).startswith("expected ") and str(error).endswith(f" at offset {error.offset}")
        errors[name] = error
    return errors


def auto_decoders(*warm_up: bytes) -> Iterator[AutoDecoder]:
    """Yield a fresh AutoDecoder and one that decoded the given messages first (shape cache filled)."""
    yield AutoDecoder()
    warm = AutoDecoder()
    for content in warm_up:
        assert warm.decode_frame_content(content) is not None
    yield warm


def auto_gives_none(content: bytes, *warm_up: bytes) -> None:
    """Assert that AutoDecoder, fresh or warm, gives None for content."""
    for decoder in auto_decoders(*warm_up):
        assert decoder.decode_frame_content(content) is None


def bounded(call: Callable[[], Any]) -> DecodeError:
    """Run call, which must raise DecodeError, within the memory and time limits; return the error."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        call()
    except DecodeError as error:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MEMORY_LIMIT, f"peak allocation {peak} bytes"
        assert elapsed < TIME_LIMIT, f"{elapsed:.1f} s"
        return error
    tracemalloc.stop()
    raise AssertionError("no DecodeError")


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Keep AutoDecoder's (rate-limited) warnings about the hostile content out of the report."""
    caplog.set_level(logging.ERROR, logger="amshan")


def test_samples_decode() -> None:
    for name, content in SAMPLES.items():
        assert OWN_DECODER[name].decode_frame_content(content)
        assert "voltage_l1" in value_offsets(name)


# --- counts and lengths far beyond the data -------------------------------------------------------

# (tagged value, message with {rest} = bytes from the offset to the end, offset of the error in the value)
BEYOND = [
    ("0182ffff000000", "expected 65535 elements, found only {rest} bytes", 4),
    ("0284ffffffff00", "expected 4294967295 elements, found only {rest} bytes", 6),
    ("0984ffffffff01020304", "expected 4294967295 string bytes, found {rest}", 6),
    ("0a10616263", "expected 16 string bytes, found {rest}", 2),
    ("0a82ffff616263", "expected 65535 string bytes, found {rest}", 4),
    ("0c847fffffff41", "expected 2147483647 string bytes, found {rest}", 6),
    ("0484ffffffff00", "expected 536870912 bit-string bytes, found {rest}", 6),
    ("0983ffffff", "expected 16777215 string bytes, found {rest}", 5),
    ("0103" + "0984ffffffff" + "0000", "expected 4294967295 string bytes, found {rest}", 8),
    ("0185000000000001", "expected an A-XDR length (< 0x80 or 0x81-0x84), found 0x85", 1),
    ("0984ffff", "expected 4 A-XDR length bytes, found {rest}", 2),
    ("0180", "expected an A-XDR length (< 0x80 or 0x81-0x84), found 0x80", 1),
]
# The claims no real message can satisfy (a short string or cut length field inside one reads on).
BEYOND_ANY = [case for case in BEYOND if case[0] not in ("0a10616263", "0984ffff")]


@pytest.mark.parametrize(("value", "message", "at"), BEYOND, ids=[v for v, _, _ in BEYOND])
def test_claims_beyond_the_data_alone(value: str, message: str, at: int) -> None:
    data = bytes.fromhex(value)
    error = bounded(partial(read_data, data, 0))
    assert str(error) == message.format(rest=len(data) - at) + f" at offset {at}"
    assert error.offset == at


@pytest.mark.parametrize("sample", SAMPLES)
@pytest.mark.parametrize(("value", "message", "at"), BEYOND_ANY, ids=[v for v, _, _ in BEYOND_ANY])
def test_claims_beyond_the_data_in_a_real_message(sample: str, value: str, message: str, at: int) -> None:
    """The claim replaces a real value: each decoder that reaches it names it; none allocates by the claim."""
    content, offset = replace_value(sample, "voltage_l1", bytes.fromhex(value))
    expected = message.format(rest=len(content) - offset - at) + f" at offset {offset + at}"
    errors = raises_everywhere(content)
    for name in (OWN_DECODER[sample].NAME.lower(), "generic", "dlms"):
        assert str(errors[name]) == expected, name
    for decode in DECODERS.values():
        bounded(partial(decode, content))
    auto_gives_none(content, SAMPLES[sample])


# --- nesting thousands of levels deep -----------------------------------------------------------------


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5000, 100_000])
@pytest.mark.parametrize("container", ["0101", "0201", "020200", "01820001"])
def test_deep_nesting_stops_at_the_limit(container: str, levels: int) -> None:
    """Arrays/structures inside each other: the 17th level is refused at its tag, no RecursionError."""
    step = bytes.fromhex(container)
    data = step * levels + b"\x00"
    error = bounded(partial(read_data, data, 0))
    limit = MAX_DEPTH * len(step)  # the tag of the first container too deep
    assert (
        str(error) == f"expected at most {MAX_DEPTH} nested arrays/structures, found more at offset {limit}"
    )
    notification = enc.notification(data)
    errors = raises_everywhere(notification)
    assert errors["dlms"].offset == len(notification) - len(data) + limit
    auto_gives_none(notification)


@pytest.mark.parametrize("sample", SAMPLES)
@pytest.mark.parametrize("container", ["0101", "0201"])
def test_deep_nesting_inside_a_real_message(sample: str, container: str) -> None:
    """The meter walkers count levels from the value; dlms from the body, where the value is 1 or 2 deep."""
    nested = bytes.fromhex(container) * 100_000 + b"\x00"
    content, offset = replace_value(sample, "voltage_l1", nested)
    message = f"expected at most {MAX_DEPTH} nested arrays/structures, found more at offset"
    errors = raises_everywhere(content)
    assert str(errors[OWN_DECODER[sample].NAME.lower()]) == f"{message} {offset + 2 * MAX_DEPTH}"
    assert str(errors["generic"]) == f"{message} {offset + 2 * MAX_DEPTH}"
    depth = 2 if sample == "aidon" else 1  # Aidon: array, register structure, value
    assert str(errors["dlms"]) == f"{message} {offset + 2 * (MAX_DEPTH - depth)}"
    bounded(partial(OWN_DECODER[sample].decode_frame_content, content))
    auto_gives_none(content, SAMPLES[sample])


def test_nesting_up_to_the_limit_still_reads() -> None:
    data = b"\x02\x01" * MAX_DEPTH + b"\x00"
    value, end = read_data(data, 0)
    assert end == len(data)
    for _ in range(MAX_DEPTH):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value is None


# --- unknown type tags -------------------------------------------------------------------------------

UNKNOWN_TAGS = [tag for tag in range(256) if tag not in set(DataType)]


def test_unknown_tags_are_all_the_others() -> None:
    assert len(UNKNOWN_TAGS) == 256 - len(DataType) == 233


@pytest.mark.parametrize("tag", UNKNOWN_TAGS, ids=[f"{t:02x}" for t in UNKNOWN_TAGS])
def test_unknown_tag(tag: int) -> None:
    """Alone, inside a structure, and in place of a value of each real message: named, at its offset."""
    message = f"expected an A-XDR data tag, found unknown tag 0x{tag:02x}"
    with pytest.raises(DecodeError) as caught:
        read_data(bytes((tag,)) + bytes(8), 0)
    assert str(caught.value) == message + " at offset 0"
    with pytest.raises(DecodeError) as caught:
        read_data(bytes.fromhex("0203120001") + bytes((tag,)) + bytes(8), 0)
    assert str(caught.value) == message + " at offset 5"
    for sample, content in SAMPLES.items():
        offset = value_offsets(sample)["voltage_l1"]
        mutated = content[:offset] + bytes((tag,)) + content[offset + 1 :]
        errors = raises_everywhere(mutated)
        for name in (OWN_DECODER[sample].NAME.lower(), "generic", "dlms"):
            assert str(errors[name]) == f"{message} at offset {offset}", name
        auto_gives_none(mutated, content)


# --- wrong types where a meter's layout expects others ------------------------------------------------

U32 = enc.double_long_unsigned(1234)
TEXT_230 = enc.visible_string("230")
A_DATE = enc.date(2024, 1, 2, 2)


NUMBER = "expected a number for {} ({}), found "
TEXT = "expected text for {} ({}), found "
CLOCK = "expected a 12-byte date-time for meter_datetime ({}), found "
KAIFA_AT = "expected {} at Kaifa list position {} ({}), found "
WRONG_TYPES = [
    ("aidon", "voltage_l1", TEXT_230, NUMBER.format("voltage_l1", "1.0.32.7.0.255") + "'230'"),
    ("aidon", "current_l1", enc.boolean(True), NUMBER.format("current_l1", "1.0.31.7.0.255") + "True"),
    ("aidon", "meter_id", U32, TEXT.format("meter_id", "0.0.96.1.0.255") + "1234"),
    ("aidon", "meter_datetime", U32, CLOCK.format("0.0.1.0.0.255") + "1234"),
    ("aidon", "meter_datetime", enc.octet_string(bytes(2)), CLOCK.format("0.0.1.0.0.255") + r"b'\x00\x00'"),
    ("kaifa-se", "voltage_l1", TEXT_230, NUMBER.format("voltage_l1", "1.0.32.7.0.255") + "'230'"),
    ("kaifa-se", "meter_id", U32, TEXT.format("meter_id", "0.0.96.1.0.255") + "1234"),
    ("kamstrup", "voltage_l1", TEXT_230, NUMBER.format("voltage_l1", "1.1.32.7.0.255") + "'230'"),
    ("kamstrup", "meter_type", U32, TEXT.format("meter_type", "1.1.96.1.1.255") + "1234"),
    ("kamstrup", "meter_datetime", A_DATE, CLOCK.format("0.1.1.0.0.255") + "CosemDate(year=2024"),
    ("kaifa", "voltage_l1", TEXT_230, KAIFA_AT.format("a number", 10, "voltage_l1") + "'230'"),
    ("kaifa", "meter_id", U32, KAIFA_AT.format("a string", 1, "meter_id") + "1234"),
    ("kaifa", "meter_datetime", U32, KAIFA_AT.format("a 12-byte date-time", 13, "meter_datetime") + "1234"),
]


@pytest.mark.parametrize(("sample", "field", "new", "expected"), WRONG_TYPES)
def test_wrong_value_type(sample: str, field: str, new: bytes, expected: str) -> None:
    """A value of the wrong type for its field: the meter's own decoder says what it expected, where.

    AutoDecoder then gives what generic makes of the message. Aidon lists send their scalers, so generic
    keeps the rest of the message: the dictionary is the one of the real message without the bad field.
    Kaifa and Kamstrup lists need their makers' implicit scalers, which generic does not know: it refuses
    them (else currents and energies would come out 10 to 1000 times off), and AutoDecoder gives None.
    """
    content, offset = replace_value(sample, field, new)
    error = raises_everywhere(content, {"own": OWN_DECODER[sample].decode_frame_content})["own"]
    assert str(error).startswith(expected)
    assert error.offset == offset
    original = AutoDecoder().decode_frame_content(SAMPLES[sample])
    assert original is not None and field in original
    for decoder in auto_decoders(SAMPLES[sample]):
        decoded = decoder.decode_frame_content(content)
        if sample == "aidon":
            assert decoded == {key: value for key, value in original.items() if key != field}
        else:
            assert decoded is None


@pytest.mark.parametrize(
    ("sample", "field"), [("aidon", "voltage_l1"), ("kamstrup", "voltage_l1"), ("kaifa-se", "current_l1")]
)
def test_obis_code_sent_as_a_number(sample: str, field: str) -> None:  # fmt: skip
    """The OBIS code octet-string (09 06 + 6 bytes) in front of a value replaced by a double-long-unsigned.

    Aidon's registers then lack their code: the structure is not a register (generic says the same, so
    AutoDecoder gives None). Kamstrup and Kaifa interleave codes and values: two values follow each other,
    which their decoders refuse, naming the number; generic refuses the list (implicit scalers).
    """
    offset = value_offsets(sample)[field]
    code_at = offset - 8
    content = SAMPLES[sample]
    assert content[code_at : code_at + 2] == b"\x09\x06"
    mutated = content[:code_at] + enc.double_long_unsigned(0x01012007) + content[offset:]
    errors = raises_everywhere(mutated, {n: d for n, d in DECODERS.items() if n != "dlms"})  # valid A-XDR
    own = errors[OWN_DECODER[sample].NAME.lower()]
    if sample == "aidon":
        assert (
            str(own)
            == f"expected a structure 02 02/03 09 06 <OBIS>, found 02 03 06 01 at offset {code_at - 2}"
        )
        assert str(errors["generic"]) == str(own)
    else:
        assert re.fullmatch(
            rf"expected an OBIS code before each value, found 16850951 \(element \d+\) at offset {code_at}",
            str(own),
        )
        assert "implicit scalers" in str(errors["generic"])
    auto_gives_none(mutated, content)


def test_generic_refuses_every_interleaved_kaifa_and_kamstrup_list_of_the_corpus() -> None:
    """What generic would make of them: the implicit scalers missing (the reason for the refusal above)."""
    for sample in ("kaifa-se", "kamstrup"):
        with pytest.raises(
            DecodeError, match=r"expected a list without implicit scalers, found a (Kaifa|Kamstrup) list"
        ):
            generic.decode_frame_content(SAMPLES[sample])


# --- truncated date-times -----------------------------------------------------------------------------

DATE_TIME = enc.date_time_bytes(datetime(2024, 3, 31, 1, 59, 59), deviation=-60, status=0x80)
BODY = enc.structure([enc.visible_string("Kamstrup_V0001"), enc.obis("1.1.1.7.0.255"), U32])


@pytest.mark.parametrize("form", ["0c", "090c", "19"])
def test_header_date_time_cut_at_every_position(form: str) -> None:
    full = enc.notification(BODY, header_date_time=DATE_TIME, date_time_form=form)
    assert decode_data_notification(full).date_time is not None
    prefix = bytes.fromhex(form)
    start = len(enc.notification(b"")) - 1 + len(prefix)  # where the 12 date-time bytes begin
    for cut in range(len(enc.notification(b"")) - 1, start + 12):
        content = full[:cut]
        errors = raises_everywhere(content)
        if cut >= start:
            for error in errors.values():
                assert str(error) == f"expected 12 date-time bytes, found {cut - start} at offset {start}"
        auto_gives_none(content)


@pytest.mark.parametrize("found", range(12))
def test_date_time_values_cut_short(found: int) -> None:
    """As values: tag 19 + fewer than 12 bytes, an octet-string 09 0c + fewer, and in a real clock item."""
    with pytest.raises(DecodeError, match=rf"^expected 12 value bytes, found {found} at offset 1$"):
        read_data(b"\x19" + DATE_TIME[:found], 0)
    with pytest.raises(DecodeError, match=rf"^expected 12 string bytes, found {found} at offset 2$"):
        read_data(b"\x09\x0c" + DATE_TIME[:found], 0)
    for sample in ("aidon", "kamstrup"):
        offset = value_offsets(sample)["meter_datetime"]
        assert SAMPLES[sample][offset : offset + 2] == b"\x09\x0c"
        content = SAMPLES[sample][: offset + 2 + found]
        errors = raises_everywhere(content)
        for name in (sample, "generic", "dlms"):
            assert str(errors[name]) == f"expected 12 string bytes, found {found} at offset {offset + 2}"
        auto_gives_none(content, SAMPLES[sample])


def test_date_and_time_values_cut_short() -> None:
    for tag, size in ((0x1A, 5), (0x1B, 4)):
        for found in range(size):
            with pytest.raises(
                DecodeError, match=rf"^expected {size} value bytes, found {found} at offset 1$"
            ):
                read_data(bytes((tag,)) + bytes(found), 0)


# --- every valid corpus message cut at every offset ----------------------------------------------------


def _corpus_messages() -> list[bytes]:
    messages: list[bytes] = []
    for vector in corpus_frames(valid=True):
        if vector["layer"] == "hdlc":
            messages += expected_messages(vector)
        elif vector["layer"] in ("llc", "apdu"):
            messages.append(bytes.fromhex(vector["hex"]))
    return list(dict.fromkeys(messages))


def _one_per_layout(messages: list[bytes]) -> list[bytes]:
    """Keep every message no decoder takes, and one of each layout (decoder, length, keys) of the others."""
    kept: dict[object, bytes] = {}
    for content in messages:
        decoder = AutoDecoder()
        decoded = decoder.decode_frame_content(content)
        layout = (
            content if decoded is None else (decoder.previous_success_decoder, len(content), tuple(decoded))
        )
        kept.setdefault(layout, content)
    return list(kept.values())


CORPUS_MESSAGES = _corpus_messages()


def test_every_corpus_message_cut_at_every_offset() -> None:
    """A data-notification cut short anywhere: every decoder raises DecodeError, AutoDecoder gives None.

    Messages of one layout take the same paths through the decoders, so one of each layout is cut.
    """
    messages = _one_per_layout(CORPUS_MESSAGES)
    decodable = 0
    for content in messages:
        warm = AutoDecoder()
        if warm.decode_frame_content(content) is not None:
            decodable += 1
        for cut in range(len(content)):
            raises_everywhere(content[:cut])
            assert warm.decode_frame_content(content[:cut]) is None
    assert len(CORPUS_MESSAGES) >= 200 and decodable >= 40 and len(messages) >= 120


# --- any mutation of a real message: a DecodeError carries an offset inside the content ------------------

HOSTILE_VALUES = [bytes.fromhex(v) for v, _, _ in BEYOND] + [b"\x01\x01" * 40 + b"\x00", b"\x07", b"\x19\x00"]


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS_MESSAGES)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(("flip", "delete", "insert", "truncate", "hostile")))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "hostile":
            data[position:position] = draw(st.sampled_from(HOSTILE_VALUES))
        else:
            del data[position:]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_messages())
def test_mutated_messages_give_a_decode_error_with_its_offset_or_a_dictionary(content: bytes) -> None:
    for name, error in assert_contained(content).items():
        assert len(str(error)) < 400, f"{name}: messages show found values cut short"


def test_value_shown_in_a_message_is_cut_short() -> None:
    body = enc.array([enc.structure([enc.obis("1.1.0.2.129.255"), enc.visible_string("EMBRIQ" * 1000)])])
    with pytest.raises(DecodeError) as caught:
        aidon.decode_frame_content(enc.notification(body))
    assert re.fullmatch(
        r"expected an Aidon list id AIDON_\.\.\., found 'EMBRIQ(EMBRIQ)+E?M?B?R?I?Q?\.\.\. at offset 9",
        str(caught.value),
    )
