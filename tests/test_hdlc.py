"""The HDLC frame reader against the real-frame corpus, generated streams and the 2021.12.1 API."""

from __future__ import annotations

import collections
import random
import types
from typing import Any

import pytest
from _hdlc_builder import build_frame, check_octets
from _support import corpus_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amshan.dlms import is_whole_apdu
from amshan.fastframecheck import FastFrameCheckSequence16, crc16_x25
from amshan.hdlc import LLC_HEADER, HdlcFrame, HdlcFrameReader, HdlcMessageAssembler

HDLC_VECTORS = corpus_frames(layer="hdlc")
VALID_SINGLE = [
    bytes.fromhex(v["hex"])
    for v in HDLC_VECTORS
    if v["valid"] is True and "frame_count" not in v["checks"] and not v["checks"].get("segmentation_bit")
]
# Real frames with 0x7E or 0x7D inside them (header or data) are the hard cases for a flag-based reader.
TRICKY = [f for f in VALID_SINGLE if b"\x7e" in f[1:-1] or b"\x7d" in f[1:-1]]


def expected_intact(vector: dict[str, Any]) -> int:
    """How many intact frames the corpus says a vector holds (its recomputed checks)."""
    checks = vector["checks"]
    if "intact_frames" in checks:
        return int(checks["intact_frames"])
    whole = checks.get("fcs") == "ok" and checks.get("hcs", "ok") == "ok" and checks.get("length") == "ok"
    return int(whole)


def read_in_chunks(data: bytes, sizes: list[int], reader: HdlcFrameReader | None = None) -> list[HdlcFrame]:
    """Feed ``data`` to a reader in chunks of the given sizes (cycled) and collect every frame."""
    reader = reader or HdlcFrameReader()
    frames: list[HdlcFrame] = []
    position = 0
    index = 0
    while position < len(data):
        size = max(1, sizes[index % len(sizes)])
        frames += reader.read(data[position : position + size])
        position += size
        index += 1
    return frames


def test_corpus_has_hard_cases() -> None:
    assert len(HDLC_VECTORS) >= 200
    assert len(TRICKY) >= 2, "the corpus holds real frames with 7E/7D inside; the tests rely on them"


