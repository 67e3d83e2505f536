"""LLC header and data-notification APDU: every date-time form, invoke-id bits, unsupported APDUs."""

from __future__ import annotations

from datetime import datetime

import _cosem_encoder as enc
import pytest
from _support import corpus_frames

from amshan import DecodeError
from amshan.dlms import (
    LongInvokeIdAndPriority,
    apdu_offset,
    decode_data_notification,
    read_notification_header,
)

BODY = enc.array([enc.structure([enc.obis("1.0.1.7.0.255"), enc.double_long_unsigned(280)])])
MOMENT = datetime(2020, 2, 3, 15, 27, 10)
DT = enc.date_time_bytes(MOMENT)


@pytest.mark.parametrize("form", ["0c", "090c", "19"])
@pytest.mark.parametrize("llc", [True, False])
def test_date_time_forms(form: str, llc: bool) -> None:
    data = enc.notification(BODY, header_date_time=DT, date_time_form=form, llc=llc)
    header = read_notification_header(data)
    assert header.date_time == MOMENT
    assert data[header.body_offset :] == BODY
    assert data[header.date_time_offset : header.date_time_offset + 12] == DT


@pytest.mark.parametrize("llc", [True, False])
def test_no_date_time(llc: bool) -> None:
    data = enc.notification(BODY, llc=llc)
    header = read_notification_header(data)
    assert header.date_time is None
    assert header.date_time_offset == -1
    assert data[header.body_offset :] == BODY


def test_unspecified_header_date_time_gives_none() -> None:
    data = enc.notification(BODY, header_date_time=bytes.fromhex("ffffffffffffffffff8000ff"))
    assert read_notification_header(data).date_time is None


def test_whole_notification_as_values() -> None:
    data = enc.notification(BODY, invoke=0xC0000123, header_date_time=DT, date_time_form="090c")
    message = decode_data_notification(data)
    assert message.long_invoke_id_and_priority == LongInvokeIdAndPriority(0x123, False, False, True, True)
    assert message.date_time is not None and message.date_time.datetime == MOMENT
    assert message.body == [[bytes([1, 0, 1, 7, 0, 255]), 280]]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        (0x40000000, LongInvokeIdAndPriority(0, False, False, True, False)),  # Aidon, Kaifa: id 0, confirmed
        (0x00000000, LongInvokeIdAndPriority(0, False, False, False, False)),  # Kamstrup
        (0x8006870E, LongInvokeIdAndPriority(0x06870E, False, False, False, True)),  # Netz NOE
        (0x00011E70, LongInvokeIdAndPriority(0x011E70, False, False, False, False)),  # Iskra counter
        (0x30000000, LongInvokeIdAndPriority(0, True, True, False, False)),
        (0x0FFFFFFF, LongInvokeIdAndPriority(0xFFFFFF, False, False, False, False)),  # bits 24-27 unused
        (0xF0000001, LongInvokeIdAndPriority(1, True, True, True, True)),
    ],
)
def test_long_invoke_id_and_priority_bits(word: int, expected: LongInvokeIdAndPriority) -> None:
    assert LongInvokeIdAndPriority.from_int(word) == expected


def test_real_apdus_from_the_corpus_parse() -> None:
    vectors = [v for v in corpus_frames(layer="apdu", valid=True) if v["hex"].startswith("0f")]
    assert vectors
    for vector in vectors:
        message = decode_data_notification(bytes.fromhex(vector["hex"]))
        assert message.body is not None


def test_netz_noe_apdu_invoke_id_and_date_time() -> None:
    vector = next(
        v
        for v in corpus_frames(layer="apdu")
        if v["id"].startswith("at-kaifa-apdu-doc-evn-kundenschnittstelle")
    )
    message = decode_data_notification(bytes.fromhex(vector["hex"]))
    assert message.long_invoke_id_and_priority.invoke_id == 0x06870E  # spec 3.3: 80 06 87 0E
    assert message.long_invoke_id_and_priority.high_priority
    assert message.date_time is not None and message.date_time.datetime is not None
    assert message.date_time.datetime.isoformat() == vector["values"]["meter_datetime"]


