"""Segmented messages on noisy lines: noise between segments costs nothing, a lost segment costs its message
only, and a spliced message never comes out (issue 15, part 2) -- HDLC segments through the assembler, the
content protocol and MeterReader; DLMS block transfer and M-Bus segments through MeterReader.

Streams are built from real corpus messages split into 2-6 segments (``build_frame``), with bursts of every
kind of line noise between the segments: random bytes, flag runs, frame-like fragments (a flag and a
frame format octet, then garbage), truncated frames of another meter and whole frames of another meter.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Dict, List, Tuple

from _hdlc_builder import build_frame
from _support import corpus_frames
from _transport_encoder import block_transfer, mbus
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from amshan.autodecoder import AutoDecoder
from amshan.dlms import is_whole_apdu
from amshan.hdlc import LLC_HEADER, HdlcFrameReader, HdlcMessageAssembler
from amshan.meter_connection import SmartMeterFrameContentProtocol
from amshan.reader import MeterReader

METER = {"destination": b"\x41", "source": b"\x08\x83"}
OTHER_METER = {"destination": b"\x41", "source": b"\x08\x85"}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _messages() -> List[bytes]:
    """Whole, decodable, unencrypted data-notifications of the corpus (LLC header included), distinct."""
    found: Dict[bytes, None] = {}
    for vector in corpus_frames(valid=True, encrypted=False):
        raw = bytes.fromhex(vector["hex"])
        if vector["layer"] == "llc":
            candidates = [raw]
        elif vector["layer"] == "hdlc":
            assembler = HdlcMessageAssembler()
            candidates = [m for m in map(assembler.add, HdlcFrameReader().read(raw)) if m]
        else:
            continue
        for message in candidates:
            if (
                message.startswith(LLC_HEADER)
                and 24 <= len(message) <= 1500
                and is_whole_apdu(message)
                and AutoDecoder().decode_frame_content(message) is not None
            ):
                found[message] = None
    return list(found)


MESSAGES = _messages()
SHORT = [m for m in MESSAGES if len(m) <= 400]  # whole single frames of the other meter
MIN_SEGMENT = 48
LONG = [m for m in MESSAGES if len(m) > 2 * MIN_SEGMENT]  # segmented ones


def test_the_corpus_gives_messages_to_segment() -> None:
    assert len(MESSAGES) >= 40
    assert any(len(m) > 500 for m in MESSAGES) and len(LONG) >= 30


def information(frame: bytes) -> bytes:
    """Return the information field of a frame built here (flag, 8 header octets, ..., FCS, flag)."""
    return frame[9:-3]


def cuts_of(length: int, count: int) -> List[int]:
    """Return where a sender filling every segment but the last cuts a message into 2 to count segments.

    Segments hold at least MIN_SEGMENT octets (a real meter's maximum information length is 128 or more).
    """
    size = max(-(-length // count), MIN_SEGMENT)
    return list(range(size, length, size))


def segments(message: bytes, cuts: List[int]) -> List[bytes]:
    """Split a message at the cut points into HDLC segments of METER (segmentation bit on all but last)."""
    bounds = [0, *sorted(set(cuts)), len(message)]
    parts = [message[a:b] for a, b in zip(bounds, bounds[1:])]
    return [build_frame(part, segmented=i < len(parts) - 1, **METER) for i, part in enumerate(parts)]


@st.composite
def segmented_message(draw: st.DrawFn) -> Tuple[bytes, List[bytes]]:
    """A corpus message in 2-6 segments as a meter sends them: all but the last of one (maximum) size."""
    message = draw(st.sampled_from(LONG))
    frames = segments(message, cuts_of(len(message), draw(st.integers(2, 6))))
    assume(not any(information(frame).startswith(LLC_HEADER) for frame in frames[1:]))
    return message, frames


@st.composite
def noise(draw: st.DrawFn) -> Tuple[bytes, List[bytes]]:
    """A burst of line noise of one kind, and the messages it carries (a whole frame of another meter)."""
    kind = draw(st.sampled_from(("random", "flags", "frame-like", "truncated other", "other meter", "none")))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=64)), []
    if kind == "flags":
        return b"\x7e" * draw(st.integers(1, 12)), []
    if kind == "frame-like":  # a flag and a frame format octet, then garbage: the reader returns it invalid
        head = bytes((draw(st.sampled_from((0xA0, 0xA8, 0xA1))), draw(st.integers(0, 255))))
        return b"\x7e" + head + draw(st.binary(min_size=0, max_size=40)) + b"\x7e", []
    other = build_frame(draw(st.sampled_from(SHORT)), **OTHER_METER)
    if kind == "truncated other":  # another meter's frame cut short: a valid header, other addresses
        return other[: draw(st.integers(12, len(other) - 2))], []
    if kind == "other meter":  # a whole message of another meter, delivered on its own
        return other, [information(other)]
    return b"", []


@st.composite
def noisy_stream(draw: st.DrawFn) -> Tuple[List[List[bytes]], List[Tuple[bytes, List[bytes]]], List[bytes]]:
    """Messages of METER in segments, noise bursts between all of them: (segments, bursts, expected messages).

    bursts[i] comes before the i-th frame of the flattened segments; expected lists every message in order.
    The stream ends with a whole single-frame message of METER, which ends any sequence still open.
    """
    closing = draw(st.sampled_from(SHORT))
    messages = [
        *draw(st.lists(segmented_message(), min_size=1, max_size=3)),
        (closing, [build_frame(closing, **METER)]),
    ]
    all_segments = [frames for _, frames in messages]
    count = sum(len(frames) for frames in all_segments) + 1
    bursts = draw(st.lists(noise(), min_size=count, max_size=count))
    expected: List[bytes] = []
    index = 0
    for message, frames in messages:
        for _ in frames:
            expected += bursts[index][1]
            index += 1
        expected.append(message)
    expected += bursts[index][1]
    return all_segments, bursts, expected


def stream_of(all_segments: List[List[bytes]], bursts: List[Tuple[bytes, List[bytes]]]) -> bytes:
    """Interleave the noise bursts and the segment frames."""
    out = []
    frames = [frame for frames in all_segments for frame in frames]
    for burst, frame in zip(bursts, frames):
        out += [burst[0], frame]
    out.append(bursts[-1][0])
    return b"".join(out)


def assembled(stream: bytes, chunk: int = 97) -> Tuple[List[bytes], HdlcMessageAssembler]:
    """Read a stream in chunks through the reader and the assembler as the library sets it up."""
    reader, assembler = HdlcFrameReader(), HdlcMessageAssembler(is_whole_apdu)
    out = []
    for start in range(0, len(stream), chunk):
        for frame in reader.read(stream[start : start + chunk]):
            message = assembler.add(frame)
            if message:
                out.append(message)
    return out, assembler


def content_protocol(stream: bytes, chunk: int = 61) -> Tuple[List[bytes], int]:
    """Feed a stream to SmartMeterFrameContentProtocol; return what it queued and its broken_messages."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    protocol = SmartMeterFrameContentProtocol(queue)
    for start in range(0, len(stream), chunk):
        protocol.data_received(stream[start : start + chunk])
    return [queue.get_nowait() for _ in range(queue.qsize())], protocol.broken_messages


@SETTINGS
@given(noisy_stream(), st.integers(1, 600))
def test_noise_between_segments_loses_no_message(
    case: Tuple[List[List[bytes]], List[Tuple[bytes, List[bytes]]], List[bytes]], chunk: int
) -> None:
    all_segments, bursts, expected = case
    stream = stream_of(all_segments, bursts)
    out, assembler = assembled(stream, chunk)
    assert out == expected  # every message exactly once, in order, the other meter's whole frames too
    assert assembler.dropped_messages == 0
    queued, broken = content_protocol(stream, chunk)
    assert queued == expected and broken == 0
    reader = MeterReader()
    decoded = [
        d for start in range(0, len(stream), chunk) for d in reader.read(stream[start : start + chunk])
    ]
    assert decoded == [AutoDecoder().decode_frame_content(message) for message in expected]


def damaged_stream(
    messages: List[List[bytes]], bursts: List[Tuple[bytes, List[bytes]]], data: Any
) -> Tuple[int, int, bytes]:
    """The stream with one frame of one message (not the closing one) lost or damaged: (message, frame, it).

    A lost frame leaves its noise bursts in place; a damaged one has one bit flipped between its ends.
    """
    victim = data.draw(st.integers(0, len(messages) - 2))
    frames = list(messages[victim])
    position = data.draw(st.integers(0, len(frames) - 1))
    if data.draw(st.booleans()):
        frames[position] = b""
    else:
        frame = bytearray(frames[position])
        frame[data.draw(st.integers(1, len(frame) - 2))] ^= 1 << data.draw(st.integers(0, 7))
        frames[position] = bytes(frame)
    return victim, position, stream_of([*messages[:victim], frames, *messages[victim + 1 :]], bursts)


@SETTINGS
@given(noisy_stream(), st.data())
def test_a_lost_or_damaged_segment_costs_its_message_and_nothing_is_spliced(
    case: Tuple[List[List[bytes]], List[Tuple[bytes, List[bytes]]], List[bytes]], data: Any
) -> None:
    all_segments, bursts, expected = case
    victim, position, stream = damaged_stream(all_segments, bursts, data)
    frames = all_segments[victim]
    lost = b"".join(map(information, frames))  # the victim message's bytes
    assume(expected.count(lost) == 1)
    expected_out = list(expected)
    expected_out.remove(lost)
    # The last segment of a message whose earlier segments vanished without a trace (no frame with their
    # header came) is a valid frame like any single-frame message without an LLC header (client traffic,
    # general-block-transfer blocks), and is passed on as the frame it is; no decoder takes it.
    tail = information(frames[1]) if len(frames) == 2 and position == 0 else None
    for out in assembled(stream)[0], content_protocol(stream)[0]:
        assert lost not in out
        assert all(message in expected or message == tail for message in out), "nothing spliced, ever"
        assert [message for message in out if message != tail] == expected_out  # the others still come out
    reader = MeterReader()
    decoded = reader.read(stream)
    assert decoded == [AutoDecoder().decode_frame_content(message) for message in expected_out]


def test_a_lost_middle_segment_is_never_joined_silently() -> None:
    """Issue 7's case: with the middle segment gone, the ends would join into a wrong message."""
    message = max(MESSAGES, key=len)
    frames = segments(message, [len(message) // 3, 2 * len(message) // 3])
    assembler = HdlcMessageAssembler(is_whole_apdu)
    out = [assembler.add(f) for f in HdlcFrameReader().read(frames[0] + frames[2] + b"".join(frames))]
    assert [m for m in out if m] == [message]
    assert assembler.dropped_messages == 1


def test_a_segment_with_the_sequences_header_failing_its_fcs_drops_the_sequence() -> None:
    message = max(MESSAGES, key=len)
    frames = segments(message, [len(message) // 2])
    broken = bytearray(frames[0])
    broken[-3] ^= 0x40  # the FCS: the header (HCS, addresses) is still the sequence's
    assembler = HdlcMessageAssembler(is_whole_apdu)
    out = [assembler.add(f) for f in HdlcFrameReader().read(bytes(broken) + frames[1] + b"".join(frames))]
    assert [m for m in out if m] == [message]
    assert assembler.dropped_messages == 1


def test_noise_is_counted_not_logged_as_a_loss() -> None:
    message = max(MESSAGES, key=len)
    frames = segments(message, [len(message) // 2])
    garbage = b"\x7e\xa0\x33" + bytes(range(40)) + b"\x7e"
    assembler = HdlcMessageAssembler(is_whole_apdu)
    out = [assembler.add(f) for f in HdlcFrameReader().read(frames[0] + garbage + frames[1])]
    assert [m for m in out if m] == [message]
    assert assembler.noise_frames == 1 and assembler.dropped_messages == 0


def loss_on_noisy_streams(messages: int = 600, seed: int = 15) -> Tuple[int, int]:
    """Return (segmented messages lost, sent) on seeded noisy streams through the content protocol."""
    rnd = random.Random(seed)
    sent = lost = 0
    for _ in range(messages // 3):
        expected: List[bytes] = []
        stream = []
        for _ in range(3):
            message = rnd.choice(LONG)
            frames = segments(message, cuts_of(len(message), rnd.randint(2, 6)))
            if any(information(frame).startswith(LLC_HEADER) for frame in frames[1:]):
                continue
            for frame in frames:
                stream.append(b"\x7e\xa8" + rnd.randbytes(rnd.randint(1, 24)) if rnd.random() < 0.3 else b"")
                stream.append(frame)
            expected.append(message)
        queued, _ = content_protocol(b"".join(stream))
        sent += len(expected)
        lost += sum(1 for message in expected if message not in queued)
    return lost, sent


def test_no_segmented_message_is_lost_on_seeded_noisy_streams() -> None:
    lost, sent = loss_on_noisy_streams()
    assert sent >= 550
    assert lost == 0, f"{lost} of {sent} segmented messages lost to noise between segments"


# --- the same through MeterReader for DLMS block transfer and M-Bus segments --------------------------------


def block_frames(apdu: bytes, count: int) -> List[bytes]:
    """The APDU in 2 to count general-block-transfer blocks, one HDLC frame each (_transport_encoder)."""
    stream = block_transfer(apdu, max(-(-len(apdu) // count), MIN_SEGMENT))
    return [b"\x7e" + frame.frame_data + b"\x7e" for frame in HdlcFrameReader().read(stream)]


def mbus_frames(apdu: bytes, count: int) -> List[bytes]:
    """The APDU in 2 to count M-Bus long frames (CI segments), each frame on its own."""
    stream = mbus(apdu, min(max(-(-len(apdu) // count), MIN_SEGMENT), 240))  # L not wrapped
    frames = []
    while stream:
        size = stream[1] + 6  # 68 L L 68 ... CS 16
        frames.append(stream[:size])
        stream = stream[size:]
    return frames


TRANSPORTS = {"block transfer": block_frames, "M-Bus": mbus_frames}
PAD = bytes(8192)  # lets every length a header in the noise claims be reached at the end of a stream


@st.composite
def transport_stream(
    draw: st.DrawFn,
) -> Tuple[List[List[bytes]], List[Tuple[bytes, List[bytes]]], List[bytes]]:
    """APDUs of 2-6 blocks or M-Bus segments with noise bursts between all frames, a closing one-frame APDU.

    Returns (frames per APDU, noise bursts, every message MeterReader must decode, in order); the APDUs are
    the information of each frame list's message.
    """
    split = TRANSPORTS[draw(st.sampled_from(sorted(TRANSPORTS)))]
    apdus = [message[3:] for message in draw(st.lists(st.sampled_from(LONG), min_size=1, max_size=3))]
    messages = [split(apdu, draw(st.integers(2, 6))) for apdu in apdus]
    closing = draw(st.sampled_from(SHORT))[3:]
    messages.append(split(closing, 1))
    apdus.append(closing)
    count = sum(len(frames) for frames in messages) + 1
    bursts = draw(st.lists(noise(), min_size=count, max_size=count))
    expected: List[bytes] = []
    index = 0
    for apdu, frames in zip(apdus, messages):
        for _ in frames:
            expected += bursts[index][1]
            index += 1
        expected.append(apdu)
    expected += bursts[index][1]
    return messages, bursts, expected


def decoded(messages: List[bytes]) -> List[Any]:
    return [AutoDecoder().decode_frame_content(message) for message in messages]


@SETTINGS
@given(transport_stream(), st.integers(1, 600))
def test_noise_between_blocks_or_mbus_segments_loses_no_message(
    case: Tuple[List[List[bytes]], List[Tuple[bytes, List[bytes]]], List[bytes]], chunk: int
) -> None:
    messages, bursts, expected = case
    stream = stream_of(messages, bursts) + PAD
    read = MeterReader().read
    got = [d for start in range(0, len(stream), chunk) for d in read(stream[start : start + chunk])]
    assert got == decoded(expected)


@SETTINGS
@given(transport_stream(), st.data())
def test_a_lost_or_damaged_block_or_mbus_segment_costs_its_message_only(
    case: Tuple[List[List[bytes]], List[Tuple[bytes, List[bytes]]], List[bytes]], data: Any
) -> None:
    messages, bursts, expected = case
    victim, _, stream = damaged_stream(messages, bursts, data)
    stream += PAD
    others = [message for burst in bursts for message in burst[1]]  # other meters' whole messages
    lost = [message for message in expected if message not in others][victim]
    assume(expected.count(lost) == 1)
    expected_out = list(expected)
    expected_out.remove(lost)
    assert MeterReader().read(stream) == decoded(expected_out)
