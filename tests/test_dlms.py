"""LLC header and data-notification APDU: every date-time form, invoke-id bits, unsupported APDUs."""

from __future__ import annotations

from datetime import datetime

import _cosem_encoder as enc
import pytest
from _support import corpus_frames

from amshan import DecodeError, dlms
from amshan.dlms import (
    BlockTransferAssembler,
    LongInvokeIdAndPriority,
    apdu_offset,
    decode_data_notification,
    is_whole_apdu,
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


def test_a_notification_with_the_date_time_right_after_the_invoke_id_gives_its_fields() -> None:
    for form, offset in (("0c", 6), ("19", 6), ("090c", 7)):
        data = enc.notification(BODY, header_date_time=DT, date_time_form=form, llc=False)
        message = decode_data_notification(data)
        assert message.date_time is not None and message.date_time.datetime == MOMENT
        assert read_notification_header(data).date_time_offset == offset


def test_the_handler_of_an_unsupported_apdu_names_it_at_its_offset() -> None:
    handler = dlms._unsupported("a thing this library does not read")
    with pytest.raises(DecodeError) as raised:
        handler(b"\xe6\xe7\x00\xdd\x00", 3)
    assert str(raised.value) == (
        "expected a data-notification APDU (0x0f), found a thing this library does not read at offset 3"
    )
    assert raised.value.offset == 3


# general-block-transfer (han-spec 3.5): E0 | block-control | block-number (2) | ack (2) | length + block data

APDU = enc.notification(BODY, header_date_time=DT, llc=False)
LAST, STREAMING = 0x80, 0x40


def block(number: int, data: bytes, control: int = STREAMING, *, llc: bool = False) -> bytes:
    """One block of a general-block-transfer (acknowledged block number 0, as meters push them)."""
    head = bytes([0xE0, control]) + number.to_bytes(2, "big") + b"\x00\x00" + enc.length(len(data))
    return (enc.LLC if llc else b"") + head + data


def blocks_of(apdu: bytes, parts: int) -> list[bytes]:
    """Cut an APDU into parts blocks: the LLC header before block 1 only, the last-block bit on the last."""
    size = -(-len(apdu) // parts)
    pieces = [apdu[at : at + size] for at in range(0, len(apdu), size)]
    return [
        block(n, piece, STREAMING | (LAST if n == len(pieces) else 0), llc=n == 1)
        for n, piece in enumerate(pieces, start=1)
    ]


def drop_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "amshan.dlms"]


def test_blocks_join_in_number_order_into_the_apdu() -> None:
    assembler = BlockTransferAssembler()
    assert not assembler.pending
    three = blocks_of(APDU, 3)
    assert len(three) == 3
    assert assembler.add(three[0]) is None and assembler.pending
    assert assembler.add(three[1]) is None and assembler.pending
    assert assembler.add(three[2]) == APDU and not assembler.pending
    # one sequence after the other, without and with the LLC header, control 0x80 alone marks the last
    assert [assembler.add(b) for b in three] == [None, None, APDU]
    plain = [block(1, APDU[:10], 0x00), block(2, APDU[10:], LAST)]
    assert [assembler.add(b) for b in plain] == [None, APDU]
    assert assembler.add(block(1, APDU, LAST | STREAMING | 0x3F, llc=True)) == APDU  # window size bits
    assert assembler.add(block(1, APDU, 0x3F)) is None and assembler.pending  # not the last one
    assert assembler.add(block(2, b"", LAST)) == APDU  # an empty last block
    assert assembler.dropped_messages == 0


def test_block_numbers_are_read_as_two_octets_big_endian() -> None:
    apdu = bytes(range(256)) * 2
    pieces = [block(n, apdu[n - 1 : n], llc=True) for n in range(1, len(apdu))]
    pieces.append(block(len(apdu), apdu[-1:], LAST, llc=True))
    assembler = BlockTransferAssembler()
    assert [assembler.add(b) for b in pieces] == [None] * (len(apdu) - 1) + [apdu]
    assert assembler.dropped_messages == 0


def test_a_message_that_is_no_block_passes_and_ends_a_sequence(caplog: pytest.LogCaptureFixture) -> None:
    assembler = BlockTransferAssembler()
    notification = enc.notification(BODY)
    with caplog.at_level("WARNING", logger="amshan.dlms"):
        assert assembler.add(notification) == notification  # nothing pending: nothing dropped
        assert assembler.add(b"") == b""
        assert assembler.dropped_messages == 0 and drop_warnings(caplog) == []
        three = blocks_of(APDU, 3)
        assert assembler.add(three[0]) is None
        assert assembler.add(three[1]) is None
        assert assembler.add(notification) == notification
    assert not assembler.pending and assembler.dropped_messages == 1
    assert drop_warnings(caplog) == [
        "Dropped a block-transfer sequence after 2 blocks: a message that is no block arrived"
    ]
    assert assembler.add(three[2]) is None  # the rest of the dropped sequence gives nothing
    assert [assembler.add(b) for b in three] == [None, None, APDU]  # the next sequence is whole
    assert assembler.dropped_messages == 1


SHORT_HEADER = "expected a block-transfer header of 6 octets, found end of data"


@pytest.mark.parametrize(
    ("damaged", "reason"),
    [
        ("e0400002" "00", f"{SHORT_HEADER} at offset 0"),
        ("e6e700" "e0400002" "00", f"{SHORT_HEADER} at offset 3"),
        ("e0400002" "0000", "expected an A-XDR length, found end of data at offset 6"),
        ("e0400002" "0000" "05" "01020304", "expected 5 octets of block data, found 4 at offset 7"),
        ("e0400002" "0000" "05" "010203040506", "expected 5 octets of block data, found 6 at offset 7"),
        ("e6e700" "e0c00002" "0000" "03" "0102", "expected 3 octets of block data, found 2 at offset 10"),
        ("e0400002" "0000" "85", "expected an A-XDR length (< 0x80 or 0x81-0x84), found 0x85 at offset 6"),
    ],
)  # fmt: skip
def test_a_damaged_block_drops_the_sequence_saying_why(
    damaged: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    assembler = BlockTransferAssembler()
    first = blocks_of(APDU, 2)[0]
    with caplog.at_level("WARNING", logger="amshan.dlms"):
        assert assembler.add(first) is None
        assert assembler.add(bytes.fromhex(damaged)) is None
    assert not assembler.pending and assembler.dropped_messages == 1
    warning = f"Dropped a block-transfer sequence after 1 blocks: a damaged block: {reason}"
    assert drop_warnings(caplog) == [warning]
    assert assembler.add(bytes.fromhex(damaged)) is None  # nothing pending: nothing more dropped
    assert assembler.dropped_messages == 1


def test_missing_repeated_or_early_blocks_drop_the_sequence(caplog: pytest.LogCaptureFixture) -> None:
    four = blocks_of(APDU, 4)
    assembler = BlockTransferAssembler()
    with caplog.at_level("WARNING", logger="amshan.dlms"):
        assert assembler.add(four[1]) is None  # block 2 with nothing pending: nothing to drop
        assert [assembler.add(four[0]), assembler.add(four[2])] == [None, None]  # block 2 missing
    assert not assembler.pending and assembler.dropped_messages == 1
    assert drop_warnings(caplog) == [
        "Dropped a block-transfer sequence after 1 blocks: block 3 arrived out of order"
    ]
    assert [assembler.add(b) for b in four[1:]] == [None, None, None]
    for broken in ([four[0], four[1], four[1]], [four[0], four[1], four[3]]):  # repeated, missing block 3
        assembler = BlockTransferAssembler()
        assert [assembler.add(b) for b in broken] == [None] * len(broken)
        assert assembler.dropped_messages == 1
        assert [assembler.add(b) for b in four] == [None, None, None, APDU]  # a new block 1 starts afresh
        assert assembler.dropped_messages == 1


def test_a_new_block_1_restarts_the_sequence(caplog: pytest.LogCaptureFixture) -> None:
    three = blocks_of(APDU, 3)
    assembler = BlockTransferAssembler()
    with caplog.at_level("WARNING", logger="amshan.dlms"):
        assert [assembler.add(b) for b in [three[0], three[1], *three]] == [None, None, None, None, APDU]
    assert assembler.dropped_messages == 1
    assert drop_warnings(caplog) == [
        "Dropped a block-transfer sequence after 2 blocks: a new block 1 arrived before the last block"
    ]


def test_the_blocks_of_one_message_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    limit = BlockTransferAssembler.MAX_MESSAGE_LENGTH
    assert limit == 0x10000
    assembler = BlockTransferAssembler()
    assert assembler.add(block(1, bytes(limit - 1))) is None
    assert assembler.add(block(2, b"\x01")) is None
    assert assembler.pending and assembler.dropped_messages == 0  # exactly the limit is kept
    assert assembler.add(block(3, b"\x02", LAST)) == bytes(limit - 1) + b"\x01\x02"
    assembler.add(block(1, bytes(limit)))
    assert assembler.pending
    with caplog.at_level("WARNING", logger="amshan.dlms"):
        assembler.add(block(2, b"\x01"))  # one octet more: dropped at once, not held until the last block
    assert not assembler.pending and assembler.dropped_messages == 1
    assert drop_warnings(caplog) == [
        "Dropped a block-transfer sequence after 2 blocks: the blocks grew beyond 65536 octets"
    ]
    assert assembler.add(block(3, b"\x02", LAST)) is None


def test_drops_are_counted_and_their_warnings_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    first = blocks_of(APDU, 2)[0]
    assembler = BlockTransferAssembler()
    with caplog.at_level("WARNING", logger="amshan.dlms"):
        for _ in range(4):
            assembler.add(first)
            assembler.drop("the line went quiet")
        assembler._warnings._next_time = float("-inf")  # the interval has passed
        assembler.add(first)
        assembler.drop("the line went quiet")
        assembler.drop("nothing pending")  # no sequence: neither counted nor logged
    assert assembler.dropped_messages == 5
    assert drop_warnings(caplog) == [
        "Dropped a block-transfer sequence after 1 blocks: the line went quiet",
        "Dropped a block-transfer sequence after 1 blocks: the line went quiet (3 more drops not logged)",
    ]


# is_whole_apdu: the test a reassembled HDLC message must pass (a lost or extra segment fails it)

CIPHERED_BODY = bytes([0x30]) + (0x01020304).to_bytes(4, "big") + bytes(range(40))  # SC, IC, text, tag
SYSTEM_TITLE = b"KFM\x10\x00\x00\x00\x01"


@pytest.mark.parametrize("llc", [False, True])
@pytest.mark.parametrize(
    "whole",
    [
        enc.notification(BODY, llc=False),
        enc.notification(BODY, header_date_time=DT, date_time_form="090c", llc=False),
        enc.notification(enc.array([enc.unsigned(1), enc.long_unsigned(2)]), llc=False),  # ints alike
        enc.notification(enc.array([]), llc=False),
        enc.notification(enc.structure([enc.unsigned(1), enc.octet_string(b"x")]), llc=False),
        enc.notification(enc.unsigned(7), llc=False),
        b"\xdb\x08" + SYSTEM_TITLE + enc.length(len(CIPHERED_BODY)) + CIPHERED_BODY,
        b"\xdc\x08" + SYSTEM_TITLE + enc.length(len(CIPHERED_BODY)) + CIPHERED_BODY,
        b"\xdb\x08" + SYSTEM_TITLE + enc.length(200) + bytes(200),  # a long-form length
        b"\xdb\x00" + enc.length(3) + b"abc",  # no system title
        block(1, b"\x0f\x40\x00", llc=False),
        block(0x0102, bytes(300), LAST, llc=False),
    ],
)
def test_a_whole_apdu_is_whole_and_one_octet_more_or_less_is_not(whole: bytes, llc: bool) -> None:
    information = (enc.LLC if llc else b"") + whole
    assert is_whole_apdu(information)
    assert not is_whole_apdu(information + b"\x00")
    assert not is_whole_apdu(information[:-1])


@pytest.mark.parametrize(
    "information",
    [
        b"",
        enc.LLC,
        enc.notification(enc.array([enc.unsigned(1), enc.octet_string(b"x")])),  # an array of two types
        enc.notification(enc.array([enc.structure([]), enc.unsigned(1)]), llc=False),
        bytes.fromhex("0f40000000") + b"\x05" + BODY,  # no date-time form
        bytes.fromhex("c2") + bytes(8),  # event-notification: not measured
        bytes.fromhex("dd") + bytes(8),  # general-ciphering: not measured
        bytes.fromhex("e6e700dd08") + SYSTEM_TITLE + b"\x00",
        bytes.fromhex("00"),
    ],
)
def test_what_cannot_be_measured_is_not_whole(information: bytes) -> None:
    assert not is_whole_apdu(information)


def test_corpus_apdus_are_whole() -> None:
    vectors = [v for v in corpus_frames(layer="apdu", valid=True) if v["hex"][:2] in ("0f", "db")]
    assert len(vectors) >= 10
    for vector in vectors:
        information = bytes.fromhex(vector["hex"])
        assert is_whole_apdu(information), vector["id"]
        assert not is_whole_apdu(information[:-1]), vector["id"]
