"""The header check sequence: a frame with a wrong HCS and a right FCS is never valid, on any path."""

from __future__ import annotations

import random
from typing import Iterator, List, Tuple

import pytest
from _hdlc_builder import bad_header_variants, check_octets, header_length
from _support import corpus_frames

from amshan.hdlc import _HEADER_KEY_LENGTH, HdlcFrame, HdlcFrameReader

FLAG = b"\x7e"
SEED = 20211218


def _real_frames() -> List[Tuple[str, bytes]]:
    """Every distinct valid corpus frame (between its flags) that has an information field, so an HCS."""
    seen: dict[bytes, str] = {}
    for vector in corpus_frames(layer="hdlc"):
        for frame in HdlcFrameReader().read(bytes.fromhex(vector["hex"])):
            data = frame.frame_data
            if frame.is_valid and len(data) > header_length(data) + 4:
                seen.setdefault(data, vector["id"])
    return [(name, data) for data, name in seen.items()]


FRAMES = _real_frames()
IDS = [f"{name}-{index}" for index, (name, _) in enumerate(FRAMES)]


def test_every_real_frame_with_an_information_field_is_used() -> None:
    assert len(FRAMES) >= 150
    for _, frame in FRAMES:  # the layout this file assumes, checked against the real frames
        hcs_end = header_length(frame) + 2
        assert check_octets(frame[: hcs_end - 2]) == frame[hcs_end - 2 : hcs_end]
        assert check_octets(frame[:-2]) == frame[-2:]


def chunked(data: bytes, rng: random.Random) -> Iterator[bytes]:
    """Yield data in random pieces of 1 to 40 octets."""
    at = 0
    while at < len(data):
        size = rng.randint(1, 40)
        yield data[at : at + size]
        at += size


def read_all(reader: HdlcFrameReader, pieces: Iterator[bytes]) -> List[HdlcFrame]:
    return [frame for piece in pieces for frame in reader.read(piece)]


def octet_by_octet_through_headers(data: bytes, flags: List[int]) -> List[bytes]:
    """Cut data so that the reader sees every prefix of the header of each frame opened at ``flags``.

    A header's verdict falls once its HCS and the 10 octets the reader memoises headers by are in; how
    the rest of a frame is chunked is the reader's general business (tests/test_hdlc.py).
    """
    pieces, done = [], 0
    for flag in flags:
        stop = flag + 2 + max(header_length(data[flag + 1 :]) + 2, _HEADER_KEY_LENGTH)
        pieces += [data[done:flag]] + [data[at : at + 1] for at in range(flag, stop)]
        done = stop
    return [piece for piece in pieces if piece] + [data[done:]]


@pytest.mark.parametrize("frame", [frame for _, frame in FRAMES], ids=IDS)
def test_a_wrong_hcs_with_a_right_fcs_is_never_a_valid_frame(frame: bytes) -> None:
    rng = random.Random(SEED)
    following = FRAMES[(FRAMES.index(next(f for f in FRAMES if f[1] == frame)) + 1) % len(FRAMES)][1]
    for place, damaged in bad_header_variants(frame):
        built = HdlcFrame(damaged)
        assert not built.is_good_hcs and built.is_good_ffc and built.is_expected_length, place
        assert not built.is_valid, place
        wire = FLAG + damaged + FLAG + following + FLAG
        primed = FLAG + frame + FLAG  # the reader has checked this header before (memoised, fast path)
        for name, reader, data, flags, expected in (
            ("general path", HdlcFrameReader(), wire, [0], [following]),
            ("memoised header", HdlcFrameReader(), primed + wire, [0, len(primed)], [frame, following]),
        ):
            for pieces in ([data], octet_by_octet_through_headers(data, flags), list(chunked(data, rng))):
                valid = [f.frame_data for f in read_all(reader, iter(pieces)) if f.is_valid]
                assert valid == expected, (place, name, len(pieces))


@pytest.mark.parametrize("frame", [frame for _, frame in FRAMES[::7]], ids=IDS[::7])
def test_a_wrong_hcs_is_rejected_while_its_header_is_memoised_in_every_chunking(frame: bytes) -> None:
    """Good and bad copies of one header interleaved: each bad one rejected, every good one out, in order."""
    rng = random.Random(SEED)
    variants = [damaged for _, damaged in bad_header_variants(frame)]
    data = FLAG + FLAG.join(item for damaged in variants for item in (frame, damaged)) + FLAG + frame + FLAG
    for _ in range(5):
        reader = HdlcFrameReader()
        got = read_all(reader, chunked(data, rng))
        assert [f.frame_data for f in got if f.is_valid] == [frame] * (len(variants) + 1)
        assert sum(not f.is_valid for f in got) >= len(variants)  # 7E inside a frame may split a candidate


@pytest.mark.parametrize("frame", [frame for _, frame in FRAMES], ids=IDS)
def test_a_damaged_information_field_under_a_good_header_is_rejected_by_the_fcs(frame: bytes) -> None:
    information = header_length(frame) + 2
    damaged = bytearray(frame)
    damaged[information] ^= 0x10  # the first octet after the HCS; HCS and FCS as they were
    built = HdlcFrame(bytes(damaged))
    assert built.is_good_hcs and not built.is_good_ffc and not built.is_valid
    fresh, primed = HdlcFrameReader(), HdlcFrameReader()
    primed.read(FLAG + frame + FLAG)
    for reader in (fresh, primed):
        got = reader.read(FLAG + bytes(damaged) + FLAG + frame + FLAG)
        assert [f.frame_data for f in got if f.is_valid] == [frame]
        assert any(not f.is_valid for f in got)
