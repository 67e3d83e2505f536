"""Hypothesis round trips: what a test-only encoder ciphers and wraps, MeterReader returns exactly, in order.

Random corpus notifications are ciphered with each security control and length form, wrapped in HDLC
(segmented or not), general-block-transfer, M-Bus (segmented, with the L wrap when long) or sent as bare
authenticated APDUs, with noise, damaged messages and wrongly keyed messages in between, and fed in any
chunking.  The stream ends with zero bytes so every length a header claims can be reached.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from _cipher_encoder import cipher
from _support import plain_apdus
from _transport_encoder import block_transfer, hdlc, mbus
from hypothesis import given, settings
from hypothesis import strategies as st

from amshan.autodecoder import AutoDecoder
from amshan.reader import MeterReader

EK = bytes(range(0x10, 0x20))
AK = bytes(range(0xC0, 0xD0))
OTHER_EK = bytes(range(0x60, 0x70))
PAD = bytes(8192)
PLAIN = plain_apdus()
EXPECTED = [AutoDecoder().decode_frame_content(apdu) for apdu in PLAIN]
TRANSPORTS = ["hdlc", "hdlc-segmented", "block-transfer", "mbus", "apdu"]
AUTHENTICATED = [0x30, 0x31, 0x10]
SECURITY = [None, 0x30, 0x31, 0x20, 0x21, 0x10]  # None: not ciphered


@st.composite
def messages(draw: Any) -> Tuple[str, int, int | None, int, int, str]:
    """One message: (transport, plaintext index, security control, length form, segment size, extra)."""
    transport = draw(st.sampled_from(TRANSPORTS))
    if transport == "apdu":
        security: int | None = draw(st.sampled_from(AUTHENTICATED))
    elif transport == "mbus":
        security = draw(st.sampled_from(SECURITY[1:]))
    else:
        security = draw(st.sampled_from(SECURITY))
    extra = draw(st.sampled_from(["", "", "noise", "damaged", "damaged-head", "damaged-tail", "wrong-key"]))
    return (
        transport,
        draw(st.integers(0, len(PLAIN) - 1)),
        security,
        draw(st.sampled_from([0, 1, 2, 4])),
        draw(st.integers(20, 300)),
        extra,
    )


def wrap(transport: str, apdu: bytes, segment: int) -> bytes:
    """The APDU in the given transport."""
    if transport == "hdlc":
        return hdlc(apdu)
    if transport == "hdlc-segmented":
        return hdlc(apdu, segment)
    if transport == "block-transfer":
        return block_transfer(apdu, segment)
    if transport == "mbus":  # at most 16 segments: the CI numbers them in 4 bits
        return mbus(apdu, max(min(segment, 250), -(-len(apdu) // 16)))
    return apdu


def encode(
    plan: List[Tuple[str, int, int | None, int, int, str]], noise: bytes, with_ak: bool
) -> Tuple[bytes, List[Dict[str, Any]]]:
    """Build the stream of the planned messages; return it with the dictionaries MeterReader must give."""
    stream, expected = b"", []
    counter = 100
    title = b"KFMtest1"
    for planned, index, security, form, segment, extra in plan:
        # a bare APDU is told from noise only by its verified tag: without AK it travels in HDLC
        transport = "hdlc" if planned == "apdu" and not with_ak else planned
        counter += 1
        apdu = PLAIN[index]
        if security is not None:
            apdu = cipher(apdu, ek=EK, ak=AK, sc=security, ic=counter, length_form=form, system_title=title)
        stream += wrap(transport, apdu, segment)
        expected.append(EXPECTED[index])
        if extra == "noise":
            stream += noise
        elif extra.startswith("damaged"):  # in the middle (the APDU), the header, or the checksum
            frame = bytearray(wrap(transport, apdu, segment))
            where = {"damaged": len(frame) // 2, "damaged-head": 2, "damaged-tail": len(frame) - 2}[extra]
            frame[where] ^= 0x55
            stream += bytes(frame) + b"\x7e"
        elif extra == "wrong-key" and security is not None and security & 0x20:
            counter += 1
            wrong = cipher(PLAIN[index], ek=OTHER_EK, ak=AK, sc=security, ic=counter, system_title=title)
            stream += wrap(transport, wrong, segment)
    return stream + PAD, expected


@settings(max_examples=100, deadline=None)
@given(
    plan=st.lists(messages(), min_size=1, max_size=6),
    noise=st.binary(max_size=80),
    with_ak=st.booleans(),
    chunk=st.one_of(st.integers(1, 97), st.just(1 << 20)),
)
def test_reader_returns_exactly_what_was_encoded(
    plan: List[Tuple[str, int, int | None, int, int, str]], noise: bytes, with_ak: bool, chunk: int
) -> None:
    stream, expected = encode(plan, noise, with_ak)
    reader = MeterReader(EK, AK if with_ak else None)
    found: List[Dict[str, Any]] = []
    for start in range(0, len(stream), chunk):
        found.extend(reader.read(stream[start : start + chunk]))
    assert found == expected
    assert reader.stats.decoded == len(expected)
    assert reader.buffered_bytes < 8192
