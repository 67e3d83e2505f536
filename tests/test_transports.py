"""M-Bus long frames, general-block-transfer and bare APDUs through MeterReader: corpus and spec."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from _cipher_encoder import cipher
from _support import corpus_frames, load_corpus
from _transport_encoder import block_transfer, hdlc, mbus, mbus_frame

from amshan.autodecoder import AutoDecoder
from amshan.cipher import Decipherer, parse_ciphered_apdu
from amshan.dlms import BlockTransferAssembler
from amshan.framing import FrameScanner
from amshan.mbus import MbusFramer, MbusMessageAssembler, parse_frame
from amshan.reader import MeterReader

PAD = b"\x00" * 600  # lets every length an M-Bus header claims be reached
EK = bytes(range(0x10, 0x20))
AK = bytes(range(0xC0, 0xD0))
MBUS = corpus_frames(layer="mbus")
PLAIN_OF = {  # ciphered M-Bus vector -> the corpus vector of its published plaintext
    "at-kaifa-mbus-doc-evn-kundenschnittstelle-ma309-example": (
        "at-kaifa-apdu-doc-evn-kundenschnittstelle-ma309-example-plain"
    ),
    "at-kaifa-mbus-tirol-example": "at-kaifa-apdu-tirol-example-plain",
}


def keys_of(vector: Dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    keys = vector["keys"] or {}
    ek, ak = keys.get("encryption_key"), keys.get("authentication_key")
    return (bytes.fromhex(ek) if ek else None, bytes.fromhex(ak) if ak else None)


def read_all(reader: MeterReader, stream: bytes, chunk: int) -> List[Dict[str, Any]]:
    found: List[Dict[str, Any]] = []
    for start in range(0, len(stream), chunk):
        found.extend(reader.read(stream[start : start + chunk]))
    return found


def mbus_data(vector: Dict[str, Any]) -> bytes:
    """The joined data parts of a multi-frame M-Bus vector, by the spec's layout (after DTSAP, before CS)."""
    return b"".join(bytes.fromhex(frame)[9:-2] for frame in vector["frames"])


def test_corpus_has_mbus_vectors_of_every_kind() -> None:
    kinds = {str(v["valid"]) for v in MBUS}
    assert kinds == {"True", "False", "partial"}
    assert any(v["checks"].get("l_field_wrapped") and v["valid"] is True for v in MBUS)
    assert set(PLAIN_OF) <= {v["id"] for v in MBUS}


@pytest.mark.parametrize("vector", [v for v in MBUS if v["valid"] is True], ids=lambda v: v["id"])
@pytest.mark.parametrize("chunk", [1, 5, 1 << 20])
def test_valid_mbus_vector_gives_every_frame(vector: Dict[str, Any], chunk: int) -> None:
    reader = MeterReader()
    assert read_all(reader, bytes.fromhex(vector["hex"]) + PAD, chunk) == []  # ciphered: no key, no data
    frames = vector["checks"].get("frame_count", 1)
    assert reader.stats.transports == {"mbus": frames}
    assert reader.stats.invalid_frames == 0
    if vector["frames"]:  # whole messages: ciphered APDUs that need the key
        assert reader.stats.ciphering.no_key == reader.stats.messages >= 1


@pytest.mark.parametrize("vector", [v for v in MBUS if v["valid"] == "partial"], ids=lambda v: v["id"])
def test_partial_mbus_vector_gives_its_intact_frames(vector: Dict[str, Any]) -> None:
    for chunk in (1, 1 << 20):
        reader = MeterReader()
        read_all(reader, bytes.fromhex(vector["hex"]) + PAD, chunk)
        assert reader.stats.transports.get("mbus", 0) == vector["checks"]["intact_frames"]


@pytest.mark.parametrize("vector", [v for v in MBUS if v["valid"] is False], ids=lambda v: v["id"])
def test_invalid_mbus_vector_gives_nothing(vector: Dict[str, Any]) -> None:
    reader = MeterReader(*keys_of(vector))
    assert read_all(reader, bytes.fromhex(vector["hex"]) + PAD, 1) == []
    assert reader.stats.messages == 0


