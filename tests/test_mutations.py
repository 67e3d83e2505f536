"""Mutated streams of every valid corpus HDLC frame: what the reader guarantees, and that nothing raises.

The guarantee (of HdlcFrameReader, whatever the chunking): a frame is *present* in a stream when its exact
octets stand between two flag octets, 7E <frame> 7E; a flag may be its own or shared with a neighbour.
Every present frame comes out valid exactly once, in stream order, from the read() that delivers its
closing flag, and nothing else comes out valid. A mutation destroys only the frames whose octets or
enclosing flags it changes: a frame whose opening flag is lost still counts when the closing flag of the
frame before it now precedes it, and a duplicated flag changes nothing. With shared flags (7E A 7E B 7E) a
mutation of the shared flag destroys both A and B.

The one exception is a CRC collision: a corrupted candidate that passes the 16-bit FCS (and the HCS when
its header was hit) and ends on a flag, with odds of 2^-16 or less; the tests would report it as a failure.
"""

from __future__ import annotations

import bisect
import random

import pytest
from _decoders import assert_contained, hdlc_pipeline
from _processes import expected_messages, information_field, is_segment, vector_frames
from _support import corpus_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amshan.autodecoder import AutoDecoder
from amshan.hdlc import LLC_HEADER, HdlcFrame, HdlcFrameReader, HdlcMessageAssembler
from amshan.reader import MeterReader

FLAG = b"\x7e"
VECTORS = corpus_frames(layer="hdlc", valid=True)
FRAMES: list[bytes] = list(dict.fromkeys(f for v in VECTORS for f in vector_frames(v)))  # unique, in order
FRAME_IDS = [f"{i:03d}-{f[1:3].hex()}-{len(f)}" for i, f in enumerate(FRAMES)]
# Most frames the reader may buffer: one candidate of the largest claimed length and its opening flag.
MAX_BUFFERED = HdlcFrame.MAX_FRAME_LENGTH + 2
CHUNK_SIZES = (7, 16, 64, 255)


def test_every_valid_corpus_frame_is_a_base() -> None:
    assert len(FRAMES) >= 180
    for frame in FRAMES:
        (read,) = HdlcFrameReader().read(frame)
        assert read.is_valid and read.frame_data == frame[1:-1]
    assert sum(FLAG in f[1:-1] for f in FRAMES) >= 20, "frames holding 7E are the hard cases"


def present(spans: list[bytes], frames: list[bytes]) -> list[tuple[int, int]]:
    """Return (frame index, stream offset of its closing flag) of each frame intact between two flags.

    Span i holds frame i (mutated or not) with the flags it owns, so frame i can only be present within its
    own span and the octet on either side of it.
    """
    stream = b"".join(spans)
    found = []
    start = 0
    for index, (span, frame) in enumerate(zip(spans, frames)):
        window_start = max(0, start - 1)
        at = stream.find(frame, window_start, start + len(span) + 1)
        if at >= 0:
            found.append((index, at + len(frame) - 1))
        start += len(span)
    return found


def read_chunked(
    reader: HdlcFrameReader, stream: bytes, sizes: list[int], closings: tuple[int, ...] = ()
) -> list[HdlcFrame]:
    """Feed the stream in chunks of the given sizes (cycled) and return every frame read.

    After each read the buffer is within its bound and, when the closing flags' offsets of the frames that
    must come out are given, every one of them that has arrived has come out.
    """
    frames: list[HdlcFrame] = []
    position = index = valid = 0
    while position < len(stream):
        size = sizes[index % len(sizes)]
        read = reader.read(stream[position : position + size])
        frames += read
        assert reader.buffered_bytes <= MAX_BUFFERED
        position += size
        index += 1
        valid += sum(frame.is_valid for frame in read)
        assert valid >= bisect.bisect_left(closings, position), f"a complete frame held back at {position}"
    return frames


def assemble(frames: list[HdlcFrame]) -> list[bytes]:
    """Return the messages HdlcMessageAssembler makes of the frames."""
    assembler = HdlcMessageAssembler()
    return [m for m in map(assembler.add, frames) if m is not None]


