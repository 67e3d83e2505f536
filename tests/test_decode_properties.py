"""Property tests: random notifications of every meter layout decode to exactly what was encoded; fuzzing.

Expected dictionaries are built here from the spec's tables (han-spec sections 5-7), not from the library's.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Tuple

import _cosem_encoder as enc
from _decoders import assert_contained
from _support import corpus_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amshan import aidon, generic, kaifa, kamstrup
from amshan.autodecoder import DECODERS, AutoDecoder
from amshan.dlms import apdu_offset, read_notification_header
from amshan.hdlc import HdlcFrameReader
from amshan.items import field_of, message_to_dict
from amshan.obis_map import (
    CLOCK_CODES,
    NEK_HAN_FIELD_METER_ID,
    NEK_HAN_FIELD_METER_TYPE,
    NEK_HAN_FIELD_OBIS_LIST_VER_ID,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
W, VAR, WH, VARH, A, V = 27, 29, 30, 32, 33, 35

U32 = st.integers(0, 2**32 - 1)
U16 = st.integers(0, 2**16 - 1)
S16 = st.integers(-(2**15), 2**15 - 1)


def scaled(raw: int, scaler: int) -> int | float:
    """A manufacturer's implicit scaler (2021.12.1's value * 10**scale): int for scaler >= 0, else a float."""
    return raw * 10**scaler if scaler >= 0 else raw / 10**-scaler


def sent_scaled(raw: int, scaler: int) -> int | float:
    """A scaler the meter sends (2021.12.1's Aidon rule): int for scaler 0, else the nearest float."""
    return raw if scaler == 0 else float(scaled(raw, scaler))


def assert_typed_equal(found: Dict[str, Any] | None, expected: Dict[str, Any]) -> None:
    """Assert a dictionary equals the expected one, every value of the same type (InfluxDB keeps them)."""
    assert found == expected
    assert {key: type(value) for key, value in found.items()} == {k: type(v) for k, v in expected.items()}


MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda moment: moment.replace(microsecond=moment.microsecond // 10000 * 10000)
)
DEVIATIONS = st.one_of(st.none(), st.integers(-720, 720))


def aware(moment: datetime, deviation: int | None) -> datetime:
    return moment if deviation is None else moment.replace(tzinfo=timezone(timedelta(minutes=-deviation)))


@st.composite
def header_date_time(draw: st.DrawFn, forms: Tuple[str, ...]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Notification keyword arguments and the meter_datetime they imply (or none)."""
    form = draw(st.sampled_from(("none", *forms)))
    if form == "none":
        return {}, {}
    moment, deviation = draw(MOMENTS), draw(DEVIATIONS)
    raw = enc.date_time_bytes(moment, deviation=deviation, status=draw(st.sampled_from((0x00, 0x80, 0xFF))))
    return {"header_date_time": raw, "date_time_form": form}, {"meter_datetime": aware(moment, deviation)}


# Aidon registers (han-spec 6.1 and 7.2): code, name, encoder, value strategy, scaler, unit
AIDON_REGISTERS: List[Tuple[str, str, Callable[[int], bytes], st.SearchStrategy[int], int, int]] = [
    ("1.0.1.7.0.255", "active_power_import", enc.double_long_unsigned, U32, 0, W),
    ("1.0.2.7.0.255", "active_power_export", enc.double_long_unsigned, U32, 0, W),
    ("1.0.3.7.0.255", "reactive_power_import", enc.double_long_unsigned, U32, 0, VAR),
    ("1.0.4.7.0.255", "reactive_power_export", enc.double_long_unsigned, U32, 0, VAR),
    ("1.0.31.7.0.255", "current_l1", enc.long, S16, -1, A),
    ("1.0.51.7.0.255", "current_l2", enc.long, S16, -1, A),
    ("1.0.71.7.0.255", "current_l3", enc.long, S16, -1, A),
    ("1.0.32.7.0.255", "voltage_l1", enc.long_unsigned, U16, -1, V),
    ("1.0.52.7.0.255", "voltage_l2", enc.long_unsigned, U16, -1, V),
    ("1.0.72.7.0.255", "voltage_l3", enc.long_unsigned, U16, -1, V),
    ("1.0.21.7.0.255", "active_power_import_l1", enc.double_long_unsigned, U32, 0, W),
    ("1.0.64.7.0.255", "reactive_power_export_l3", enc.double_long_unsigned, U32, 0, VAR),
    ("1.0.1.8.0.255", "active_power_import_hour", enc.double_long_unsigned, U32, 1, WH),
    ("1.0.2.8.0.255", "active_power_export_hour", enc.double_long_unsigned, U32, 1, WH),
    ("1.0.3.8.0.255", "reactive_power_import_hour", enc.double_long_unsigned, U32, 0, VARH),
    ("1.0.4.8.0.255", "reactive_power_export_hour", enc.double_long_unsigned, U32, 1, VARH),
    ("1.0.14.7.0.255", "1.0.14.7.0.255", enc.long_unsigned, U16, -2, 44),  # frequency: no field name
]


@st.composite
def aidon_notifications(draw: st.DrawFn) -> Tuple[bytes, Dict[str, Any]]:
    expected: Dict[str, Any] = {"meter_manufacturer": "Aidon"}
    elements = []
    if draw(st.booleans()):
        elements.append(enc.structure([enc.obis("1.1.0.2.129.255"), enc.visible_string("AIDON_V0001")]))
        meter_id = draw(st.text("0123456789", min_size=16, max_size=16))
        elements.append(enc.structure([enc.obis("0.0.96.1.0.255"), enc.visible_string(meter_id)]))
        expected.update(list_ver_id="AIDON_V0001", meter_id=meter_id)
    if draw(st.booleans()):
        moment, deviation = draw(MOMENTS), draw(DEVIATIONS)
        clock = enc.date_time_bytes(moment, deviation=deviation)
        elements.append(enc.structure([enc.obis("0.0.1.0.0.255"), enc.octet_string(clock)]))
        expected["meter_datetime"] = aware(moment, deviation)
    chosen = draw(st.lists(st.sampled_from(AIDON_REGISTERS), min_size=1, unique_by=lambda r: r[0]))
    for code, name, encode, values, scaler, unit in chosen:
        raw = draw(values)
        elements.append(enc.structure([enc.obis(code), encode(raw), enc.scaler_unit(scaler, unit)]))
        expected[name] = sent_scaled(raw, scaler)
    return enc.notification(enc.array(elements), llc=draw(st.booleans())), expected


# Kaifa positional lists (han-spec 6.2): names by position, implicit scalers
KAIFA_L2_1P = [
    "list_ver_id", "meter_id", "meter_type", "active_power_import", "active_power_export",
    "reactive_power_import", "reactive_power_export", "current_l1", "voltage_l1",
]  # fmt: skip
KAIFA_L2_3P = [*KAIFA_L2_1P[:8], "current_l2", "current_l3", "voltage_l1", "voltage_l2", "voltage_l3"]
KAIFA_L3 = ["meter_datetime", "active_power_import_hour", "active_power_export_hour",
            "reactive_power_import_hour", "reactive_power_export_hour"]  # fmt: skip
KAIFA_LISTS = [
    ["active_power_import"],
    KAIFA_L2_1P,
    KAIFA_L2_3P,
    KAIFA_L2_1P + KAIFA_L3,
    KAIFA_L2_3P + KAIFA_L3,
]
KAIFA_SCALERS = {"current_l1": -3, "current_l2": -3, "current_l3": -3, "voltage_l1": -1, "voltage_l2": -1,
                 "voltage_l3": -1}  # fmt: skip
TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)


@st.composite
def kaifa_notifications(draw: st.DrawFn) -> Tuple[bytes, Dict[str, Any]]:
    names = draw(st.sampled_from(KAIFA_LISTS))
    kwargs, expected = draw(header_date_time(("090c",)))
    expected["meter_manufacturer"] = "Kaifa"
    elements = []
    for name in names:
        if name == "list_ver_id":
            elements.append(enc.octet_string(b"KFM_001"))
            expected[name] = "KFM_001"
        elif name in ("meter_id", "meter_type"):
            text = draw(TEXT)
            elements.append(enc.octet_string(text.encode()))
            expected[name] = text
        elif name == "meter_datetime":
            moment, deviation = draw(MOMENTS), draw(DEVIATIONS)
            elements.append(enc.octet_string(enc.date_time_bytes(moment, deviation=deviation)))
            expected[name] = aware(moment, deviation)
        else:
            raw = draw(U32)
            elements.append(enc.double_long_unsigned(raw))
            expected[name] = scaled(raw, KAIFA_SCALERS.get(name, 0))
    return enc.notification(enc.structure(elements), **kwargs), expected


# Kamstrup HAN-NVE (han-spec 6.3): OBIS 1.1.x interleaved, implicit scalers, single-phase null padding
KAMSTRUP_ITEMS: List[Tuple[str, str, Callable[[int], bytes], st.SearchStrategy[int], int]] = [
    ("1.1.1.7.0.255", "active_power_import", enc.double_long_unsigned, U32, 0),
    ("1.1.2.7.0.255", "active_power_export", enc.double_long_unsigned, U32, 0),
    ("1.1.3.7.0.255", "reactive_power_import", enc.double_long_unsigned, U32, 0),
    ("1.1.4.7.0.255", "reactive_power_export", enc.double_long_unsigned, U32, 0),
    ("1.1.31.7.0.255", "current_l1", enc.double_long_unsigned, U32, -2),
    ("1.1.51.7.0.255", "current_l2", enc.double_long_unsigned, U32, -2),
    ("1.1.71.7.0.255", "current_l3", enc.double_long_unsigned, U32, -2),
    ("1.1.32.7.0.255", "voltage_l1", enc.long_unsigned, U16, 0),
    ("1.1.52.7.0.255", "voltage_l2", enc.long_unsigned, U16, 0),
    ("1.1.72.7.0.255", "voltage_l3", enc.long_unsigned, U16, 0),
    ("1.1.1.8.0.255", "active_power_import_hour", enc.double_long_unsigned, U32, 1),
    ("1.1.2.8.0.255", "active_power_export_hour", enc.double_long_unsigned, U32, 1),
    ("1.1.3.8.0.255", "reactive_power_import_hour", enc.double_long_unsigned, U32, 1),
    ("1.1.4.8.0.255", "reactive_power_export_hour", enc.double_long_unsigned, U32, 1),
]


@st.composite
def kamstrup_notifications(draw: st.DrawFn) -> Tuple[bytes, Dict[str, Any]]:
    kwargs, expected = draw(header_date_time(("0c", "090c")))
    expected.update(meter_manufacturer="Kamstrup", list_ver_id="Kamstrup_V0001")
    meter_id = draw(st.text("0123456789", min_size=16, max_size=16))
    elements = [enc.visible_string("Kamstrup_V0001"), enc.obis("1.1.0.0.5.255"), enc.visible_string(meter_id)]
    expected["meter_id"] = meter_id
    for code, name, encode, values, scaler in draw(st.lists(st.sampled_from(KAMSTRUP_ITEMS), unique=True)):
        padding = draw(st.sampled_from(("none", "pair", "value")))
        if padding == "pair":  # real 1-phase meters: 00 00 in place of code and value
            elements += [enc.null(), enc.null()]
        elif padding == "value":
            elements += [enc.obis(code), enc.null()]
        else:
            raw = draw(values)
            elements += [enc.obis(code), encode(raw)]
            expected[name] = scaled(raw, scaler)
    if draw(st.booleans()):
        moment, deviation = draw(MOMENTS), draw(DEVIATIONS)
        elements += [
            enc.obis("0.1.1.0.0.255"),
            enc.octet_string(enc.date_time_bytes(moment, deviation=deviation)),
        ]
        expected["meter_datetime"] = aware(moment, deviation)
    return enc.notification(enc.structure(elements), invoke=0, **kwargs), expected


# Any OBIS list (Netz NOE / Sagemcom style): OBIS, value, scaler-unit flattened in one structure
NUMBER_TYPES: List[Tuple[Callable[[int], bytes], st.SearchStrategy[int]]] = [
    (enc.double_long_unsigned, U32),
    (enc.double_long, st.integers(-(2**31), 2**31 - 1)),
    (enc.long_unsigned, U16),
    (enc.long, S16),
    (enc.unsigned, st.integers(0, 255)),
    (enc.integer, st.integers(-128, 127)),
    (enc.long64, st.integers(-(2**63), 2**63 - 1)),
    (enc.long64_unsigned, st.integers(0, 2**64 - 1)),
]
UNKNOWN_CODES = st.tuples(
    st.integers(0, 255), st.integers(2, 255), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)
).map(lambda g: f"{g[0]}.{g[1]}.{g[2]}.{g[3]}.{g[4]}.255")  # B >= 2: no field name has such a code


@st.composite
def generic_notifications(draw: st.DrawFn) -> Tuple[bytes, Dict[str, Any]]:
    kwargs, expected = draw(header_date_time(("0c",)))
    elements = []
    codes = draw(st.lists(UNKNOWN_CODES, min_size=1, max_size=12, unique=True))
    for code in codes:
        encode, values = draw(st.sampled_from(NUMBER_TYPES))
        raw = draw(values)
        elements += [enc.obis(code), encode(raw)]
        if draw(st.booleans()):
            scaler = draw(st.integers(-4, 4))
            elements.append(enc.scaler_unit(scaler, draw(st.sampled_from((W, A, V, 255)))))
            expected[code] = sent_scaled(raw, scaler)
        else:
            expected[code] = raw
    return enc.notification(enc.structure(elements), invoke=draw(U32), **kwargs), expected


def check(content: bytes, expected: Dict[str, Any], module: Any, name: str) -> None:
    assert_typed_equal(module.decode_frame_content(content), expected)
    decoder = AutoDecoder()
    assert_typed_equal(decoder.decode_frame_content(content), expected)
    assert decoder.previous_success_decoder == name


@SETTINGS
@given(aidon_notifications())
def test_aidon_round_trip(case: Tuple[bytes, Dict[str, Any]]) -> None:
    check(*case, aidon, "Aidon")


@SETTINGS
@given(kaifa_notifications())
def test_kaifa_round_trip(case: Tuple[bytes, Dict[str, Any]]) -> None:
    check(*case, kaifa, "Kaifa")


@SETTINGS
@given(kamstrup_notifications())
def test_kamstrup_round_trip(case: Tuple[bytes, Dict[str, Any]]) -> None:
    check(*case, kamstrup, "Kamstrup")


@SETTINGS
@given(generic_notifications())
def test_generic_round_trip(case: Tuple[bytes, Dict[str, Any]]) -> None:
    check(*case, generic, "Generic")


# Fuzzing: no bytes make a decoder raise anything but DecodeError, nor AutoDecoder raise at all


def _seed_contents() -> List[bytes]:
    contents = []
    for vector in corpus_frames():
        raw = bytes.fromhex(vector["hex"])
        if vector["layer"] in ("llc", "apdu"):
            contents.append(raw)
        elif vector["layer"] == "hdlc":
            contents += [f.information for f in HdlcFrameReader().read(raw) if f.information]
    return contents


SEEDS = _seed_contents()


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_escape(content: bytes) -> None:
    assert_contained(content)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bodies_behind_a_valid_header_never_escape(body: bytes) -> None:
    assert_contained(enc.notification(body))
    assert_contained(enc.notification(b"\x02" + body, header_date_time=bytes(12), date_time_form="090c"))
    assert_contained(enc.notification(b"\x01" + body))


@st.composite
def mutated_corpus(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("flip", "delete", "insert", "truncate")))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete" and data:
            del data[position]
        elif kind == "insert":
            data.insert(position, draw(st.integers(0, 255)))
        else:
            del data[position:]
    return bytes(data)


@settings(max_examples=3000, deadline=None)
@given(mutated_corpus())
def test_mutated_corpus_frames_never_escape(content: bytes) -> None:
    assert_contained(content)


# The shape cache: a message of a shape seen before gives exactly the full decoder's dictionary

NUMBER_SIZES = {0x05: 4, 0x06: 4, 0x0D: 1, 0x0F: 1, 0x10: 2, 0x11: 1, 0x12: 2, 0x14: 8, 0x15: 8, 0x16: 1,
                0x17: 4, 0x18: 8}  # fmt: skip


def _decodable_corpus_messages() -> List[bytes]:
    contents = []
    for vector in corpus_frames():
        raw = bytes.fromhex(vector["hex"])
        if vector["layer"] in ("llc", "apdu"):
            candidates = [raw]
        elif vector["layer"] == "hdlc":
            candidates = [f.information for f in HdlcFrameReader().read(raw) if f.is_valid and f.information]
        else:
            continue
        contents += [c for c in candidates if AutoDecoder().decode_frame_content(c) is not None]
    return contents


DECODABLE = _decodable_corpus_messages()


def test_the_corpus_gives_shapes_to_cache() -> None:
    assert len(DECODABLE) >= 100


@st.composite
def same_shape_variants(draw: st.DrawFn) -> Tuple[bytes, bytes, bool]:
    """A corpus message and a variant with new values (maybe a new skeleton byte); True if values only."""
    content = draw(st.sampled_from(DECODABLE))
    decoder = AutoDecoder()
    decoder.decode_message(content)
    trace: List[Tuple[int, bytes, int]] = []
    DECODERS[decoder.previous_success_decoder or ""](content, trace)
    variant = bytearray(content)
    values_only = True
    for position, code, _scaler in trace:
        tag = content[position]
        if tag in NUMBER_SIZES and draw(st.booleans()):
            size = NUMBER_SIZES[tag]
            variant[position + 1 : position + 1 + size] = draw(st.binary(min_size=size, max_size=size))
        elif tag == 0x09 and content[position + 1] == 12 and code in CLOCK_CODES and draw(st.booleans()):
            variant[position + 2 : position + 14] = draw(date_time_fields())
            values_only = False  # a date-time that is no instant sends the message down the full path
        elif tag in (0x09, 0x0A) and field_of(code).name in TEXT_NAMES and draw(st.booleans()):
            size = content[position + 1]
            old = content[position + 2 : position + 2 + size]
            variant[position + 2 : position + 2 + size] = draw(same_length_text(old))
            values_only = False  # new text goes through the full decoder once (another meter), then the shape
    header = read_notification_header(content)
    if header.date_time_offset >= 0 and draw(st.booleans()):
        offset = header.date_time_offset
        variant[offset : offset + 12] = draw(date_time_fields())
        values_only = False
    apdu = apdu_offset(content)
    variant[apdu + 1 : apdu + 5] = draw(st.binary(min_size=4, max_size=4))  # invoke id: no part of the result
    if draw(st.integers(0, 9)) == 0:  # now and then a skeleton byte changes too
        position = draw(st.integers(0, len(variant) - 1))
        variant[position] ^= 1 << draw(st.integers(0, 7))
        values_only = False
    return content, bytes(variant), values_only


@st.composite
def date_time_fields(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return enc.date_time_bytes(
            draw(MOMENTS), deviation=draw(DEVIATIONS), status=draw(st.integers(0, 255))
        )
    return draw(st.binary(min_size=12, max_size=12))


TEXT_NAMES = (NEK_HAN_FIELD_OBIS_LIST_VER_ID, NEK_HAN_FIELD_METER_ID, NEK_HAN_FIELD_METER_TYPE)


@st.composite
def same_length_text(draw: st.DrawFn, old: bytes) -> bytes:
    """Other text of the same length: printable, digits (like a number), non-ASCII, NUL-padded, a prefix."""
    size = len(old)
    kind = draw(st.sampled_from(("printable", "digits", "octets", "padded", "prefix")))
    if kind == "printable":
        return draw(
            st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=size, max_size=size)
        ).encode()
    if kind == "digits":
        return draw(st.text("0123456789", min_size=size, max_size=size)).encode()
    if kind == "octets":
        return draw(st.binary(min_size=size, max_size=size))
    if kind == "padded":
        keep = draw(st.integers(0, size))
        return old[:keep] + bytes(size - keep)
    keep = min(size, draw(st.integers(3, 8)))
    return old[:keep] + draw(st.binary(min_size=size - keep, max_size=size - keep))


@settings(max_examples=2000, deadline=None)
@given(same_shape_variants())
def test_shape_cache_gives_the_full_decoders_dictionary(case: Tuple[bytes, bytes, bool]) -> None:
    original, variant, values_only = case
    decoder, twin = AutoDecoder(), AutoDecoder()  # the twin has the same history but runs the full decoder
    for _ in range(2):  # a shape is made on the second sighting of a skeleton
        assert decoder.decode_frame_content(original) is not None
        assert twin.decode_message(original) is not None
    hits = decoder.shape_cache_hits
    message = twin.decode_message(variant)
    full = None if message is None else message_to_dict(message)
    for _ in range(2):  # the second time, new text (another meter) the shape has learnt is read through it
        cached = decoder.decode_frame_content(variant)
        assert cached == full
        if full is not None:
            assert cached is not None and list(cached) == list(full)  # same keys in the same order
            for key, value in full.items():
                assert type(cached[key]) is type(value)
        if values_only:
            assert decoder.shape_cache_hits == hits + 1
            values_only = False


@SETTINGS
@given(
    st.one_of(aidon_notifications(), kaifa_notifications(), kamstrup_notifications(), generic_notifications())
)
def test_shape_cache_on_generated_layouts(case: Tuple[bytes, Dict[str, Any]]) -> None:
    content, expected = case
    decoder = AutoDecoder()
    assert_typed_equal(decoder.decode_frame_content(content), expected)
    assert_typed_equal(decoder.decode_frame_content(content), expected)  # the second sighting makes the shape
    assert decoder.shape_cache_hits == 0
    assert_typed_equal(decoder.decode_frame_content(content), expected)  # the third: the cached shape
    assert decoder.shape_cache_hits == 1