@pytest.mark.parametrize("vector_id", sorted(PLAIN_OF))
def test_public_key_mbus_vectors_decrypt_to_their_published_plaintext(vector_id: str) -> None:
    vector = next(v for v in MBUS if v["id"] == vector_id)
    plain = next(v for v in load_corpus() if v["id"] == PLAIN_OF[vector_id])
    ek, ak = keys_of(vector)
    apdu = parse_ciphered_apdu(mbus_data(vector))
    assert apdu.system_title.hex() == vector["keys"]["system_title"]
    assert Decipherer(ek, ak).candidates(apdu) == [(bytes.fromhex(plain["hex"]), False)]
    # and through the whole stream: MeterReader gives what the plaintext gives
    expected = AutoDecoder().decode_frame_content(bytes.fromhex(plain["hex"]))
    reader = MeterReader(ek, ak)
    assert read_all(reader, bytes.fromhex(vector["hex"]) + PAD, 3) == ([] if expected is None else [expected])
    assert reader.stats.ciphering.decrypted == 1


def test_polish_mbus_vector_decrypts_with_its_public_key() -> None:
    vector = next(v for v in MBUS if v["id"] == "pl-kaifa-mbus-gh905-1")
    apdu = parse_ciphered_apdu(mbus_data(vector))
    assert apdu.security_control == 0x21
    ((plaintext, authenticated),) = Decipherer(*keys_of(vector)).candidates(apdu)
    assert not authenticated
    assert plaintext.startswith(bytes.fromhex("0f000018cf0c07e5091b01143800 00ff8880".replace(" ", "")))


def test_sagemcom_wrapped_length_frames_are_found() -> None:
    vector = next(v for v in MBUS if v["id"] == "at-sagemcom-mbus-gh155-4")
    frames = [bytes.fromhex(frame) for frame in vector["frames"]]
    assert frames[0][1] == 1 and len(frames[0]) == 1 + 256 + 6  # L written mod 256
    scanner = FrameScanner([MbusFramer()], 600)
    found = scanner.read(bytes.fromhex(vector["hex"]) + PAD)
    assert [f.data for f in found] == frames
    assert all(f.valid for f in found)


def test_mbus_checksum_or_stop_byte_damage_makes_a_frame_invalid() -> None:
    frame = mbus_frame(b"\xdb" + bytes(40), 0x10)
    for index in (5, len(frame) - 2, len(frame) - 1):
        damaged = bytearray(frame)
        damaged[index] ^= 0x01
        found = FrameScanner([MbusFramer()], 600).read(bytes(damaged) + PAD)
        assert [f.valid for f in found] == [False]


def test_mbus_segments_missing_damaged_or_out_of_order_drop_the_message() -> None:
    apdu = bytes(range(256)) * 3
    frames = [parse_frame(f.data) for f in FrameScanner([MbusFramer()], 600).read(mbus(apdu, 200) + PAD)]
    assert [f.control_information for f in frames] == [0x00, 0x01, 0x02, 0x13]
    assembler = MbusMessageAssembler()
    assert [assembler.add(f) for f in frames] == [None, None, None, apdu]
    missing_first = frames[1:]
    missing_middle = [frames[0], frames[2], frames[3]]
    swapped = [frames[0], frames[2], frames[1], frames[3]]
    missing_last = [frames[0], frames[1], frames[2]]
    for broken in (missing_first, missing_middle, swapped, missing_last):
        assembler = MbusMessageAssembler()
        assert [assembler.add(f) for f in broken] == [None] * len(broken)
    assembler = MbusMessageAssembler()
    assembler.add(frames[0])
    assembler.drop("damaged")
    assert [assembler.add(f) for f in frames[1:]] == [None, None, None]
    assert [assembler.add(f) for f in frames] == [None, None, None, apdu]  # the next message is whole
    assert assembler.dropped_messages == 1


def test_block_transfer_joins_blocks_in_order_and_drops_broken_sequences() -> None:
    apdu = bytes(range(200))
    blocks = [
        b"\xe6\xe7\x00\xe0\x40\x00\x01\x00\x00\x64" + apdu[:100],
        b"\xe0\xc0\x00\x02\x00\x00\x64" + apdu[100:],
    ]
    assembler = BlockTransferAssembler()
    assert [assembler.add(b) for b in blocks] == [None, apdu]
    assert assembler.add(blocks[1]) is None  # a block 2 without block 1
    assert assembler.add(blocks[0]) is None
    assert assembler.add(blocks[0]) is None  # a new block 1 starts again
    assert assembler.add(blocks[1]) == apdu
    damaged = blocks[1][:-1]  # the block data is shorter than its length says
    assert [assembler.add(blocks[0]), assembler.add(damaged), assembler.add(blocks[1])] == [None, None, None]
    plain = b"\xe6\xe7\x00\x0f" + bytes(8)
    assert assembler.add(plain) == plain
    assert assembler.dropped_messages == 2