@pytest.mark.parametrize("vector", HDLC_VECTORS, ids=[v["id"] for v in HDLC_VECTORS])
def test_corpus_vector_yields_exactly_its_intact_frames(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    for sizes in ([len(data)], [1], [3, 1, 7], [64]):
        frames = read_in_chunks(data, sizes)
        valid = [f for f in frames if f.is_valid]
        assert len(valid) == expected_intact(vector), sizes
        for frame in valid:
            assert frame.is_good_ffc and frame.is_good_hcs and frame.is_expected_length
            assert frame.header.frame_format_type == 0xA
        if vector["frames"] and vector["valid"] is True:
            stated = [bytes.fromhex(h).strip(b"\x7e") for h in vector["frames"]]
            assert [f.frame_data for f in valid] == stated


@pytest.mark.parametrize(
    ("meter", "destination", "source", "control"),
    [("aidon", "41", "0883", 0x13), ("kaifa", "01", "0201", 0x10), ("kamstrup", "2b", "21", 0x13)],
)
def test_header_fields_of_norwegian_meters(meter: str, destination: str, source: str, control: int) -> None:
    """Address and control octets per manufacturer as han-spec.md section 2.1 tabulates them."""
    vectors = [v for v in corpus_frames(layer="hdlc", valid=True, meter=meter, country="NO")]
    frames = [f for v in vectors for f in HdlcFrameReader().read(bytes.fromhex(v["hex"])) if f.is_valid]
    ours = [f for f in frames if f.header.destination_address == bytes.fromhex(destination)]
    assert ours, f"no {meter} frame with destination {destination} in the corpus"
    for frame in ours:
        header = frame.header
        assert header.source_address == bytes.fromhex(source)
        assert header.control == control
        assert header.segmentation is False
        assert header.frame_length == len(frame.frame_data)
        assert frame.information is not None and frame.information.startswith(b"\xe6\xe7\x00")


def test_spec_appendix_a1_aidon_frame_fields() -> None:
    """han-spec.md Appendix A.1: Aidon list 2 one-phase, HCS 82 D6, FCS E0 C4."""
    vector = next(v for v in HDLC_VECTORS if v["hex"].startswith("7ea0d24108831382d6"))
    (frame,) = HdlcFrameReader().read(bytes.fromhex(vector["hex"]))
    assert frame.is_valid
    assert frame.header.frame_format == 0xA0D2
    assert frame.header.frame_length == 0xD2
    assert frame.header.header_check_sequence == 0x82D6
    assert frame.frame_check_sequence == 0xE0C4
    assert frame.header.information_position == 8
    assert frame.information is not None and frame.information[:4] == bytes.fromhex("e6e7000f")


def test_frame_without_information_field_carries_only_fcs() -> None:
    """The amshan empty-info frame 7E A0 08 01 02 01 10 37 8D 7E (han-spec.md section 2.1)."""
    (frame,) = HdlcFrameReader().read(bytes.fromhex("7ea00801020110378d7e"))
    assert frame.is_valid and frame.is_good_hcs
    assert frame.information is None


@pytest.mark.parametrize("frame_bytes", TRICKY[:6])
def test_frames_holding_flag_and_escape_octets_are_read_by_length(frame_bytes: bytes) -> None:
    frames = read_in_chunks(frame_bytes * 3, [1])
    assert [f.is_valid for f in frames] == [True, True, True]


def test_old_api_build_by_append_matches_reader() -> None:
    for data in VALID_SINGLE[:10]:
        frame = HdlcFrame()
        for byte in data[1:-1]:
            frame.append(byte)
        (read,) = HdlcFrameReader().read(data)
        assert len(frame) == len(read)
        assert frame.frame_data == read.frame_data
        assert frame.is_good_ffc and frame.is_expected_length and frame.is_valid
        assert frame.information == read.information
        assert frame.header.control == read.header.control


def test_fast_frame_check_sequence_old_api() -> None:
    """GB9 section 8.5.1 test sequence 03 3F -> FCS 0xEC5B; appending it makes the register good."""
    assert crc16_x25(b"123456789") == 0x906E
    assert FastFrameCheckSequence16.compute_checksum(b"\x00\x03\x3f", 1, 2) == 0xEC5B
    check = FastFrameCheckSequence16()
    for byte in b"\x03\x3f":
        check.update(byte)
    assert check.checksum == 0xEC5B and not check.is_good
    for byte in (0x5B, 0xEC):
        check.update(byte)
    assert check.is_good


def test_corrupted_length_does_not_swallow_following_frames() -> None:
    """A length field flipped to claim 2000 octets is rejected at its HCS, without waiting for 2000 octets."""
    first, second, third = VALID_SINGLE[0], VALID_SINGLE[1], VALID_SINGLE[2]
    corrupted = bytearray(first)
    corrupted[1] = 0xA7  # claims 0x7xx octets
    corrupted[2] = 0xD0
    reader = HdlcFrameReader()
    assert not [f for f in reader.read(bytes(corrupted)) if f.is_valid]
    got = [f.frame_data for f in reader.read(second) if f.is_valid]
    assert got == [second[1:-1]], "the frame after the corrupted one must come out as soon as it is complete"
    assert [f.frame_data for f in reader.read(third) if f.is_valid] == [third[1:-1]]


def test_truncated_frame_does_not_hold_back_the_next_frame() -> None:
    """A frame cut short (intact header) must not delay a following frame until its claimed length arrives."""
    truncated = VALID_SINGLE[3][: len(VALID_SINGLE[3]) // 2]
    reader = HdlcFrameReader()
    reader.read(truncated)
    got = [f.frame_data for f in reader.read(VALID_SINGLE[4]) if f.is_valid]
    assert got == [VALID_SINGLE[4][1:-1]]


# --- generated streams: every valid frame exactly once, whatever stands around it ------------------------

segment = st.one_of(
    st.tuples(st.just("valid"), st.sampled_from(VALID_SINGLE)),
    st.tuples(st.just("garbage"), st.binary(min_size=1, max_size=80)),
    st.tuples(st.just("flags"), st.integers(1, 20).map(lambda n: b"\x7e" * n)),
    st.tuples(
        st.just("truncated"),
        st.sampled_from(VALID_SINGLE).flatmap(lambda f: st.integers(1, len(f) - 2).map(lambda cut: f[:cut])),
    ),
    st.tuples(
        st.just("corrupted"),
        st.sampled_from(VALID_SINGLE).flatmap(
            lambda f: st.tuples(st.integers(1, len(f) - 2), st.integers(0, 7)).map(
                lambda at: f[: at[0]] + bytes((f[at[0]] ^ (1 << at[1]),)) + f[at[0] + 1 :]
            )
        ),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=12), st.lists(st.integers(1, 300), min_size=1, max_size=8))
def test_stream_yields_every_valid_frame_exactly_once(
    segments: list[tuple[str, bytes]], chunks: list[int]
) -> None:
    stream = b"".join(data for _, data in segments)
    wanted = [data[1:-1] for kind, data in segments if kind == "valid"]
    got = [f.frame_data for f in read_in_chunks(stream, chunks) if f.is_valid]
    assert got == wanted


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(1, 512), min_size=1, max_size=4))
def test_noise_never_yields_a_valid_frame_and_never_crashes(noise: bytes, chunks: list[int]) -> None:
    assert not [f for f in read_in_chunks(noise, chunks) if f.is_valid]


def test_memory_stays_bounded_on_hostile_input() -> None:
    """Random bytes and maximum-length headers: the reader holds at most one maximum frame plus a chunk."""
    rng = random.Random(7)
    reader = HdlcFrameReader()
    hostile_header = bytes.fromhex("7ea7ff") + b"\x41\x08\x83\x13"
    for index in range(3000):
        chunk = rng.randbytes(1024) if index % 3 else hostile_header + rng.randbytes(1017)
        reader.read(chunk)
        assert reader.buffered_bytes <= HdlcFrame.MAX_FRAME_LENGTH + 2 + 1024
    assert reader.discarded_bytes > 0


