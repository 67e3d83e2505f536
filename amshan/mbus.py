"""Sans-IO wired M-Bus long frames (EN 13757-2) carrying DLMS, as Austrian and Polish meters push them.

``68 L L 68 | C | A | CI | STSAP | DTSAP | data | CS | 16`` (han-spec §4): L counts C through the last data
byte, CS is their sum mod 256.  The CI field segments a message: bit 0x10 marks the last segment, the low
nibble numbers the segments from 0; the segments' data parts joined are the APDU (no LLC header).  Sagemcom
T210-D writes L mod 256 for frames longer than 255 octets, so a length that fails is tried again plus 256.
"""

from __future__ import annotations

import logging
from typing import List, NamedTuple, Optional, Tuple

from amshan._errors import DecodeError
from amshan._ratelimit import LogLimiter
from amshan.framing import Verdict

__all__ = ["MAX_FRAME_LENGTH", "MbusFrame", "MbusFramer", "MbusMessageAssembler", "parse_frame"]

_LOGGER = logging.getLogger(__name__)

_START = 0x68
_STOP = 0x16
_OVERHEAD = 6  # 68 L L 68 before C, CS 16 after the data
_MIN_LENGTH = 5  # C, A, CI, STSAP, DTSAP
_WRAP = 0x100
MAX_FRAME_LENGTH = _OVERHEAD + 0xFF + _WRAP
_CI_LAST_SEGMENT = 0x10
_CI_SEGMENT_NUMBER = 0x0F
_CI_HEADER_BITS = 0xE0  # a DLMS wrapper segment carries no M-Bus data header


class MbusFrame(NamedTuple):
    """The fields of one M-Bus long frame of the DLMS wrapper."""

    control: int
    address: int
    control_information: int
    source_tsap: int
    destination_tsap: int
    data: bytes

    @property
    def is_last_segment(self) -> bool:
        """Return True when the CI field marks the last (or only) segment of a message."""
        return bool(self.control_information & _CI_LAST_SEGMENT)

    @property
    def segment_number(self) -> int:
        """Return the segment number (the CI field's low nibble)."""
        return self.control_information & _CI_SEGMENT_NUMBER


def _checks(buffer: bytes, position: int, length: int, size: int) -> Optional[bool]:
    """Return whether the frame of the given L is whole and sound there, or None if it has not all arrived."""
    end = position + 4 + length
    if end + 2 > size:
        return None
    return buffer[end + 1] == _STOP and sum(buffer[position + 4 : end]) & 0xFF == buffer[end]


class MbusFramer:
    """M-Bus long-frame framing for ``amshan.framing.FrameScanner``."""

    name = "mbus"
    start_bytes = b"\x68"

    def judge(self, buffer: bytes, position: int, size: int) -> Tuple[Verdict, int, int, int]:
        """Return (verdict, start, end, resume) for the 0x68 at position; the frame includes 68 and 16."""
        if position + 4 > size:  # judge what has arrived of 68 L L 68
            head = buffer[position + 1 : position + 4]
            if (len(head) >= 2 and head[0] != head[1]) or (len(head) == 3 and head[2] != _START):
                return Verdict.NOT_A_FRAME, position, position, position + 1
            return Verdict.INCOMPLETE, position, position, position + 1
        length = buffer[position + 1]
        if buffer[position + 2] != length or buffer[position + 3] != _START:
            return Verdict.NOT_A_FRAME, position, position, position + 1
        sound = _checks(buffer, position, length, size) if length >= _MIN_LENGTH else False
        if sound:
            end = position + _OVERHEAD + length
            return Verdict.VALID, position, end, end
        if sound is None:
            return Verdict.INCOMPLETE, position, position + _OVERHEAD + length, position + 1
        wrapped = _checks(buffer, position, length + _WRAP, size)  # Sagemcom: L written mod 256
        if wrapped:
            end = position + _OVERHEAD + length + _WRAP
            return Verdict.VALID, position, end, end
        if wrapped is None:
            return Verdict.INCOMPLETE, position, position + _OVERHEAD + length + _WRAP, position + 1
        return Verdict.INVALID, position, position + _OVERHEAD + length, position + 1


def parse_frame(frame: bytes) -> MbusFrame:
    """Split a whole long frame (68 ... 16, checks already passed) into its fields."""
    if len(frame) < _OVERHEAD + _MIN_LENGTH:
        raise DecodeError(f"expected an M-Bus long frame of at least 11 octets, found {len(frame)}", 0)
    return MbusFrame(frame[4], frame[5], frame[6], frame[7], frame[8], frame[9:-2])


class MbusMessageAssembler:
    """Join the data of consecutive segments (CI numbers 0, 1, ... up to the last) into one message.

    A missing, damaged or out-of-order segment drops the message; segments are then ignored until a
    segment 0 starts the next one.
    """

    MAX_MESSAGE_LENGTH = 0x10000

    def __init__(self) -> None:
        """Start with no partial message."""
        self._parts: List[bytes] = []
        self._size = 0
        self._next = 0
        self._route: Tuple[int, int, int] = (0, 0, 0)
        self._warnings = LogLimiter()
        self.dropped_messages = 0

    def add(self, frame: MbusFrame) -> Optional[bytes]:
        """Feed one valid frame; return a whole message's data when its last segment arrives."""
        route = (frame.address, frame.source_tsap, frame.destination_tsap)
        if frame.control_information & _CI_HEADER_BITS:
            self.drop(f"a frame with CI 0x{frame.control_information:02x} is no DLMS wrapper segment")
            return None
        number = frame.segment_number
        if number == 0:
            self.drop("a new message started before the last segment of the previous one")
            self._parts = [frame.data]
            self._size = len(frame.data)
            self._route = route
        elif self._parts and number == self._next and route == self._route:
            self._parts.append(frame.data)
            self._size += len(frame.data)
        else:
            self.drop(f"segment {number} arrived out of order")
            return None
        self._next = (number + 1) & _CI_SEGMENT_NUMBER
        if frame.is_last_segment:
            message = b"".join(self._parts)
            self._parts = []
            self._size = 0
            return message
        if self._size > self.MAX_MESSAGE_LENGTH:
            self.drop(f"the message grew beyond {self.MAX_MESSAGE_LENGTH} octets")
        return None

    def drop(self, reason: str) -> None:
        """Forget a partial message (a damaged frame, a missing segment), saying why (rate-limited)."""
        if not self._parts:
            return
        self.dropped_messages += 1
        if self._warnings.ready():
            _LOGGER.warning(
                "Dropped an M-Bus message after %d segments: %s%s",
                len(self._parts),
                reason,
                self._warnings.held_back_note("more drops not logged"),
            )
        self._parts = []
        self._size = 0
