"""A-XDR reader and COSEM date-time parser: every common data type, length form and date-time edge."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import _cosem_encoder as enc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amshan import DecodeError, axdr
from amshan.axdr import (
    MAX_DEPTH,
    CosemDate,
    CosemDateTime,
    CosemTime,
    DataType,
    decode_date_time,
    read_data,
    read_date,
    read_date_time,
    read_length,
    read_time,
)


def read_all(data: bytes) -> object:
    value, end = read_data(data, 0)
    assert end == len(data)
    return value


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (enc.null(), None),
        (enc.boolean(True), True),
        (enc.boolean(False), False),
        (bytes.fromhex("0302"), True),  # any non-zero octet is TRUE
        (enc.double_long(-1), -1),
        (enc.double_long(-(2**31)), -(2**31)),
        (enc.double_long(2**31 - 1), 2**31 - 1),
        (enc.double_long_unsigned(2**32 - 1), 2**32 - 1),
        (enc.octet_string(b"\x01\x02"), b"\x01\x02"),
        (enc.visible_string("AIDON_V0001"), "AIDON_V0001"),
        (enc.utf8_string("Målar"), "Målar"),
        (enc.bcd(0x42), 0x42),
        (enc.integer(-128), -128),
        (enc.integer(127), 127),
        (enc.long(-32768), -32768),
        (enc.long(-1), -1),
        (enc.unsigned(255), 255),
        (enc.long_unsigned(65535), 65535),
        (enc.long64(-(2**63)), -(2**63)),
        (enc.long64_unsigned(2**64 - 1), 2**64 - 1),
        (enc.enum(27), 27),
        (bytes.fromhex("173f800000"), 1.0),  # spec 5.1 example
        (bytes.fromhex("183ff0000000000000"), 1.0),  # spec 5.1 example
        (enc.float32(-2.5), -2.5),
        (enc.float64(1e300), 1e300),
        (enc.bit_string("1011"), "1011"),
        (enc.bit_string("101100111"), "101100111"),
        (enc.bit_string(""), ""),
        (enc.array([enc.unsigned(1), enc.unsigned(2)]), [1, 2]),
        (enc.structure([enc.integer(-1), enc.enum(35)]), [-1, 35]),
        (enc.structure([]), []),
    ],
)
def test_each_type_reads_its_value(encoded: bytes, expected: object) -> None:
    assert read_all(encoded) == expected


def test_negative_integer_types_keep_sign() -> None:
    assert read_all(bytes.fromhex("0fff")) == -1
    assert read_all(bytes.fromhex("10ff9c")) == -100
    assert read_all(bytes.fromhex("05fffffffe")) == -2
    assert read_all(bytes.fromhex("14ffffffffffffffff")) == -1


def test_data_type_tags_match_the_blue_book_table() -> None:
    assert DataType.OCTET_STRING == 9
    assert DataType.LONG64_UNSIGNED == 21
    assert DataType.DATE_TIME == 25
    assert DataType.TIME == 27


@pytest.mark.parametrize(
    ("encoded", "value", "end"),
    [
        (bytes([0x05]), 5, 1),
        (bytes([0x7F]), 127, 1),
        (bytes([0x81, 0x80]), 128, 2),
        (bytes([0x81, 0xF8]), 248, 2),  # Netz NOE general-glo-ciphering length
        (bytes([0x82, 0x01, 0x09]), 265, 3),  # TINETZ length
        (bytes([0x83, 0x01, 0x00, 0x00]), 65536, 4),
        (bytes([0x84, 0x00, 0x01, 0x00, 0x00]), 65536, 5),
    ],
)
def test_length_forms(encoded: bytes, value: int, end: int) -> None:
    assert read_length(encoded, 0) == (value, end)


@pytest.mark.parametrize("encoded", [b"", bytes([0x80]), bytes([0x85, 0, 0, 0, 0, 0]), bytes([0x82, 0x01])])
def test_bad_length_forms_raise(encoded: bytes) -> None:
    with pytest.raises(DecodeError):
        read_length(encoded, 0)


def test_long_forms_carry_long_strings_and_arrays() -> None:
    text = "x" * 300
    assert read_all(enc.visible_string(text)) == text
    assert read_all(enc.array([enc.null()] * 200)) == [None] * 200


def test_date_time_type_and_date_and_time() -> None:
    raw = bytes.fromhex("07e5091b01092f0f00ff8880")
    value = read_all(enc.date_time(raw))
    assert isinstance(value, CosemDateTime)
    assert value.datetime == datetime(2021, 9, 27, 9, 47, 15, tzinfo=timezone(timedelta(hours=2)))
    assert read_all(enc.date(2024, 2, 29, 4)) == CosemDate(2024, 2, 29, 4)
    assert str(read_all(enc.date(2024, 2, 29, 4))) == "2024-02-29"
    assert str(read_all(bytes.fromhex("1affff0cff07"))) == "*-12-*"
    assert read_all(enc.time(23, 59, 58, 99)) == CosemTime(23, 59, 58, 99)
    assert str(read_all(enc.time(7, 5, 0, 0xFF))) == "07:05:00"
    assert str(read_all(bytes.fromhex("1bff00ffff"))) == "*:0:*"


class TestDateTime:
    """The 12-byte COSEM date-time, cases from the spec (section 5.4) and its sources."""

    def test_netz_noe_example_deviation_minus_120_is_plus_two_hours(self) -> None:
        raw = bytes.fromhex("07e5091b01092f0f00ff8880")
        fields = read_date_time(raw, 0)
        assert fields[:10] == (2021, 9, 27, 1, 9, 47, 15, 0, -120, 0x80)
        assert fields.daylight_saving_active
        assert decode_date_time(raw, 0) == datetime(
            2021, 9, 27, 9, 47, 15, tzinfo=timezone(timedelta(hours=2))
        )

    def test_deviation_minus_60_is_plus_one_hour(self) -> None:
        raw = enc.date_time_bytes(datetime(2021, 9, 22, 17, 35, 30), deviation=-60)
        assert decode_date_time(raw, 0) == datetime(
            2021, 9, 22, 17, 35, 30, tzinfo=timezone(timedelta(hours=1))
        )
        assert decode_date_time(raw, 0).isoformat() == "2021-09-22T17:35:30+01:00"  # type: ignore[union-attr]

    def test_positive_deviation_is_negative_offset(self) -> None:
        raw = enc.date_time_bytes(datetime(2021, 1, 1, 0, 0, 0), deviation=300)
        assert decode_date_time(raw, 0).utcoffset() == timedelta(hours=-5)  # type: ignore[union-attr]

    def test_deviation_not_specified_is_naive(self) -> None:
        raw = bytes.fromhex("07e402030 10f1b0aff800000".replace(" ", ""))  # Kaifa NO header
        assert decode_date_time(raw, 0) == datetime(2020, 2, 3, 15, 27, 10)
        assert read_date_time(raw, 0).deviation is None

    def test_aidon_deviation_zero_is_utc(self) -> None:
        raw = bytes.fromhex("07e4011502100000ff000000")
        assert decode_date_time(raw, 0) == datetime(2020, 1, 21, 16, 0, 0, tzinfo=timezone.utc)

    def test_summer_time_bit_does_not_shift_the_instant(self) -> None:
        plain = enc.date_time_bytes(datetime(2022, 7, 1, 12, 0, 0), deviation=-120, status=0x00)
        summer = enc.date_time_bytes(datetime(2022, 7, 1, 12, 0, 0), deviation=-120, status=0x80)
        assert decode_date_time(plain, 0) == decode_date_time(summer, 0)
        assert read_date_time(summer, 0).daylight_saving_active
        assert not read_date_time(plain, 0).daylight_saving_active

    def test_hundredths_are_kept_and_0xff_hundredths_read_as_zero(self) -> None:
        raw = enc.date_time_bytes(datetime(2022, 7, 1, 12, 0, 0, 990000))
        assert decode_date_time(raw, 0) == datetime(2022, 7, 1, 12, 0, 0, 990000)
        raw = enc.date_time_bytes(raw_fields=(2022, 7, 1, 5, 12, 0, 0, 0xFF, -0x8000, 0xFF))
        assert decode_date_time(raw, 0) == datetime(2022, 7, 1, 12, 0, 0)
        assert read_date_time(raw, 0).clock_status is None

    def test_day_of_week_is_not_checked(self) -> None:
        raw = enc.date_time_bytes(datetime(2020, 1, 21, 16, 0, 0), day_of_week=0)
        assert decode_date_time(raw, 0) == datetime(2020, 1, 21, 16, 0, 0)

    @pytest.mark.parametrize(
        "fields",
        [
            (0xFFFF, 1, 1, 1, 0, 0, 0, 0, 0, 0),  # year not specified
            (2021, 0xFF, 1, 1, 0, 0, 0, 0, 0, 0),  # month not specified
            (2021, 0xFE, 1, 1, 0, 0, 0, 0, 0, 0),  # DST begin
            (2021, 3, 0xFE, 1, 0, 0, 0, 0, 0, 0),  # last day of month
            (2021, 3, 0xFF, 1, 0, 0, 0, 0, 0, 0),  # day not specified
            (2021, 3, 1, 1, 0xFF, 0, 0, 0, 0, 0),  # hour not specified
            (2021, 3, 1, 1, 0, 0xFF, 0, 0, 0, 0),  # minute not specified
            (2021, 3, 1, 1, 0, 0, 0xFF, 0, 0, 0),  # second not specified
            (2021, 2, 30, 1, 0, 0, 0, 0, 0, 0),  # out of range day
            (2021, 13, 1, 1, 0, 0, 0, 0, 0, 0),  # out of range month
            (2021, 3, 1, 1, 24, 0, 0, 0, 0, 0),  # out of range hour
            (2021, 3, 1, 1, 0, 0, 0, 100, 0, 0),  # out of range hundredths
            (2021, 3, 1, 1, 0, 0, 0, 0, 721, 0),  # out of range deviation
            (0, 3, 1, 1, 0, 0, 0, 0, 0, 0),  # year 0
        ],
    )
    def test_unspecified_or_out_of_range_fields_give_no_datetime(self, fields: tuple[int, ...]) -> None:
        raw = enc.date_time_bytes(raw_fields=fields)
        assert decode_date_time(raw, 0) is None
        assert read_date_time(raw, 0).datetime is None

    def test_all_0xff_fields_read_as_none(self) -> None:
        raw = bytes.fromhex("ffffffffffffffffff8000ff")
        assert read_date_time(raw, 0) == CosemDateTime(*([None] * 11))
        assert decode_date_time(raw, 0) is None

    def test_fields_and_fast_path_agree(self) -> None:
        raw = bytes.fromhex("07e60b1a060f0005ff800000")
        assert read_date_time(raw, 0).datetime == decode_date_time(raw, 0) == datetime(2022, 11, 26, 15, 0, 5)

    def test_short_date_time_raises(self) -> None:
        with pytest.raises(DecodeError, match="expected 12 date-time bytes, found 11"):
            decode_date_time(bytes(11), 0)
        with pytest.raises(DecodeError):
            read_date_time(bytes(13), 2)


class TestErrors:
    """Bad A-XDR raises DecodeError saying what was expected, what was found and where."""

    def test_unknown_tag(self) -> None:
        with pytest.raises(
            DecodeError, match=r"expected an A-XDR data tag, found unknown tag 0x07 at offset 2"
        ) as e:
            read_data(bytes.fromhex("0102070000"), 0)
        assert e.value.offset == 2

    def test_end_of_data(self) -> None:
        with pytest.raises(DecodeError, match="found end of data"):
            read_data(b"", 0)

    @pytest.mark.parametrize(
        "encoded",
        ["06000000", "1000", "0905010203", "0a", "0410ff", "17000000", "19" + "00" * 11, "1a0000", "1b00"],
    )
    def test_truncated_values(self, encoded: str) -> None:
        with pytest.raises(DecodeError, match="expected"):
            read_data(bytes.fromhex(encoded), 0)

    def test_count_larger_than_the_data(self) -> None:
        with pytest.raises(DecodeError, match="expected 100 elements"):
            read_data(bytes.fromhex("0164000000"), 0)

    def test_nesting_is_bounded(self) -> None:
        with pytest.raises(DecodeError, match="nested"):
            read_data(b"\x01\x01" * (MAX_DEPTH + 1) + b"\x00", 0)
        assert read_data(b"\x01\x01" * (MAX_DEPTH - 1) + b"\x00", 0)[1] == 2 * (MAX_DEPTH - 1) + 1

    def test_visible_string_with_garbage_never_raises(self) -> None:
        assert read_all(bytes.fromhex("0a03ff4100")) == "\ufffdA"


# Round trip of random (nested) values through the test encoder and the reader

LEAVES = st.one_of(
    st.none().map(lambda _: (enc.null(), None)),
    st.booleans().map(lambda v: (enc.boolean(v), v)),
    st.integers(-(2**31), 2**31 - 1).map(lambda v: (enc.double_long(v), v)),
    st.integers(0, 2**32 - 1).map(lambda v: (enc.double_long_unsigned(v), v)),
    st.binary(max_size=300).map(lambda v: (enc.octet_string(v), v)),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200).map(
        lambda v: (enc.visible_string(v), v)
    ),
    st.text(max_size=50).map(lambda v: (enc.utf8_string(v), v)),
    st.integers(-128, 127).map(lambda v: (enc.integer(v), v)),
    st.integers(-(2**15), 2**15 - 1).map(lambda v: (enc.long(v), v)),
    st.integers(0, 255).map(lambda v: (enc.unsigned(v), v)),
    st.integers(0, 2**16 - 1).map(lambda v: (enc.long_unsigned(v), v)),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: (enc.long64(v), v)),
    st.integers(0, 2**64 - 1).map(lambda v: (enc.long64_unsigned(v), v)),
    st.integers(0, 255).map(lambda v: (enc.enum(v), v)),
    st.floats(allow_nan=False, width=32).map(lambda v: (enc.float32(v), v)),
    st.floats(allow_nan=False).map(lambda v: (enc.float64(v), v)),
    st.text("01", max_size=40).map(lambda v: (enc.bit_string(v), v)),
)


def _compound(children: st.SearchStrategy[tuple[bytes, object]]) -> st.SearchStrategy[tuple[bytes, object]]:
    # up to 140 elements: counts of 0x81 xx appear too
    size = st.sampled_from((3, 20, 140))
    return st.tuples(
        st.sampled_from((enc.array, enc.structure)), size.flatmap(lambda n: st.lists(children, max_size=n))
    ).map(lambda pair: (pair[0]([e for e, _ in pair[1]]), [v for _, v in pair[1]]))


@settings(max_examples=120, deadline=None)
@given(st.recursive(LEAVES, _compound, max_leaves=200))
def test_random_values_read_back_as_encoded(case: tuple[bytes, object]) -> None:
    encoded, value = case
    assert read_all(encoded) == value


# Field ranges at their bounds (Blue Book 4.1.6.1): a value inside its range is kept, one past it is "not
# specified" (None); the instant exists only when every field is inside its range.
DATE_TIME_BOUNDS = [  # (field index, lowest, highest) of the 12-byte date-time
    (1, 1, 12),  # month
    (2, 1, 31),  # day of month
    (3, 1, 7),  # day of week
    (4, 0, 23),  # hour
    (5, 0, 59),  # minute
    (6, 0, 59),  # second
    (7, 0, 99),  # hundredths
]
ORDINARY = (2021, 3, 1, 1, 12, 30, 30, 50, -0x8000, 0)  # 2021-03-01 12:30:30.50, deviation not specified


def with_field(index: int, value: int) -> tuple[int, ...]:
    fields = list(ORDINARY)
    fields[index] = value
    return tuple(fields)


@pytest.mark.parametrize(("index", "low", "high"), DATE_TIME_BOUNDS)
def test_date_time_fields_kept_inside_their_range_none_outside(index: int, low: int, high: int) -> None:
    for value, kept in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
        if value < 0:  # hour, minute, second, hundredths start at 0
            continue
        parsed = read_date_time(enc.date_time_bytes(raw_fields=with_field(index, value)), 0)
        assert parsed[index] == (value if kept else None), (index, value)


@pytest.mark.parametrize(("index", "low", "high"), [bound for bound in DATE_TIME_BOUNDS if bound[0] < 4])
def test_date_fields_are_kept_inside_their_range_and_none_outside(index: int, low: int, high: int) -> None:
    for value, kept in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
        raw = enc.date_time_bytes(raw_fields=with_field(index, value))[:5]
        assert read_date(raw, 0)[index] == (value if kept else None), (index, value)


@pytest.mark.parametrize(("index", "low", "high"), [bound for bound in DATE_TIME_BOUNDS if bound[0] >= 4])
def test_time_fields_are_kept_inside_their_range_and_none_outside(index: int, low: int, high: int) -> None:
    for value, kept in ((low, True), (high, True), (high + 1, False)):
        raw = enc.date_time_bytes(raw_fields=with_field(index, value))[5:9]
        assert read_time(raw, 0)[index - 4] == (value if kept else None), (index, value)


@pytest.mark.parametrize(
    ("deviation", "offset_minutes"), [(720, -720), (-720, 720), (721, None), (-721, None)]
)
def test_deviation_bounds(deviation: int, offset_minutes: int | None) -> None:
    raw = enc.date_time_bytes(raw_fields=with_field(8, deviation))
    moment = decode_date_time(raw, 0)
    if offset_minutes is None:
        assert moment is None and read_date_time(raw, 0).datetime is None
    else:
        assert moment is not None and moment.utcoffset() == timedelta(minutes=offset_minutes)


@pytest.mark.parametrize(
    ("read", "size", "what"),
    [(read_date_time, 12, "date-time"), (decode_date_time, 12, "date-time"), (read_date, 5, "date"),
     (read_time, 4, "time")],
)  # fmt: skip
def test_too_few_bytes_raise_at_the_field_saying_how_many(read: Any, size: int, what: str) -> None:
    data = bytes(range(1, size + 3))
    assert read(data, 2) is not None or read is decode_date_time  # exactly enough bytes from pos 2
    for pos, found in ((3, size - 1), (len(data), 0), (len(data) + 5, 0), (-1, None)):
        with pytest.raises(DecodeError) as raised:
            read(data, pos)
        assert raised.value.offset == pos
        if found is not None:
            assert f"expected {size} {what} bytes, found {found}" in str(raised.value)


@pytest.mark.parametrize(
    ("encoded", "size"),
    [("03", 1), ("05000000", 4), ("06000000", 4), ("0d", 1), ("0f", 1), ("10ff", 2), ("1100", 0),
     ("12ff", 2), ("14" + "00" * 7, 8), ("15" + "00" * 7, 8), ("1600", 0), ("17" + "00" * 3, 4),
     ("18" + "00" * 7, 8), ("19" + "00" * 11, 12), ("1a" + "00" * 4, 5), ("1b" + "00" * 3, 4)],
)  # fmt: skip
def test_truncated_fixed_size_values_say_size_and_offset(encoded: str, size: int) -> None:
    data = bytes.fromhex(encoded)
    if size == 0:  # one-octet types whose octet is there: complete
        assert read_data(data, 0)[1] == 2
        return
    with pytest.raises(DecodeError) as raised:
        read_data(data, 0)
    assert raised.value.offset == 1
    assert f"expected {size} value bytes, found {len(data) - 1}" in str(raised.value)
    assert read_data(data + b"\x00", 0)[1] == len(data) + 1  # one more octet completes it


def test_text_types_keep_what_is_not_padding_and_replace_what_does_not_decode() -> None:
    assert read_all(enc.visible_string("AX")) == "AX"  # only NUL padding is dropped, no other letter
    assert read_all(bytes.fromhex("0a04") + b"X\x00\x00\x00") == "X"
    assert read_all(bytes.fromhex("0c03") + b"a\xffb") == "a\ufffdb"  # invalid UTF-8 becomes U+FFFD
    assert read_all(bytes.fromhex("0a02") + b"\xc5X") == "\ufffdX"


def test_an_unusual_deviation_gets_its_own_offset() -> None:
    moment = decode_date_time(enc.date_time_bytes(datetime(2021, 3, 1, 12, 0, 0), deviation=-37), 0)
    assert moment is not None and moment.utcoffset() == timedelta(minutes=37)


def test_a_nested_count_larger_than_the_rest_is_reported_where_it_stands() -> None:
    # structure of 2: unsigned 1, then an array claiming 99 elements with only 10 bytes after its count
    with pytest.raises(DecodeError) as raised:
        read_data(bytes.fromhex("0202" "1101" "0163") + bytes(10), 0)
    assert raised.value.offset == 6 and "expected 99 elements, found only 10 bytes" in str(raised.value)


# Error text and offsets at each raise site, and what the reader factories build (mutation testing, issue 18)


@pytest.mark.parametrize(
    ("data", "pos", "message", "offset"),
    [
        (b"\x05\x06", 2, "expected an A-XDR length, found end of data", 2),
        (b"\x00\x80", 1, "expected an A-XDR length (< 0x80 or 0x81-0x84), found 0x80", 1),
        (b"\x00\x00\x85" + bytes(5), 2, "expected an A-XDR length (< 0x80 or 0x81-0x84), found 0x85", 2),
        (b"\x00\x00\x83\x01\x02", 2, "expected 3 A-XDR length bytes, found 2", 3),
        (b"\x00\x84", 1, "expected 4 A-XDR length bytes, found 0", 2),
    ],
)
def test_length_errors_say_what_was_found_and_where(data: bytes, pos: int, message: str, offset: int) -> None:
    with pytest.raises(DecodeError) as raised:
        read_length(data, pos)
    assert str(raised.value) == f"{message} at offset {offset}"
    assert raised.value.offset == offset


@pytest.mark.parametrize(
    ("encoded", "message", "offset"),
    [
        ("0201" "0a05" "616263", "expected 5 string bytes, found 3", 4),  # visible-string in a structure
        ("0201" "0981ff" "00", "expected 255 string bytes, found 1", 5),
        ("0201" "0408", "expected 1 bit-string bytes, found 0", 4),  # 8 bits: one octet
        ("0201" "041100", "expected 3 bit-string bytes, found 1", 4),  # 17 bits: three octets
        ("0201" "0409ff", "expected 2 bit-string bytes, found 1", 4),
        ("0202" "1101", "expected an A-XDR data tag, found end of data", 4),  # 2 fit in 2 bytes
        ("0202" "0a0141", "expected an A-XDR data tag, found end of data", 5),
    ],
)  # fmt: skip
def test_value_errors_say_what_was_found_and_where(encoded: str, message: str, offset: int) -> None:
    with pytest.raises(DecodeError) as raised:
        read_data(bytes.fromhex(encoded), 0)
    assert str(raised.value) == f"{message} at offset {offset}"
    assert raised.value.offset == offset


def test_nesting_limit_is_exactly_max_depth_and_the_error_points_at_the_tag_too_deep() -> None:
    value, end = read_data(b"\x01\x01" * MAX_DEPTH + b"\x11\x07", 0)
    assert end == 2 * MAX_DEPTH + 2
    for _ in range(MAX_DEPTH):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == 7
    with pytest.raises(DecodeError) as raised:
        read_data(b"\x00" + b"\x02\x01" * (MAX_DEPTH + 1) + b"\x00", 1)
    assert str(raised.value) == (
        f"expected at most {MAX_DEPTH} nested arrays/structures, found more at offset {1 + 2 * MAX_DEPTH}"
    )
    assert raised.value.offset == 1 + 2 * MAX_DEPTH


def test_an_element_count_is_checked_against_the_bytes_after_it_not_before() -> None:
    # 40 bytes of padding in front: a count of 5 with 4 bytes after it is too many wherever it stands
    data = bytes(40) + bytes.fromhex("0105") + bytes.fromhex("11011102")
    with pytest.raises(DecodeError) as raised:
        read_data(data, 40)
    assert str(raised.value) == "expected 5 elements, found only 4 bytes at offset 42"


def test_fixed_size_reader_factory_reads_its_size_and_says_what_is_missing() -> None:
    read = axdr._fixed(3, lambda data, pos: data[pos : pos + 3])
    assert read(b"\x00abcd", 1, 0) == (b"abc", 4)
    assert read(b"\x00abc", 1, 0) == (b"abc", 4)  # exactly enough
    with pytest.raises(DecodeError) as raised:
        read(b"\x00\x00ab", 2, 0)
    assert str(raised.value) == "expected 3 value bytes, found 2 at offset 2"
    assert raised.value.offset == 2


@pytest.mark.parametrize(
    ("size", "signed", "raw", "value"),
    [(1, True, "ff", -1), (1, False, "ff", 255), (2, True, "ff9c", -100), (2, False, "0102", 258),
     (4, True, "80000000", -(2**31)), (8, False, "0000000000000100", 256)],
)  # fmt: skip
def test_integer_reader_factory_reads_big_endian_with_the_sign_asked(
    size: int, signed: bool, raw: str, value: int
) -> None:
    read = axdr._int_reader(size, signed)
    data = b"\xaa" + bytes.fromhex(raw) + b"\xbb"
    assert read(data, 1, 0) == (value, 1 + size)
    with pytest.raises(DecodeError) as raised:
        read(data[:size], 1, 0)
    assert str(raised.value) == f"expected {size} value bytes, found {size - 1} at offset 1"


@pytest.mark.parametrize(("fmt", "raw", "value"), [(">f", "c0200000", -2.5), (">d", "3ff8000000000000", 1.5)])
def test_float_reader_factory_reads_its_struct_format(fmt: str, raw: str, value: float) -> None:
    read = axdr._struct_reader(fmt)
    data = b"\xaa" + bytes.fromhex(raw) + b"\xbb"
    result, end = read(data, 1, 0)
    assert type(result) is float and result == value and end == 1 + len(raw) // 2
    with pytest.raises(DecodeError) as raised:
        read(data[: len(raw) // 2], 1, 0)
    assert str(raised.value) == f"expected {len(raw) // 2} value bytes, found {len(raw) // 2 - 1} at offset 1"


def test_one_tzinfo_object_per_deviation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each deviation makes its fixed-offset timezone once: the values of one meter share it."""
    monkeypatch.setattr(axdr, "_TIMEZONES", {})
    raw = enc.date_time_bytes(datetime(2021, 3, 1, 12, 0, 0), deviation=-90)
    first, second = decode_date_time(raw, 0), read_date_time(raw, 0).datetime
    assert first is not None and second is not None
    assert first.utcoffset() == timedelta(minutes=90)
    assert first.tzinfo is second.tzinfo
    assert list(axdr._TIMEZONES.items()) == [(-90, timezone(timedelta(minutes=90)))]