def test_one_big_read_returns_every_frame() -> None:
    frames = VALID_SINGLE * (2_000_000 // sum(map(len, VALID_SINGLE)) + 1)
    stream = b"".join(frames)
    got = HdlcFrameReader().read(stream)
    assert len(got) == len(frames) and all(f.is_valid for f in got)


# --- octet stuffing and the abort sequence (off on HAN ports, kept from the old API) ---------------------


def test_octet_stuffed_corpus_frame_needs_stuffing_mode() -> None:
    vector = next(v for v in HDLC_VECTORS if v["id"] == "xx-other-hdlc-amshan-stuffed-short-info")
    data = bytes.fromhex(vector["hex"])
    assert not [f for f in HdlcFrameReader().read(data) if f.is_valid]
    (frame,) = HdlcFrameReader(use_octet_stuffing=True).read(data)
    assert frame.is_valid
    assert frame.information == bytes.fromhex("7e7d03"), "7D 5E -> 7E, 7D 5D -> 7D, 7D 23 -> 03 (RFC 1662)"


def test_abort_sequence_discards_the_frame_when_enabled() -> None:
    vector = next(v for v in HDLC_VECTORS if v["id"] == "xx-other-hdlc-amshan-abort-sequence")
    data = bytes.fromhex(vector["hex"])
    assert not [f for f in HdlcFrameReader().read(data) if f.is_valid]
    aborting = HdlcFrameReader(use_abort_sequence=True)
    assert aborting.read(data) == []
    assert aborting.read(VALID_SINGLE[0])[0].is_valid
    stuffed_abort = HdlcFrameReader(use_octet_stuffing=True, use_abort_sequence=True)
    assert stuffed_abort.read(data) == []


# --- segmented messages -----------------------------------------------------------------------------------


def test_real_segmented_iskra_message_reassembles() -> None:
    wanted_id = "ch-iskra-hdlc-sdc-am550-unencrypted-valid-data-cfg2026"
    vector = next(v for v in HDLC_VECTORS if v["id"] == wanted_id)
    frames = HdlcFrameReader().read(bytes.fromhex(vector["hex"]))
    assert [f.header.segmentation for f in frames] == [True, True, False]
    assembler = HdlcMessageAssembler()
    results = [assembler.add(f) for f in frames]
    assert results[:2] == [None, None]
    message = results[2]
    assert message is not None
    assert message == b"".join(f.information or b"" for f in frames)
    assert message.startswith(b"\xe6\xe7\x00\x0f"), "one LLC header and a data-notification"


def test_broken_segment_sequence_is_dropped_not_concatenated() -> None:
    """A real Aidon message split in three segments; the middle one is broken in transit."""
    message = bytes.fromhex(next(v["hex"] for v in corpus_frames(id="no-aidon-list3-amshan-llc")))
    parts = [message[:120], message[120:240], message[240:]]
    first, middle, last = (build_frame(p, segmented=i < 2) for i, p in enumerate(parts))
    broken = bytearray(middle)
    broken[-3] ^= 0x01  # FCS broken in transit
    standalone = build_frame(message)
    assembler = HdlcMessageAssembler()
    frames = read_in_chunks(first + bytes(broken) + last + standalone, [5])
    out = [m for m in map(assembler.add, frames) if m is not None]
    assert out == [message], "the broken message's last segment must not come out as a message of its own"
    assert assembler.dropped_messages == 1
    assembler = HdlcMessageAssembler()
    assert [m for m in map(assembler.add, HdlcFrameReader().read(first + middle + last)) if m] == [message]


def test_message_whose_first_segment_was_missed_is_dropped() -> None:
    message = bytes.fromhex(next(v["hex"] for v in corpus_frames(id="no-aidon-list3-amshan-llc")))
    middle, last = build_frame(message[100:200], segmented=True), build_frame(message[200:])
    assembler = HdlcMessageAssembler()
    out = [assembler.add(f) for f in HdlcFrameReader().read(middle + last + build_frame(message))]
    assert [m for m in out if m is not None] == [message]
    assert assembler.dropped_messages == 1


def test_segment_without_final_part_is_dropped_when_a_new_message_starts() -> None:
    message = bytes.fromhex(next(v["hex"] for v in corpus_frames(id="no-aidon-list3-amshan-llc")))
    first = build_frame(message[:150], segmented=True)
    assembler = HdlcMessageAssembler()
    out = [assembler.add(f) for f in HdlcFrameReader().read(first + build_frame(message))]
    assert [m for m in out if m is not None] == [message]
    assert assembler.dropped_messages == 1


def test_abort_sequence_never_skips_a_valid_frame_inside_a_failed_span() -> None:
    """A truncated frame followed by a valid frame whose FCS ends in 7D: the 7D 7E there is no abort."""
    ends_in_escape = next(
        build_frame(bytes.fromhex("e6e7000f") + bytes((n,)))
        for n in range(256)
        if build_frame(bytes.fromhex("e6e7000f") + bytes((n,)))[-2] == 0x7D
    )
    truncated = VALID_SINGLE[5][: len(VALID_SINGLE[5]) // 2]
    for reader in (HdlcFrameReader(use_abort_sequence=True), HdlcFrameReader()):
        frames = read_in_chunks(truncated + ends_in_escape + VALID_SINGLE[0], [1024], reader)
        assert [f.frame_data for f in frames if f.is_valid] == [ends_in_escape[1:-1], VALID_SINGLE[0][1:-1]]


def test_hot_path_register_routine_is_the_same_crc() -> None:
    """The reader's direct register routine agrees with crcmod's public CRC-16/X-25 function."""
    from amshan import fastframecheck as ffc

    for data in VALID_SINGLE[:20]:
        register = ffc.register_routine(data[1:-1], ffc.INIT_REGISTER, ffc.register_table)
        assert register == ffc.GOOD_REGISTER
        body = data[1:-3]
        assert ffc.register_routine(body, ffc.INIT_REGISTER, ffc.register_table) ^ 0xFFFF == crc16_x25(body)


def test_broken_messages_do_not_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    message = bytes.fromhex(next(v["hex"] for v in corpus_frames(id="no-aidon-list3-amshan-llc")))
    first = build_frame(message[:150], segmented=True)
    assembler = HdlcMessageAssembler()
    with caplog.at_level("WARNING", logger="amshan.hdlc"):
        for _ in range(500):  # each first segment is cut short by the next message's first segment
            for frame in HdlcFrameReader().read(first):
                assembler.add(frame)
    assert assembler.dropped_messages == 499
    [record] = [r for r in caplog.records if "Dropped a segmented message" in r.message]
    assert record.message.endswith("previous one")  # the first drop: no "(0 more drops not logged)"



# HdlcMessageAssembler edge by edge (segments built by the test-only builder around a real message)

REAL_MESSAGE = bytes.fromhex(corpus_frames(id="no-aidon-list3-amshan-llc")[0]["hex"])


def segments(information: bytes, parts: int, **address: Any) -> list[HdlcFrame]:
    """Split information over parts segments (the segmentation bit on all but the last) and read them."""
    size = -(-len(information) // parts)
    wire = b"".join(
        build_frame(information[at : at + size], segmented=at + size < len(information), **address)
        for at in range(0, len(information), size)
    )
    return HdlcFrameReader().read(wire)


def test_assembler_size_limit_counts_every_segment_and_allows_exactly_the_maximum(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit = HdlcMessageAssembler.MAX_MESSAGE_LENGTH
    filler = b"\xe6\xe7\x00" + bytes(range(256)) * (limit // 256)  # the LLC header, then filler octets
    for body, kept in ((filler[:limit], True), (filler[: limit + 1], False)):
        size = 1640  # 40 segments, each far below the limit; the last one ("end") follows them
        wire = b"".join(build_frame(body[at : at + size], segmented=True) for at in range(0, len(body), size))
        frames = HdlcFrameReader().read(wire + build_frame(b"end"))
        assert all(f.is_valid for f in frames) and len(frames) == 41
        assembler = HdlcMessageAssembler()
        out = [m for m in map(assembler.add, frames) if m is not None]
        assert out == ([body + b"end"] if kept else []), len(body)
        assert assembler.dropped_messages == (0 if kept else 1)
    grew = f"Dropped a segmented message after 40 segments: the message grew beyond {limit} octets"
    assert [r.getMessage() for r in caplog.records] == [grew]


def test_assembler_counts_each_lost_message_once_and_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    first, middle, last = segments(REAL_MESSAGE, 3)
    broken = HdlcFrame(middle.frame_data[:-1] + bytes((middle.frame_data[-1] ^ 1,)))
    assembler = HdlcMessageAssembler()
    with caplog.at_level("DEBUG", logger="amshan.hdlc"):
        for _ in range(2):  # a message broken by a bad frame; its last segment is dropped with it
            assert [assembler.add(f) for f in (first, broken, last)] == [None, None, None]
        assert [assembler.add(f) for f in (middle, last)] == [None, None]  # the start was never seen
        assert [assembler.add(f) for f in (first, middle, last)] == [None, None, REAL_MESSAGE]
    assert assembler.dropped_messages == 3
    assert "Dropped a segmented message after 1 segments: a segment failed its frame check" in caplog.text
    assert "Dropped a segment of a message whose first segment was lost" in caplog.text
    assembler = HdlcMessageAssembler()  # a fresh one: its warnings are rate-limited
    with caplog.at_level("WARNING", logger="amshan.hdlc"):
        assert [assembler.add(f) for f in (first, first)] == [None, None]  # a new start cuts the old one
    assert "after 1 segments: a new message started before the last segment of the previous" in caplog.text
    assert assembler.dropped_messages == 1


def test_assembler_joins_only_segments_from_the_same_addresses() -> None:
    first, own_middle, last = segments(REAL_MESSAGE, 3)
    for address in ({"destination": b"\x43"}, {"source": b"\x08\x85"}):  # the same lengths, other values
        _, middle, _ = segments(REAL_MESSAGE, 3, **address)
        # another meter's segment is noise between ours: never joined, the sequence goes on around it
        assembler = HdlcMessageAssembler()
        found = [assembler.add(f) for f in (first, middle, own_middle, last)]
        assert found == [None, None, None, REAL_MESSAGE], address
        # in place of ours it leaves a gap: with is_whole the spliced message is dropped, never delivered
        assembler = HdlcMessageAssembler(is_whole_apdu)
        assert [assembler.add(f) for f in (first, middle, last)] == [None, None, None], address
        assert assembler.dropped_messages == 2  # ours, and the other meter's, whose first segment was lost


def test_assembler_takes_a_last_segment_without_information_as_the_end() -> None:
    first = HdlcFrameReader().read(build_frame(REAL_MESSAGE, segmented=True))[0]
    (empty_last,) = HdlcFrameReader().read(build_frame(b""))
    assembler = HdlcMessageAssembler()
    assert [assembler.add(f) for f in (first, empty_last)] == [None, REAL_MESSAGE]


def test_assembler_passes_a_whole_frame_without_llc_header_from_the_start() -> None:
    (frame,) = HdlcFrameReader().read(build_frame(REAL_MESSAGE[3:]))  # a meter that sends no LLC header
    assert HdlcMessageAssembler().add(frame) == REAL_MESSAGE[3:]


# The reader's bookkeeping, edge by edge (the abort sequence, octet stuffing, over-long addresses)


def test_a_frame_whose_address_runs_past_four_octets_is_never_valid() -> None:
    frame = build_frame(b"\xe6\xe7\x00\x0f", destination=b"\x02\x04\x06\x08\x0b")  # a 5-octet address
    built = HdlcFrame(frame[1:-1])
    assert built.is_good_ffc and built.is_expected_length
    assert not built.is_good_hcs and not built.is_valid
    assert built.header.destination_address is None and built.information is None
    assert not [f for f in HdlcFrameReader().read(frame + VALID_SINGLE[0]) if f.is_valid][1:]


def test_an_aborted_frame_is_counted_as_discarded_bytes_and_not_returned() -> None:
    aborted = b"\x7e" + VALID_SINGLE[0][1:20] + b"\x7d\x7e"  # a frame cut short by 7D 7E
    reader = HdlcFrameReader(use_abort_sequence=True)
    reader.discarded_bytes = 5
    frames = reader.read(aborted + VALID_SINGLE[0])
    assert [f.frame_data for f in frames] == [VALID_SINGLE[0][1:-1]]
    assert reader.discarded_bytes == 5 + len(aborted) - 1  # everything but the flag that closes it
    plain = HdlcFrameReader()
    frames = plain.read(aborted + VALID_SINGLE[0])
    assert [f.frame_data for f in frames] == [aborted[1:-1], VALID_SINGLE[0][1:-1]]  # invalid, then valid


def test_octet_stuffed_reading_counts_and_bounds_what_it_skips() -> None:
    vector = next(v for v in HDLC_VECTORS if v["id"] == "xx-other-hdlc-amshan-stuffed-short-info")
    frame = bytes.fromhex(vector["hex"])
    reader = HdlcFrameReader(use_octet_stuffing=True)
    assert reader.read(b"noise") == [] and reader.discarded_bytes == 5  # no flag at all
    assert reader.read(b"junk" + frame[:5]) == [] and reader.discarded_bytes == 9  # up to the opening flag
    (whole,) = reader.read(frame[5:])  # the rest of the frame, kept from the read before
    assert whole.is_valid and whole.information == bytes.fromhex("7e7d03")
    assert reader.read(b"\x7e\x7e" + frame) != [] and reader.discarded_bytes == 9  # empty spans are idle
    limit = 2 * (HdlcFrame.MAX_FRAME_LENGTH + 1)
    for length, kept in ((limit, True), (limit + 1, False)):
        reader = HdlcFrameReader(use_octet_stuffing=True)
        assert reader.read(b"\x7e" + bytes(length - 1)) == []  # an opening flag and no closing one
        assert reader.buffered_bytes == (length if kept else 0)
        assert reader.discarded_bytes == (0 if kept else length)
    aborting = HdlcFrameReader(use_octet_stuffing=True, use_abort_sequence=True)
    assert aborting.read(b"\x7e\x01\x02\x7d\x7e" + frame) != []
    assert aborting.discarded_bytes == 3  # the aborted span 01 02 7D, then the frame itself
    plain = HdlcFrameReader(use_octet_stuffing=True)
    frames = plain.read(b"\x7e\x01\x02\x7d\x7e" + frame)
    assert frames[0].frame_data == b"\x01\x02\x7d" and frames[1].is_valid


# The frame checks at their bounds (IEC 62056-46 type 3: an HCS only when an information field follows)


def header_with_hcs(**fields: Any) -> bytes:
    """Return the octets of a frame with an HCS and an empty information field, FCS included, no flags."""
    destination, source = fields.get("destination", b"\x41"), fields.get("source", b"\x08\x83")
    header = (0xA000 | (2 + len(destination) + len(source) + 1 + 4)).to_bytes(2, "big") + destination + source
    header += b"\x13"
    body = header + check_octets(header)
    return body + check_octets(body)


def test_frame_checks_at_their_shortest() -> None:
    one_octet = HdlcFrame(b"\x41" + check_octets(b"\x41"))  # one octet under its FCS
    assert one_octet.is_good_ffc is True
    assert HdlcFrame(b"\xa0\x02").is_expected_length is True  # a format field saying 2, and 2 octets
    assert HdlcFrame(b"\xa0").is_expected_length is False
    empty = HdlcFrame(header_with_hcs())  # header, HCS, empty information field, FCS
    assert len(empty) == empty.control_position + 5
    assert empty.is_good_hcs is True and empty.is_valid and empty.information == b""
    cut = HdlcFrame(empty.frame_data[:-1])  # one octet after the HCS: no room for an FCS behind it
    assert cut.is_good_hcs is False and cut.information is None
    too_long = HdlcFrame(build_frame(b"\x01", destination=b"\x02\x04\x06\x08\x0b")[1:-1])
    assert too_long.control_position < 0 and too_long.is_good_hcs is False


def test_an_address_past_four_octets_is_rejected_before_the_frame_is_complete() -> None:
    """Five address octets can never be a frame: the candidate is rejected at once, not waited for."""
    frame = build_frame(bytes(200), destination=b"\x02\x04\x06\x08\x0b")
    reader = HdlcFrameReader()
    (rejected,) = reader.read(frame[:12])
    assert rejected.frame_data == frame[1:12] and not rejected.is_valid
    assert reader.buffered_bytes == 0


def test_read_interleaved_passes_the_bytes_outside_valid_frames_on_in_order() -> None:
    frame = build_frame(b"\x01\x02")
    reader = HdlcFrameReader()
    got = reader.read_interleaved(b"junk" + frame + b"more")
    assert got[0] == b"junk" and got[2] == b"more" and len(got) == 3
    assert isinstance(got[1], HdlcFrame) and got[1].is_valid and got[1].frame_data == frame[1:-1]
    assert reader.read_interleaved(b"\x7e\xa0") == []  # the start of a frame is held, not passed on
    assert [f.frame_data for f in reader.read_interleaved(frame[2:])] == [frame[1:-1]]  # type: ignore[union-attr]


def test_a_frame_after_a_truncated_one_comes_out_with_its_closing_flag_whatever_the_chunking() -> None:
    """A truncated frame claiming 2047 octets; the next frame, in pieces, comes out with its last piece."""
    truncated = b"\x7e" + bytes.fromhex("a7ff410883") + b"\x13"
    truncated += check_octets(truncated[1:]) + b"\x01\x02"
    following = VALID_SINGLE[0]
    for cut in range(1, len(following) - 1):
        reader = HdlcFrameReader()
        assert not [f for f in reader.read(truncated + following[:cut]) if f.is_valid]
        got = [f.frame_data for f in reader.read(following[cut:]) if f.is_valid]
        assert got == [following[1:-1]], cut


@pytest.mark.parametrize("idle_flags", [1, 2, 3])
def test_a_frame_behind_a_truncated_one_and_idle_flags_comes_out_at_once(idle_flags: int) -> None:
    """Idle flags between a truncated frame and the next: the look-ahead judges every flag, none hides it."""
    truncated = b"\x7e" + bytes.fromhex("a7ff410883") + b"\x13"
    truncated += check_octets(truncated[1:]) + b"\x01\x02"
    following = VALID_SINGLE[0]
    reader = HdlcFrameReader()
    got = [f.frame_data for f in reader.read(truncated + b"\x7e" * idle_flags + following) if f.is_valid]
    assert got == [following[1:-1]]
    assert reader.buffered_bytes == 1  # only the closing flag, which may open the next frame


def test_an_incomplete_frame_read_octet_by_octet_judges_each_flag_inside_it_once() -> None:
    """The reader works in linear time: an incomplete frame's inner flags are judged once, not every read."""
    frame = build_frame(LLC_HEADER + b"\x7e\x01" * 60)  # 60 flags inside that open no frame
    reader = HdlcFrameReader()
    judged = counting_evaluations(reader)
    frames = read_in_chunks(frame, [1], reader)
    assert [f.frame_data for f in frames] == [frame[1:-1]]
    # The frame's own flag is judged on each read until its 10 header octets are in (then they are known);
    # every later flag while it is the last octet, the last but one, and once its format octet is in.
    times = collections.Counter(judged)
    assert times.pop(0) <= 11 and len(times) >= 60 and max(times.values()) <= 3, times


def test_discarded_bytes_add_up_over_reads_in_every_mode() -> None:
    """discarded_bytes is a running total: each skipped or aborted span adds to what came before."""
    aborted = b"\x7e" + VALID_SINGLE[0][1:20] + b"\x7d\x7e"
    reader = HdlcFrameReader(use_abort_sequence=True)
    frames = reader.read(VALID_SINGLE[1] + aborted + VALID_SINGLE[0])  # the aborted frame after a valid one
    assert [f.frame_data for f in frames] == [VALID_SINGLE[1][1:-1], VALID_SINGLE[0][1:-1]]
    assert reader.discarded_bytes == len(aborted) - 1
    stuffed = bytes.fromhex(next(v["hex"] for v in HDLC_VECTORS if v["id"].endswith("stuffed-short-info")))
    reader = HdlcFrameReader(use_octet_stuffing=True)
    for total in (5, 10):  # no flag at all, twice: nothing is held
        assert reader.read(b"noise") == [] and reader.discarded_bytes == total
        assert reader.buffered_bytes == 0 and reader.unescape_next is False
    aborting = HdlcFrameReader(use_octet_stuffing=True, use_abort_sequence=True)
    for total in (3, 6):  # the aborted span 01 02 7D each time
        assert [f.is_valid for f in aborting.read(b"\x7e\x01\x02\x7d\x7e" + stuffed)] == [True]
        assert aborting.discarded_bytes == total
    limit = 2 * (HdlcFrame.MAX_FRAME_LENGTH + 1)
    reader = HdlcFrameReader(use_octet_stuffing=True)
    reader.read(b"ab\x7e")
    assert reader.read(bytes(limit)) == [] and reader.discarded_bytes == 2 + limit + 1


# HdlcMessageAssembler: what is noise, what is a loss, and how each is counted

OTHER = {"destination": b"\x43"}  # another meter: the same lengths, another address


def with_fcs_broken(frame: HdlcFrame) -> HdlcFrame:
    """Return the frame with its last FCS octet flipped (its header, with its HCS, intact)."""
    return HdlcFrame(frame.frame_data[:-1] + bytes((frame.frame_data[-1] ^ 1,)))


def test_assembler_counts_noise_and_keeps_the_sequence_around_it() -> None:
    first, middle, last = segments(REAL_MESSAGE, 3)
    _, other_middle, other_last = segments(REAL_MESSAGE, 3, **OTHER)
    garbage = HdlcFrame(b"\x01\x02\x03")
    assembler = HdlcMessageAssembler()
    fed = [garbage, first, garbage, with_fcs_broken(other_middle), other_last, middle, last]
    assert [assembler.add(f) for f in fed] == [None] * 6 + [REAL_MESSAGE]
    assert assembler.noise_frames == 4  # two garbage frames and the other meter's two frames
    assert assembler.dropped_messages == 1  # the other meter's message, whose first segment never came


def test_assembler_takes_a_frame_without_a_trusted_header_for_noise() -> None:
    first, middle, last = segments(REAL_MESSAGE, 3)
    damaged = bytearray(middle.frame_data)
    damaged[7] ^= 0x01  # the HCS: the addresses cannot be trusted, nothing is known to be lost
    no_information = HdlcFrame(build_frame(b"", segmented=True)[1:-2] + b"\x00")  # no HCS, FCS broken
    for noise in (HdlcFrame(bytes(damaged)), no_information):
        assembler = HdlcMessageAssembler()
        assert [assembler.add(f) for f in (first, noise, middle, last)] == [None, None, None, REAL_MESSAGE]
        assert (assembler.noise_frames, assembler.dropped_messages) == (1, 0)
    # a frame with an HCS and an empty information field whose FCS fails: a frame of this meter was lost
    lost = with_fcs_broken(HdlcFrame(header_with_hcs()))
    assembler = HdlcMessageAssembler()
    assert [assembler.add(f) for f in (first, lost, middle, last)] == [None] * 4
    assert (assembler.noise_frames, assembler.dropped_messages) == (0, 1)


def test_assembler_drops_the_rest_of_a_message_whose_first_segment_was_broken() -> None:
    first, middle, last = segments(REAL_MESSAGE, 3)
    assembler = HdlcMessageAssembler()
    assert [assembler.add(f) for f in (with_fcs_broken(first), middle, last)] == [None, None, None]
    assert assembler.dropped_messages == 1  # counted once, when the rest of it is dropped
    assert [assembler.add(f) for f in (first, middle, last)] == [None, None, REAL_MESSAGE]


def test_assembler_counts_a_meters_next_loss_after_a_message_of_it_came_through() -> None:
    first, middle, last = segments(REAL_MESSAGE, 3)
    assembler = HdlcMessageAssembler()
    fed = [first, with_fcs_broken(middle), first, middle, last]  # a broken message, the next one whole
    assert [assembler.add(f) for f in fed] == [None] * 4 + [REAL_MESSAGE]
    assert assembler.dropped_messages == 1
    assert [assembler.add(f) for f in (middle, last)] == [None, None]  # the next message lost its start
    assert assembler.dropped_messages == 2


def test_assembler_drops_the_rest_of_another_meters_message_interrupting_ours() -> None:
    first, middle, last = segments(REAL_MESSAGE, 3)
    other_first, other_middle, other_last = segments(REAL_MESSAGE, 3, **OTHER)
    (other_whole,) = HdlcFrameReader().read(build_frame(REAL_MESSAGE[3:], **OTHER))  # no LLC header
    assembler = HdlcMessageAssembler()
    assembler.add(with_fcs_broken(first))
    assembler.add(last)
    assert assembler.dropped_messages == 1
    # its first segment while ours runs: lost at once; its later segments are dropped without a new count
    fed = [first, other_first, middle, last, other_middle, other_last]
    assert [assembler.add(f) for f in fed] == [None, None, None, REAL_MESSAGE, None, None]
    assert assembler.dropped_messages == 2
    # its middle segment while ours runs: its message is lost; its last segment is dropped after ours
    fed = [first, other_middle, middle, last, other_last]
    assert [assembler.add(f) for f in fed] == [None, None, None, REAL_MESSAGE, None]
    assert assembler.dropped_messages == 3
    # its last segment while ours runs ends its lost message: its next whole frame is delivered
    fed = [first, other_last, middle, last, other_whole]
    assert [assembler.add(f) for f in fed] == [None, None, None, REAL_MESSAGE, REAL_MESSAGE[3:]]
    assert assembler.dropped_messages == 4
    fed = [other_first, other_middle, other_last]
    assert [assembler.add(f) for f in fed] == [None, None, REAL_MESSAGE]


def test_assembler_remembers_several_broken_meters_and_at_most_sixteen() -> None:
    meters = [{"destination": bytes((2 * n + 1,))} for n in range(40)]
    assembler = HdlcMessageAssembler()
    lasts = []
    for meter in meters[:2]:  # two meters broken at once: the rest of each is dropped
        first, _, last = segments(REAL_MESSAGE, 3, **meter)
        assembler.add(with_fcs_broken(first))
        lasts.append(last)
    assert [assembler.add(f) for f in lasts] == [None, None] and assembler.dropped_messages == 2
    sizes = []
    for meter in meters:  # garbage naming many meters, each broken by a frame failing its FCS
        first, middle, _ = segments(REAL_MESSAGE, 3, **meter)
        assembler.add(first)
        assembler.add(with_fcs_broken(middle))  # the sequence's own frame: its message is dropped
        sizes.append(len(assembler._broken))
    assert max(sizes) == 16 and assembler.dropped_messages == 2 + 40


def test_assembler_logs_each_kind_of_drop_with_its_reason_rate_limited(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("amshan._ratelimit.time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    first, middle, last = segments(REAL_MESSAGE, 3)
    assembler = HdlcMessageAssembler(lambda message: False)  # no reassembled message fits its APDU
    with caplog.at_level("DEBUG", logger="amshan.hdlc"):
        for _ in range(3):
            assert [assembler.add(f) for f in (first, middle, last)] == [None, None, None]
        clock[0] += 61
        assert [assembler.add(f) for f in (first, middle, last)] == [None, None, None]
        for _ in range(2):
            assert [assembler.add(f) for f in (first, with_fcs_broken(middle))] == [None, None]
        clock[0] += 61
        assert [assembler.add(f) for f in (first, with_fcs_broken(middle), last)] == [None, None, None]
    assert assembler.dropped_messages == 7
    unfit = (
        "Dropped a segmented message of 3 segments: its APDU does not account for exactly its "
        f"{len(REAL_MESSAGE)} octets (a segment was lost)"
    )
    broken = "Dropped a segmented message after 1 segments: a segment failed its frame check"
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        unfit,
        unfit + " (2 more drops not logged)",
        broken + " (2 more drops not logged)",
    ]
    lost_start = "Dropped a segment of a message whose first segment was lost"
    assert [r.getMessage() for r in caplog.records if r.levelname == "DEBUG"] == [lost_start]


# The read loop's edges: what is skipped and counted, what is held, what is memoised


def counting_evaluations(reader: HdlcFrameReader) -> list[int]:
    """Count the candidates the reader judges in full (its header parsed and checked), by position."""
    judged: list[int] = []
    evaluate = reader._evaluate

    def counting(buffer: bytes, position: int, size: int) -> Any:
        judged.append(position)
        return evaluate(buffer, position, size)

    reader._evaluate = counting  # type: ignore[method-assign]
    return judged


def test_a_fresh_reader_holds_nothing() -> None:
    assert HdlcFrameReader().buffered_bytes == 0 and HdlcFrameReader().is_in_hunt_mode
    assert HdlcFrameReader(use_octet_stuffing=True).unescape_next is False


def test_the_read_loop_counts_every_octet_it_skips() -> None:
    frame = VALID_SINGLE[0]
    reader = HdlcFrameReader()
    for total in (5, 10):  # no flag at all
        assert reader.read(b"noise") == [] and reader.discarded_bytes == total
    # a flag opening no frame (its next octet is no format octet) is counted with what follows it
    assert len(reader.read(frame + b"junk")) == 1 and reader.discarded_bytes == 15  # after a frame
    assert len(reader.read(frame + b"junk" + frame)) == 2 and reader.discarded_bytes == 20  # between frames
    assert reader.buffered_bytes == 1  # the last closing flag, which may open the next frame
    for total in (24, 28):
        assert [f.is_valid for f in reader.read(b"\x7e\x01\x7e\x02" + frame)] == [True]
        assert reader.discarded_bytes == total
    reader = HdlcFrameReader()
    assert reader.read(b"\x7e\x01\x02") == []  # two octets after a flag are enough to tell
    assert (reader.discarded_bytes, reader.buffered_bytes) == (3, 0)


def test_a_flag_run_is_skipped_at_once() -> None:
    reader = HdlcFrameReader()
    judged = counting_evaluations(reader)
    frames = reader.read(b"\x7e" * 200 + VALID_SINGLE[0] + b"\x7e" * 200 + VALID_SINGLE[1])
    assert [f.frame_data for f in frames] == [VALID_SINGLE[0][1:-1], VALID_SINGLE[1][1:-1]]
    assert len(judged) == 5, judged  # each run, each frame, the last closing flag: no flag by flag walk


def test_a_header_seen_before_is_not_parsed_again() -> None:
    frame, other = VALID_SINGLE[0], VALID_SINGLE[1]
    for primer in (frame, other + frame):  # the header memoised wherever it stood in the buffer
        reader = HdlcFrameReader()
        reader.read(primer)  # its closing flag is held
        judged = counting_evaluations(reader)
        assert [f.is_valid for f in reader.read(frame + frame)] == [True, True]
        assert judged == [0, 2 * len(frame)]  # only the two flags before the frames and the last one
    ten_octet_header = build_frame(LLC_HEADER, destination=b"\x02\x03", source=b"\x04\x06\x09")
    reader = HdlcFrameReader()
    reader.read(ten_octet_header)  # format, addresses and control: 8 octets, HCS 2: all in the key
    judged = counting_evaluations(reader)
    assert [f.is_valid for f in reader.read(ten_octet_header)] == [True]
    assert judged == [0, len(ten_octet_header)]


def test_a_header_longer_than_the_memo_key_is_checked_every_time() -> None:
    """13 header octets: the 10 memoised octets do not cover its HCS, so a wrong HCS is always caught."""
    frame = build_frame(LLC_HEADER + b"\x01", destination=b"\x02\x04\x06\x09", source=b"\x02\x04\x06\x0b")
    damaged = bytearray(frame[1:-3])
    damaged[12] ^= 0x01  # the HCS's second octet, beyond the 10 octets
    damaged += check_octets(bytes(damaged))
    reader = HdlcFrameReader()
    got = reader.read(frame + b"\x7e" + bytes(damaged) + b"\x7e" + frame)
    assert [f.is_valid for f in got] == [True, False, True]


def test_the_memoised_headers_are_bounded() -> None:
    reader = HdlcFrameReader()
    sizes = []
    for control in range(0, 200, 2):  # 100 headers that differ in their control octet
        (frame,) = reader.read(build_frame(LLC_HEADER, control=control))
        assert frame.is_valid
        sizes.append(len(reader._checked_headers))
    assert max(sizes) == 64


def test_a_frame_whose_addresses_run_to_its_end_is_rejected_once_its_length_is_in() -> None:
    """Format (7 octets), destination 41, then a source address of even octets up to the frame's end."""
    octets = b"\x7e" + bytes.fromhex("a00741020406") + b"\x08"
    reader = HdlcFrameReader()
    assert reader.read(octets[:-1]) == [] and reader.buffered_bytes == 7  # it may still close: held
    (rejected,) = reader.read(octets[-1:])  # the frame's last octet, the closing flag not yet in
    assert rejected.frame_data == octets[1:] and not rejected.is_valid
    assert reader.buffered_bytes == 0


def test_one_flag_of_a_run_after_a_frame_is_held() -> None:
    reader = HdlcFrameReader()
    assert [f.is_valid for f in reader.read(VALID_SINGLE[0] + b"\x7e")] == [True]
    assert reader.buffered_bytes == 1  # the run's last flag, which may open the next frame


def test_a_frame_too_short_for_its_fcs_after_its_header_is_never_valid() -> None:
    """Format, addresses (1 + 2 octets) and control, then one octet: the good FCS overlaps the control."""
    body = bytes.fromhex("a007410883")
    data = body + check_octets(body)
    assert HdlcFrame(data).is_good_ffc and HdlcFrame(data).is_expected_length
    assert not HdlcFrame(data).is_valid
    assert not [f for f in HdlcFrameReader().read(b"\x7e" + data + b"\x7e") if f.is_valid]


def test_a_frame_with_an_hcs_and_an_empty_information_field_is_read() -> None:
    frame = header_with_hcs()
    (got,) = HdlcFrameReader().read_interleaved(b"\x7e" + frame + b"\x7e")  # no octet left over as no frame
    assert isinstance(got, HdlcFrame) and got.frame_data == frame and got.is_valid


def test_a_wrong_hcs_is_rejected_as_soon_as_it_is_in() -> None:
    frame = VALID_SINGLE[0]
    damaged = frame[:7] + bytes((frame[7] ^ 0x01,))  # flag, format, addresses, control, HCS (wrong)
    reader = HdlcFrameReader()
    (rejected,) = reader.read(damaged)
    assert not rejected.is_valid and reader.buffered_bytes == 0


def test_interleaved_bytes_never_include_empty_runs_and_survive_a_held_flag() -> None:
    frame = build_frame(b"\x01\x02")
    reader = HdlcFrameReader()
    got = reader.read_interleaved(frame + frame)  # back to back: nothing between them
    assert [type(item) for item in got] == [HdlcFrame, HdlcFrame]
    assert reader.read_interleaved(b"junk") == [b"junk"]
    got = reader.read_interleaved(b"more" + frame + b"\x01")  # the closing flag may open a frame: held
    assert got[0] == b"more" and isinstance(got[1], HdlcFrame) and len(got) == 2
    assert reader.read_interleaved(b"\x02\x03") == [b"\x01\x02\x03"]  # it opened none


def test_a_truncated_frame_after_a_memoised_one_gives_way_to_the_valid_frame_after_it() -> None:
    """Truncated frames, one whose header is memoised and one new, then a valid frame: all in one read."""
    big = build_frame(bytes(range(1, 126)) * 4)  # a memoised header claiming about 500 octets
    new_header = build_frame(bytes(range(1, 126)) * 3, destination=b"\x43")
    for reader in (HdlcFrameReader(), HdlcFrameReader()):
        reader.read(big)
        got = reader.read(big[:20] + new_header[:20] + VALID_SINGLE[0])
        assert [f.is_valid for f in got] == [False, False, True]
        assert got[2].frame_data == VALID_SINGLE[0][1:-1]
