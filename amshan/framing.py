"""Sans-IO frame hunting over a byte stream that may carry any of several transports (HDLC, M-Bus, ...).

Each transport supplies a ``Framer``: the bytes a frame of it starts with and a ``judge`` that says what the
bytes at a start byte are.  ``FrameScanner`` walks the stream once, hands each candidate to the framer of its
first byte, and returns the frames in stream order; a valid frame consumes its bytes, so nothing inside it is
taken for another frame.  An incomplete candidate is waited for only until its claimed length arrives or a
complete valid frame after it proves it truncated, so memory stays bounded and noise never costs the next
good frame.
"""

from __future__ import annotations

import enum
import re
from typing import List, NamedTuple, Protocol, Sequence, Tuple

__all__ = ["HISTORY", "FrameScanner", "Framer", "ScannedFrame", "Verdict"]

HISTORY = 32
"""Bytes before a candidate that a framer may look back at (they are kept across reads)."""


class Verdict(enum.Enum):
    """What the bytes at a candidate's start byte are."""

    VALID = enum.auto()  # a whole frame whose checks passed
    INVALID = enum.auto()  # looks like a frame of the transport but fails a check
    INCOMPLETE = enum.auto()  # could be a frame; more bytes are needed to tell
    IDLE = enum.auto()  # fill between frames (HDLC flags): skip to the returned position
    NOT_A_FRAME = enum.auto()  # this start byte opens no frame


class Framer(Protocol):
    """One transport's framing, as FrameScanner uses it."""

    name: str  # the transport's name in statistics ("hdlc", "mbus", "apdu", ...)
    start_bytes: bytes  # every byte a frame of this transport can start with

    def judge(self, buffer: bytes, position: int, size: int) -> Tuple[Verdict, int, int, int]:
        """Return (verdict, frame start, frame end, resume position) for the candidate at position.

        Up to ``HISTORY`` bytes of the stream before position are in the buffer, whatever the chunking.
        The frame is ``buffer[start:end]`` (a framer may leave delimiters out); scanning resumes at
        ``resume`` after a valid frame or an idle run.  An invalid candidate's end is where its claimed
        length ends (its bytes are kept for diagnosis only).
        """
        ...


class ScannedFrame(NamedTuple):
    """A frame found in the stream: its transport's framer, its bytes and whether its checks passed."""

    framer: Framer
    data: bytes
    valid: bool


class FrameScanner:
    """Cut a byte stream in any chunking into the frames of several transports, in stream order."""

    def __init__(self, framers: Sequence[Framer], max_frame_length: int) -> None:
        """Hunt for the start bytes of every framer; candidates never claim more than max_frame_length."""
        self._by_byte = {byte: framer for framer in framers for byte in framer.start_bytes}
        self._starts = re.compile(b"[" + b"".join(re.escape(bytes((b,))) for b in self._by_byte) + b"]")
        self._max = max_frame_length
        self._buffer = b""  # up to HISTORY bytes already scanned, then the bytes not scanned yet
        self._scanned = 0  # how many of the buffer's bytes are that history
        self._lookahead = 0  # buffer index from which to look past an incomplete candidate
        self.discarded_bytes = 0

    @property
    def buffered_bytes(self) -> int:
        """Return how many bytes are held while a candidate is incomplete (and a few bytes of history)."""
        return len(self._buffer)

    def read(self, data: bytes) -> List[ScannedFrame]:
        """Read more bytes; return the frames they complete (valid ones, and failed candidates)."""
        buffer = self._buffer + data if self._buffer else bytes(data)
        size = len(buffer)
        frames: List[ScannedFrame] = []
        search = self._starts.search
        by_byte = self._by_byte
        position = self._scanned
        while True:
            found = search(buffer, position)
            if found is None:
                self.discarded_bytes += size - position
                position = size
                break
            self.discarded_bytes += found.start() - position
            position = found.start()
            framer = by_byte[buffer[position]]
            verdict, start, end, resume = framer.judge(buffer, position, size)
            if verdict is Verdict.VALID:
                frames.append(ScannedFrame(framer, buffer[start:end], True))
                position = resume
                self._lookahead = 0
                continue
            if verdict is Verdict.IDLE:
                position = resume
                continue
            if verdict is Verdict.INCOMPLETE:
                if size - position <= self._max and not self._complete_after(buffer, position, size):
                    break
                verdict = Verdict.INVALID
            if verdict is Verdict.INVALID:
                stop = max(min(end, size), position + 1)
                frames.append(ScannedFrame(framer, buffer[position:stop], False))
                self._lookahead = 0
            self.discarded_bytes += 1
            position += 1
        keep = max(0, position - HISTORY)
        self._buffer = buffer[keep:]
        self._scanned = position - keep
        self._lookahead = max(0, self._lookahead - keep)
        return frames

    def _complete_after(self, buffer: bytes, position: int, size: int) -> bool:
        """Return True when a complete valid frame after the incomplete candidate proves it truncated.

        Any transport's frame proves it: a bare APDU inside another transport's frame is none (its framer
        looks at what stands before it).  Candidates already judged for this one are not judged again.
        """
        start = max(position + 1, self._lookahead)
        first_incomplete = -1
        search = self._starts.search
        by_byte = self._by_byte
        while True:
            found = search(buffer, start)
            if found is None:
                self._lookahead = size if first_incomplete < 0 else first_incomplete
                return False
            start = found.start()
            framer = by_byte[buffer[start]]
            verdict = framer.judge(buffer, start, size)[0]
            if verdict is Verdict.VALID:
                return True
            if verdict is Verdict.INCOMPLETE and first_incomplete < 0:
                first_incomplete = start
            start += 1