class TestErrors:
    """Anything but a plain data-notification raises a DecodeError that says what it found."""

    def test_encrypted_apdu(self) -> None:
        vector = next(v for v in corpus_frames(layer="apdu", encrypted=True) if v["hex"].startswith("db"))
        with pytest.raises(
            DecodeError, match=r"general-glo-ciphering APDU \(0xdb\), which AutoDecoder decrypts"
        ):
            read_notification_header(bytes.fromhex(vector["hex"]))

    def test_encrypted_apdu_behind_llc(self) -> None:
        with pytest.raises(DecodeError, match=r"general-glo-ciphering.* at offset 3"):
            read_notification_header(bytes.fromhex("e6e700db084b414d45"))

    def test_general_block_transfer(self) -> None:
        with pytest.raises(DecodeError, match="general-block-transfer"):
            read_notification_header(bytes.fromhex("e6e700e040000100007000"))

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ("", "expected an APDU tag, found end of data at offset 0"),
            ("e6e700", "expected an APDU tag, found end of data at offset 3"),
            ("e6e800", "expected LLC header e6 e7 00, found e6 e8 00 at offset 0"),
            ("c1", "expected a data-notification APDU \\(0x0f\\), found tag 0xc1 at offset 0"),
            ("0f400000", "expected a data-notification header of at least 6 bytes, found 4 at offset 0"),
            ("0f4000000005", "expected a date-time field .*found 05 at offset 5"),
            ("0f4000000009", "expected a date-time field .*found 09 at offset 5"),
            ("0f400000000c07e4", "expected 12 date-time bytes, found 2 at offset 6"),
        ],
    )
    def test_malformed(self, data: str, message: str) -> None:
        with pytest.raises(DecodeError, match=message):
            read_notification_header(bytes.fromhex(data))

    def test_trailing_bytes_after_the_body(self) -> None:
        with pytest.raises(DecodeError, match="expected the APDU to end after its body, found 1 more bytes"):
            decode_data_notification(enc.notification(BODY) + b"\x00")

    def test_apdu_offset(self) -> None:
        assert apdu_offset(b"\xe6\xe7\x00\x0f") == 3
        assert apdu_offset(b"\x0f") == 0
        assert apdu_offset(b"") == 0


def test_the_llc_header_may_name_either_sap_and_a_wrong_one_is_shown() -> None:
    apdu = bytes.fromhex("0f40000000") + b"\x00" + BODY
    assert apdu_offset(b"\xe6\xe6\x00" + apdu) == apdu_offset(b"\xe6\xe7\x00" + apdu) == 3
    assert apdu_offset(apdu) == 0
    for content, shown in (("e6e800", "e6 e8 00"), ("e6e701", "e6 e7 01"), ("e6", "e6 0f 40")):
        with pytest.raises(DecodeError) as raised:
            apdu_offset(bytes.fromhex(content) + apdu)
        assert str(raised.value) == f"expected LLC header e6 e7 00, found {shown} at offset 0"


def test_header_errors_say_what_was_found_and_where() -> None:
    with pytest.raises(DecodeError) as raised:
        read_notification_header(bytes.fromhex("e6e7000f400000"))
    assert str(raised.value).startswith("expected a data-notification header of at least 6 bytes, found 4")
    assert raised.value.offset == 3
    with pytest.raises(DecodeError) as raised:
        read_notification_header(bytes.fromhex("e6e7000f40000000") + bytes.fromhex("0a0b0c0d"))
    assert str(raised.value) == (
        "expected a date-time field (00, 0c + 12 bytes, 09 0c + 12 bytes or 19 + 12 bytes), "
        "found 0a 0b at offset 8"
    )
    header = read_notification_header(bytes.fromhex("0f01020304") + b"\x00" + BODY)
    assert header.long_invoke_id_and_priority == 0x01020304


@pytest.mark.parametrize(
    ("tag", "found"),
    [("db", "a general-glo-ciphering APDU (0xdb)"), ("dc", "a general-ded-ciphering APDU (0xdc)"),
     ("dd", "an encrypted general-ciphering APDU (0xdd)"), ("e0", "a general-block-transfer APDU (0xe0)"),
     ("c2", "an event-notification APDU (0xc2)"), ("0e", "tag 0x0e")],
)  # fmt: skip
def test_other_apdus_are_named_at_their_offset(tag: str, found: str) -> None:
    with pytest.raises(DecodeError) as raised:
        read_notification_header(bytes.fromhex("e6e700" + tag + "00" * 8))
    assert str(raised.value).startswith(f"expected a data-notification APDU (0x0f), found {found}")
    assert raised.value.offset == 3


def test_bytes_after_the_body_are_reported_where_they_start() -> None:
    content = bytes.fromhex("e6e7000f40000000") + b"\x00" + BODY
    with pytest.raises(DecodeError) as raised:
        decode_data_notification(content + b"\x01\x02")
    assert str(raised.value).endswith(f"found 2 more bytes at offset {len(content)}")
    assert raised.value.offset == len(content)