GBT = [v for v in corpus_frames(valid=True, layer="hdlc") if v["frames"] and "e6e700e0" in v["frames"][0]]


def test_corpus_has_block_transfer_vectors() -> None:
    assert len(GBT) >= 5


@pytest.mark.parametrize("vector", GBT, ids=lambda v: v["id"])
def test_corpus_block_transfer_vectors_decode_once_whole(vector: Dict[str, Any]) -> None:
    stream = bytes.fromhex(vector["hex"])
    ek, ak = keys_of(vector)
    whole = read_all(MeterReader(ek, ak), stream, 1 << 20)
    assert len(whole) == 1
    assert read_all(MeterReader(ek, ak), stream, 1) == whole
    # without its last frame, or with the block before it missing, the message gives nothing
    frames = [bytes.fromhex(f) for f in vector["frames"]]
    assert read_all(MeterReader(ek, ak), b"".join(frames[:-1]) + PAD, 7) == []
    assert read_all(MeterReader(ek, ak), b"".join(frames[:-2] + frames[-1:]) + PAD, 7) == []
    for key, value in vector["values"].items():
        if isinstance(value, str):
            assert whole[0][key] == value


@pytest.mark.parametrize("chunk", [1, 9, 1 << 20])
def test_one_line_carries_every_transport_in_stream_order(chunk: int) -> None:
    plaintexts = [bytes.fromhex(v["hex"]) for v in corpus_frames(layer="apdu", valid=True, encrypted=False)]
    plaintexts = [p for p in plaintexts if AutoDecoder().decode_frame_content(p) is not None]
    assert len(plaintexts) >= 2
    stream, expected = b"", []
    for ic, plaintext in enumerate(plaintexts * 2, start=1):
        ciphered = cipher(plaintext, ek=EK, ak=AK, ic=ic)
        transports = [hdlc(plaintext), hdlc(ciphered, 90), block_transfer(ciphered, 60), mbus(ciphered, 70)]
        wrapped = [*transports, ciphered][ic % 5]
        stream += wrapped + b"\x7e\x7e" + bytes([0x68, 0xDB, 0x7E, 0x00]) * (ic % 3)
        expected.append(AutoDecoder().decode_frame_content(plaintext))
    reader = MeterReader(EK, AK)
    assert read_all(reader, stream + PAD * 8, chunk) == expected
    assert set(reader.stats.transports) == {"hdlc", "mbus", "apdu"}


def test_a_damaged_frame_around_an_authenticated_apdu_gives_nothing() -> None:
    """Its APDU is intact and its tag verifies, but it is no bare APDU: the frame around it failed.

    Damage in the header (HDLC: format to HCS; M-Bus: 68 L L 68 to DTSAP) or the checksum; not in the LLC
    header or the opening flag, after which an intact authenticated APDU reads as a bare one.
    """
    plaintexts = [bytes.fromhex(v["hex"]) for v in corpus_frames(layer="apdu", valid=True, encrypted=False)]
    plaintext = next(p for p in plaintexts if AutoDecoder().decode_frame_content(p) is not None)
    ciphered = cipher(plaintext, ek=EK, ak=AK, ic=7)
    good = cipher(plaintext, ek=EK, ak=AK, ic=8)
    expected = [AutoDecoder().decode_frame_content(plaintext)]
    for wrapped in (hdlc(ciphered), mbus(ciphered, 250), block_transfer(ciphered, 1000)):
        header = 9 if wrapped[0] == 0x68 else wrapped.index(b"\xe6\xe7\x00")
        for where in [*range(1, header), len(wrapped) - 3, len(wrapped) - 2]:
            damaged = bytearray(wrapped)
            damaged[where] ^= 0x21
            stream = bytes(damaged) + PAD + good + PAD
            assert read_all(MeterReader(EK, AK), stream, 11) == expected, (wrapped[:12].hex(), where)


def test_a_bare_apdu_behind_noise_like_an_llc_header_still_decodes() -> None:
    plaintexts = [bytes.fromhex(v["hex"]) for v in corpus_frames(layer="apdu", valid=True, encrypted=False)]
    plaintext = next(p for p in plaintexts if AutoDecoder().decode_frame_content(p) is not None)
    expected = AutoDecoder().decode_frame_content(plaintext)
    for noise in (b"\xe6\xe7\x00", b"\x01\x67", b"\x00" * 20 + b"\xe6\xe6\x00"):
        stream = noise + cipher(plaintext, ek=EK, ak=AK, ic=9) + PAD
        assert read_all(MeterReader(EK, AK), stream, 5) == [expected], noise.hex()
