"""Ciphering: corpus vectors with public keys, and round trips through a test-only encoder (han-spec §3.4)."""

from __future__ import annotations

import logging
from typing import Any, Dict

import pytest
from _cipher_encoder import cipher
from _support import load_corpus, plain_apdus
from hypothesis import given, settings
from hypothesis import strategies as st

from amshan.autodecoder import AutoDecoder
from amshan.cipher import Decipherer, DecodeError, parse_ciphered_apdu, parse_key
from amshan.hdlc import HdlcFrameReader

EK = bytes(range(0x10, 0x20))
AK = bytes(range(0xC0, 0xD0))
OTHER = bytes(16)
SECURITY_CONTROLS = [0x30, 0x31, 0x20, 0x21, 0x10]


def keyed(vector: Dict[str, Any]) -> tuple[bytes, bytes | None]:
    keys = vector["keys"]
    ak = keys.get("authentication_key")
    return bytes.fromhex(keys["encryption_key"]), bytes.fromhex(ak) if ak else None


def ciphered_apdu_of(vector: Dict[str, Any]) -> bytes:
    """The ciphered APDU a vector carries: a bare APDU, or the information field of its HDLC frame."""
    raw = bytes.fromhex(vector["hex"])
    if vector["layer"] == "apdu":
        return raw
    (frame,) = HdlcFrameReader().read(raw)
    information = frame.information
    assert information is not None and information[:3] == b"\xe6\xe7\x00"
    return information[3:]


TAGGED = [v for v in load_corpus() if v["checks"].get("gcm_tag") == "ok" and v["layer"] in ("apdu", "hdlc")]


PLAIN = plain_apdus()


def test_corpus_has_tagged_vectors_and_plain_notifications() -> None:
    assert len(TAGGED) >= 4
    assert len(PLAIN) > 50


@pytest.mark.parametrize("vector", TAGGED, ids=[v["id"] for v in TAGGED])
def test_corpus_tags_verify_with_the_public_keys(vector: Dict[str, Any]) -> None:
    ek, ak = keyed(vector)
    apdu = parse_ciphered_apdu(ciphered_apdu_of(vector))
    assert apdu.system_title.hex() == vector["keys"]["system_title"]
    assert apdu.authenticated and len(apdu.auth_tag) == 12
    ((plaintext, authenticated),) = Decipherer(ek, ak).candidates(apdu)
    assert authenticated
    # the same keystream without the tag check (no AK): the same plaintext
    assert Decipherer(ek, None).candidates(apdu) == [(plaintext, False)]
    damaged = apdu._replace(auth_tag=bytes(b ^ 1 for b in apdu.auth_tag))
    decipherer = Decipherer(ek, ak)
    assert decipherer.candidates(damaged) == []
    assert decipherer.stats.bad_tag == 1
    assert Decipherer(OTHER, ak).candidates(apdu) == []
    assert Decipherer(ek, OTHER).candidates(apdu) == []


def test_corpus_auth_encrypted_hdlc_frame_decodes_with_and_without_ak() -> None:
    vector = next(v for v in TAGGED if v["layer"] == "hdlc")
    ek, ak = keyed(vector)
    (frame,) = HdlcFrameReader().read(bytes.fromhex(vector["hex"]))
    content = frame.information
    assert content is not None
    with_ak = AutoDecoder(encryption_key=ek, authentication_key=ak).decode_frame_content(content)
    assert with_ak
    assert AutoDecoder(encryption_key=ek).decode_frame_content(content) == with_ak
    for decoder in (
        AutoDecoder(),
        AutoDecoder(encryption_key=OTHER),
        AutoDecoder(encryption_key=ek, authentication_key=OTHER),
    ):
        assert decoder.decode_frame_content(content) is None
    stats = AutoDecoder(encryption_key=OTHER)
    stats.decode_frame_content(content)
    assert stats.cipher_stats.wrong_key == 1