def is_subsequence(wanted: list[bytes], got: list[bytes]) -> bool:
    """Tell whether every item of wanted occurs in got, in the same order."""
    remaining = iter(got)
    return all(any(item == other for other in remaining) for item in wanted)


def check_stream(
    spans: list[bytes], frames: list[bytes], sizes: list[int], reader: HdlcFrameReader
) -> list[HdlcFrame]:
    """Read the stream; assert the guarantee of the module docstring and return every frame read."""
    wanted = present(spans, frames)
    out = read_chunked(reader, b"".join(spans), sizes, tuple(closing for _, closing in wanted))
    assert [f.frame_data for f in out if f.is_valid] == [frames[i][1:-1] for i, _ in wanted]
    return out


def warmed(frames: bytes, reader: HdlcFrameReader | None = None) -> HdlcFrameReader:
    """Return a reader that has read the frames (their headers now take the fast path) and holds nothing."""
    reader = reader or HdlcFrameReader()
    reader.read(frames + b"\x00\x00")  # two octets that are no frame: the last closing flag is let go
    assert reader.buffered_bytes == 0
    return reader


# --- a deterministic sweep: every frame, every kind of mutation, at many places ---------------------


def sweep_mutations(frame: bytes) -> list[tuple[str, bytes]]:
    """Return (name, mutated frame) for the mutations of the sweep, flags included in the frame's octets."""
    size = len(frame)
    places = sorted({*range(min(size, 14)), *range(size - 5, size), *range(14, size, 9)})
    mutated = [(f"truncate {k}", frame[:k]) for k in range(size)]
    for p in places:
        mutated.append((f"flip {p}", frame[:p] + bytes((frame[p] ^ (1 << p % 8),)) + frame[p + 1 :]))
        mutated.append((f"delete {p}", frame[:p] + frame[p + 1 :]))
        mutated.append((f"insert 7e at {p}", frame[:p] + FLAG + frame[p:]))
        mutated.append((f"insert a0 at {p}", frame[:p] + b"\xa0" + frame[p:]))
    mutated += [
        ("no opening flag", frame[1:]),
        ("no closing flag", frame[:-1]),
        ("no flags", frame[1:-1]),
        ("duplicated flags", FLAG + frame + FLAG),
        ("cut in two", frame[: size // 2] + FLAG + frame[size // 2 :]),
    ]
    return mutated


@pytest.mark.parametrize("index", range(len(FRAMES)), ids=FRAME_IDS)
def test_sweep_of_mutations_of_each_corpus_frame(index: int) -> None:
    """Between two real neighbours (own flags each), each mutation of the frame leaves the neighbours whole.

    A fresh reader reads each stream whole; one that has seen the three frames before (their headers take
    the fast path) reads it whole and, for every fourth mutation, in chunks of a size that changes each time.
    """
    frame = FRAMES[index]
    before, after = FRAMES[index - 1], FRAMES[(index + 1) % len(FRAMES)]
    warm = warmed(before + frame + after)
    frames = [before, frame, after]
    messages: set[bytes] = set()
    for number, (name, mutated) in enumerate(sweep_mutations(frame)):
        spans = [before, mutated, after]
        out = check_stream(spans, frames, [1 << 16], HdlcFrameReader())
        assert [f.frame_data for f in check_stream(spans, frames, [1 << 16], warm)] == [
            f.frame_data for f in out
        ], name
        if number % 4 == 0:
            check_stream(spans, frames, [CHUNK_SIZES[number // 4 % len(CHUNK_SIZES)]], warm)
        messages.update(assemble(out))
    decoder = AutoDecoder()
    for content in messages:
        assert_contained(content, decoder)


# --- hypothesis: several frames, several mutations each, random chunking ----------------------------


def mutate(data: st.DataObject, span: bytearray) -> None:
    """Apply one random mutation to a frame's octets in place."""
    kind = data.draw(st.sampled_from(("flip", "truncate", "insert", "delete", "dup flag", "drop flag")))
    if not span:  # truncated to nothing before
        return
    if kind == "flip":
        span[data.draw(st.integers(0, len(span) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        del span[data.draw(st.integers(0, len(span) - 1)) :]
    elif kind == "insert":
        where = data.draw(st.integers(0, len(span)))
        span[where:where] = data.draw(st.binary(min_size=1, max_size=8) | st.sampled_from((FLAG, b"\xa0")))
    elif kind == "delete":
        where = data.draw(st.integers(0, len(span) - 1))
        del span[where : where + data.draw(st.integers(1, 4))]
    else:
        flags = [i for i in (0, len(span) - 1) if span[i] == FLAG[0]]
        if flags:
            where = data.draw(st.sampled_from(flags))
            if kind == "dup flag":
                span.insert(where, FLAG[0])
            else:
                del span[where]


def stream_spans(frames: list[bytes], shared: bool) -> list[bytearray]:
    """Return each frame's octets with the flags it owns: both, or (shared flags) its closing flag only."""
    if not shared:
        return [bytearray(f) for f in frames]
    return [bytearray(f if i == 0 else f[1:]) for i, f in enumerate(frames)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_streams_yield_exactly_the_frames_still_present(data: st.DataObject) -> None:
    """Random corpus messages (segments kept together), some frames mutated up to three times each."""
    vectors = data.draw(st.lists(st.sampled_from(VECTORS), min_size=1, max_size=4), label="vectors")
    frames = [f for v in vectors for f in vector_frames(v)]
    shared = data.draw(st.booleans(), label="shared flags")
    spans = stream_spans(frames, shared)
    for index, span in enumerate(spans):
        for _ in range(data.draw(st.sampled_from((0, 0, 1, 1, 2, 3)), label=f"mutations of {index}")):
            mutate(data, span)
    sizes = data.draw(st.lists(st.integers(1, 600), min_size=1, max_size=6), label="chunk sizes")
    abort = data.draw(st.booleans(), label="abort sequence")
    if data.draw(st.booleans(), label="warm reader"):
        reader = warmed(b"".join(frames), HdlcFrameReader(use_abort_sequence=abort))
    else:
        reader = HdlcFrameReader(use_abort_sequence=abort)
    final = [bytes(s) for s in spans]
    out = check_stream(final, frames, sizes, reader)
    messages = assemble(out)
    decoder = AutoDecoder()
    for content in messages:
        assert_contained(content, decoder)
    # A whole message in one present frame (LLC header, no segmentation bit) is always delivered.
    singles = [
        information_field(frames[i])
        for i, _ in present(final, frames)
        if not is_segment(frames[i]) and information_field(frames[i]).startswith(LLC_HEADER)
    ]
    assert is_subsequence(singles, messages)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_meter_reader_on_mutated_streams_gives_what_the_hdlc_layers_give(data: st.DataObject) -> None:
    """The same mutated streams through MeterReader, in random chunks: the HDLC layers' messages, in order."""
    vectors = data.draw(st.lists(st.sampled_from(VECTORS), min_size=1, max_size=4), label="vectors")
    frames = [f for v in vectors for f in vector_frames(v)]
    spans = stream_spans(frames, data.draw(st.booleans(), label="shared flags"))
    for index, span in enumerate(spans):
        for _ in range(data.draw(st.sampled_from((0, 0, 1, 1, 2, 3)), label=f"mutations of {index}")):
            mutate(data, span)
    stream = b"".join(bytes(s) for s in spans)
    size = data.draw(st.integers(1, 600), label="chunk size")
    reader = MeterReader()
    got = [d for start in range(0, len(stream), size) for d in reader.read(stream[start : start + size])]
    assert got == hdlc_pipeline(stream)
    assert reader.buffered_bytes <= MAX_BUFFERED + size


def test_unmutated_streams_deliver_every_message() -> None:
    """The baseline of the property above: without mutations every corpus message comes out once."""
    rng = random.Random(7)
    for vector in VECTORS:
        for shared in (False, True):
            stream = b"".join(stream_spans(vector_frames(vector), shared))
            out = read_chunked(HdlcFrameReader(), stream, [rng.randint(1, 300)])
            assert assemble(out) == expected_messages(vector)