@settings(max_examples=150, deadline=None)
@given(
    index=st.integers(min_value=0),
    sc=st.sampled_from(SECURITY_CONTROLS),
    tag=st.sampled_from([0xDB, 0xDC]),
    length_form=st.sampled_from([0, 1, 2, 4]),
    ic=st.integers(min_value=0, max_value=0xFFFFFFFF),
    title=st.binary(min_size=8, max_size=8),
    llc=st.booleans(),
    with_ak=st.booleans(),
)
def test_round_trip_every_security_control_and_length_form(
    index: int, sc: int, tag: int, length_form: int, ic: int, title: bytes, llc: bool, with_ak: bool
) -> None:
    plaintext = PLAIN[index % len(PLAIN)]
    ciphered = cipher(
        plaintext, ek=EK, ak=AK, system_title=title, sc=sc, ic=ic, tag=tag, length_form=length_form
    )
    expected = AutoDecoder().decode_frame_content(plaintext)
    assert expected is not None
    decoder = AutoDecoder(encryption_key=EK, authentication_key=AK if with_ak else None)
    assert decoder.decode_frame_content(b"\xe6\xe7\x00" + ciphered if llc else ciphered) == expected
    assert decoder.cipher_stats.decrypted == 1
    if sc & 0x20:
        assert AutoDecoder().decode_frame_content(ciphered) is None
    if sc & 0x10:
        wrong = AutoDecoder(encryption_key=EK, authentication_key=OTHER)
        assert wrong.decode_frame_content(ciphered) is None
        assert wrong.cipher_stats.bad_tag == 1
        damaged = bytearray(ciphered)
        damaged[len(ciphered) // 2 + 8] ^= 0x40
        assert (
            AutoDecoder(encryption_key=EK, authentication_key=AK).decode_frame_content(bytes(damaged)) is None
        )
    if sc & 0x20 and not sc & 0x10:
        wrong = AutoDecoder(encryption_key=OTHER, authentication_key=AK)
        assert wrong.decode_frame_content(ciphered) is None
        assert wrong.cipher_stats.wrong_key == 1
    for cut in (1, 13, len(ciphered) - 20):
        assert decoder.decode_frame_content(ciphered[:cut]) is None
        assert decoder.decode_frame_content(ciphered[:-cut]) is None


def test_replayed_counter_is_counted_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    plaintext = PLAIN[0]
    decoder = AutoDecoder(encryption_key=EK, authentication_key=AK)
    first = cipher(plaintext, ek=EK, ak=AK, ic=10)
    later = cipher(plaintext, ek=EK, ak=AK, ic=11)
    with caplog.at_level(logging.WARNING):
        assert decoder.decode_frame_content(first) is not None
        assert decoder.decode_frame_content(later) is not None
        assert decoder.cipher_stats.replays == 0
        assert decoder.decode_frame_content(first) is not None
    assert decoder.cipher_stats.replays == 1
    assert "went back from 11 to 10" in caplog.text
    assert "4b414d4501ac4d6e (KAM)" in caplog.text


def test_keys_are_never_logged_nor_in_errors(caplog: pytest.LogCaptureFixture) -> None:
    plaintext = PLAIN[0]
    secrets = [EK.hex(), AK.hex(), OTHER.hex()]
    with caplog.at_level(logging.DEBUG):
        for sc in SECURITY_CONTROLS:
            ciphered = cipher(plaintext, ek=EK, ak=AK, sc=sc)
            for ek, ak in [(EK, OTHER), (OTHER, AK), (OTHER, None), (None, None)]:
                AutoDecoder(encryption_key=ek, authentication_key=ak).decode_frame_content(ciphered)
    assert "system title 4b414d4501ac4d6e" in caplog.text
    messages = [caplog.text]
    for bad in ("zz" * 16, "00" * 15, EK.hex() + "00"):
        with pytest.raises(ValueError) as error:
            parse_key(bad, "encryption key")
        messages.append(str(error.value))
    with pytest.raises(ValueError) as error:
        AutoDecoder(encryption_key=EK[:15])
    messages.append(str(error.value))
    for text in messages:
        for secret in secrets:
            assert secret not in text.lower()
            assert secret.upper() not in text


def test_parse_key_accepts_spaces_colons_and_prefix() -> None:
    assert parse_key("10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f", "k") == EK
    assert parse_key("0x" + EK.hex().upper(), "k") == EK
    assert parse_key(":".join(f"{b:02x}" for b in EK), "k") == EK


@pytest.mark.parametrize(
    "raw",
    [
        b"\xdb",
        b"\xdb\x08",
        b"\xdb\x07" + bytes(20),
        b"\xdb\x08KAME\x00\x00\x00\x01\x85" + bytes(20),
        b"\xdb\x08KAME\x00\x00\x00\x01\x04\x30\x00\x00\x00",
        b"\xdb\x08KAME\x00\x00\x00\x01\x10\x30" + bytes(15),
        b"\xdb\x08KAME\x00\x00\x00\x01\x10\xb0" + bytes(15),
        b"\xdc\x08KAME\x00\x00\x00\x01\x82\x01",
    ],
)
def test_malformed_security_headers_raise_decode_error_with_offset(raw: bytes) -> None:
    with pytest.raises(DecodeError) as error:
        parse_ciphered_apdu(raw)
    assert error.value.offset is not None
    assert AutoDecoder(encryption_key=EK, authentication_key=AK).decode_frame_content(raw) is None
