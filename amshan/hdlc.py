"""Sans-IO HDLC frame reader for meter customer ports (IEC 62056-46 frame format type 3, as used on HAN).

Frames are delimited by the length in their frame format field, not by the flags: HAN meters send 0x7E
and 0x7D unescaped inside frames. A candidate frame starts at a flag; its header check sequence (HCS) is
checked as soon as the header has arrived, so a corrupted length never makes the reader wait for, or
swallow, the frames that follow. After a rejected candidate the reader resumes at the next flag after that
candidate's opening flag.

The guarantee, whatever the chunking: a frame whose octets stand intact between two flags (its own, or
shared with a neighbour) comes out valid exactly once, in order, from the read() that delivers its closing
flag, whatever garbage or broken frames surround it; no other octets come out valid, barring a CRC-16
collision (tests/test_mutations.py).
"""

from __future__ import annotations

import logging
import re
from typing import Callable, Optional

from amshan._ratelimit import LogLimiter
from amshan.fastframecheck import (
    GOOD_REGISTER,
    GOOD_RESIDUE,
    INIT_REGISTER,
    crc16_x25,
    register_routine,
    register_table,
)
from amshan.framing import Verdict as _Verdict

_LOGGER = logging.getLogger(__name__)

FLAG_SEQUENCE = 0x7E
CONTROL_ESCAPE = 0x7D
_FLAG = b"\x7e"
_ESCAPE = b"\x7d"
_FRAME_FORMAT_TYPE_3 = 0xA
# Shortest frame: format (2) + destination (1) + source (1) + control (1) + FCS (2).
_MIN_FRAME_LENGTH = 7
_MAX_ADDRESS_LENGTH = 4
_ESCAPED_OCTET = re.compile(rb"\x7d(.)", re.DOTALL)
_FLAG_RUN = re.compile(rb"\x7e+")
#: The LLC header opening every message a meter pushes over HDLC: destination LSAP 0xE6, source LSAP 0xE7
#: (a response), quality 0x00 (GB9 section 8.3.2).
LLC_HEADER = b"\xe6\xe7\x00"
_HEADER_KEY_LENGTH = 10
_MAX_CHECKED_HEADERS = 64
_MAX_BROKEN = 16  # meters whose broken message's remaining segments the assembler drops


def _address_end(data: bytes, position: int, end: int) -> int:
    """Return the index after the address at ``position`` (an octet with bit 0 set ends it).

    Returns -1 when the address is longer than four octets and -2 when ``end`` comes before its last octet.
    """
    if position < end and data[position] & 1:  # the common one-octet address
        return position + 1
    stop = min(position + _MAX_ADDRESS_LENGTH, end)
    while position < stop and not data[position] & 1:
        position += 1
    if position >= end:
        return -2
    if position == stop:
        return -1
    return position + 1


def _control_position(data: bytes, start: int, end: int) -> int:
    """Return the control field's index for a frame whose format field is at ``start``.

    Returns -1 when an address is longer than four octets and -2 when ``end`` comes before the control field.
    """
    source = _address_end(data, start + 2, end)  # the destination address ends where the source starts
    if source < 0:  # pragma: no mutate (equivalent: an address ends at index 3 or later, never at 0)
        return source
    control = _address_end(data, source, end)
    if control < 0:  # pragma: no mutate (equivalent: an address ends at index 4 or later, never at 0)
        return control
    return control if control < end else -2


class HdlcFrameHeader:
    """The header fields of an HDLC frame, parsed on demand; a field is None until its bytes are present."""

    def __init__(self, frame: HdlcFrame) -> None:
        """Bind the header to its frame."""
        self._frame = frame

    def update(self) -> None:
        """Do nothing: fields are computed from the frame's current bytes (kept for the 2021.12.1 API)."""

    @property
    def frame_format(self) -> Optional[int]:
        """Return the 16-bit frame format field."""
        data = self._frame.frame_data
        return data[0] << 8 | data[1] if len(data) >= 2 else None

    @property
    def frame_format_type(self) -> Optional[int]:
        """Return the frame format type (0xA for type 3) once the format field is complete."""
        data = self._frame.frame_data
        return data[0] >> 4 if len(data) >= 2 else None

    @property
    def segmentation(self) -> Optional[bool]:
        """Return the segmentation bit (set on every segment but the last) once the format field is read."""
        data = self._frame.frame_data
        return bool(data[0] & 0x08) if len(data) >= 2 else None

    @property
    def frame_length(self) -> Optional[int]:
        """Return the frame length from the format field: the octets between the flags."""
        data = self._frame.frame_data
        return (data[0] & 0x07) << 8 | data[1] if len(data) >= 2 else None

    def _source_span(self) -> tuple[int, int]:
        """Return where the source address starts and ends; each negative while its address is incomplete."""
        data = self._frame.frame_data
        start = _address_end(data, 2, len(data))
        if start < 0:  # pragma: no mutate (equivalent: an address ends at index 3 or later, never at 0)
            return start, start
        return start, _address_end(data, start, len(data))

    @property
    def destination_address(self) -> Optional[bytes]:
        """Return the destination address octets as soon as its last octet is there."""
        start, _ = self._source_span()
        return self._frame.frame_data[2:start] if start >= 0 else None

    @property
    def source_address(self) -> Optional[bytes]:
        """Return the source address octets as soon as its last octet is there."""
        start, end = self._source_span()
        return self._frame.frame_data[start:end] if end >= 0 else None

    @property
    def control(self) -> Optional[int]:
        """Return the control field."""
        control = self._frame.control_position
        return self._frame.frame_data[control] if control >= 0 else None

    @property
    def header_check_sequence(self) -> Optional[int]:
        """Return the HCS as its two octets read in wire order (None when the frame is too short)."""
        control = self._frame.control_position
        data = self._frame.frame_data
        if control < 0 or len(data) < control + 3:
            return None
        return data[control + 1] << 8 | data[control + 2]

    @property
    def information_position(self) -> Optional[int]:
        """Return where the information field starts (after control and HCS) once both addresses are read."""
        _, end = self._source_span()
        return end + 3 if end >= 0 else None


_ALL_CHECKS_GOOD = (True, True, True)
# Verdicts other than VALID: only a VALID verdict's closing flag and control indices are ever used.
_INCOMPLETE = (_Verdict.INCOMPLETE, 0, 0)  # pragma: no mutate (equivalent: its indices are unused)
_IDLE = (_Verdict.IDLE, 0, 0)  # pragma: no mutate (equivalent: its indices are unused)
_NOT_A_FRAME = (_Verdict.NOT_A_FRAME, 0, 0)  # pragma: no mutate (equivalent: its indices are unused)
_INVALID = (_Verdict.INVALID, 0, 0)  # pragma: no mutate (equivalent: its indices are unused)


class HdlcFrame:
    """One HDLC frame: the octets between its flags, with lazily computed header and checks."""

    __slots__ = ("_checks", "_control", "_data", "_valid")

    MAX_FRAME_LENGTH: int = 0x7FF

    def __init__(self, frame_data: bytes = b"") -> None:
        """Wrap the octets between the flags (unescaped)."""
        self._data = bytes(frame_data)
        self._control: Optional[int] = None
        self._checks: Optional[tuple[bool, bool, bool]] = None
        self._valid: Optional[bool] = None

    def __len__(self) -> int:
        """Return the number of octets between the flags."""
        return len(self._data)

    def __repr__(self) -> str:
        """Show the frame's bytes and verdict."""
        return f"HdlcFrame({self._data.hex()}, valid={self.is_valid})"

    def append(self, byte: int) -> None:
        """Append one octet (the 2021.12.1 way of building a frame)."""
        self._data += bytes((byte,))
        self._control = None
        self._checks = None
        self._valid = None

    @property
    def frame_data(self) -> bytes:
        """Return the octets between the flags, unescaped."""
        return self._data

    @property
    def header(self) -> HdlcFrameHeader:
        """Return the frame's header fields."""
        return HdlcFrameHeader(self)

    @property
    def control_position(self) -> int:
        """Return the control field's index, or a negative number when the addresses are incomplete or bad."""
        if self._control is None:
            self._control = _control_position(self._data, 0, len(self._data))
        return self._control

    def _compute_checks(self) -> tuple[bool, bool, bool]:
        """Return (HCS good, FCS good, length as the header says) for this frame's bytes."""
        if self._checks is None:
            data = self._data
            length = len(data)
            control = self.control_position
            fcs_good = length >= 3 and crc16_x25(data) == GOOD_RESIDUE
            length_good = length >= 2 and (data[0] & 0x07) << 8 | data[1] == length
            if control < 0:  # pragma: no mutate (equivalent: a control field is at index 4 or later, never 0)
                hcs_good = False
            elif length == control + 3:  # no information field: the frame carries only an FCS
                hcs_good = True
            else:
                hcs_good = length >= control + 5 and crc16_x25(data[: control + 3]) == GOOD_RESIDUE
            self._checks = (hcs_good, fcs_good, length_good)
        return self._checks

    @property
    def is_good_ffc(self) -> bool:
        """Return True when the frame check sequence (FCS) is good."""
        return self._compute_checks()[1]

    @property
    def is_good_hcs(self) -> bool:
        """Return True when the header check sequence is good, or the frame carries no HCS."""
        return self._compute_checks()[0]

    @property
    def is_expected_length(self) -> bool:
        """Return True when the frame is as long as its format field says."""
        return self._compute_checks()[2]

    @property
    def is_valid(self) -> bool:
        """Return True when format type, length, HCS and FCS are all good."""
        if self._valid is None:
            hcs_good, fcs_good, length_good = self._compute_checks()
            self._valid = hcs_good and fcs_good and length_good and self._data[0] >> 4 == _FRAME_FORMAT_TYPE_3
        return self._valid

    @property
    def frame_check_sequence(self) -> Optional[int]:
        """Return the FCS as its two octets read in wire order."""
        data = self._data
        return data[-2] << 8 | data[-1] if len(data) >= _MIN_FRAME_LENGTH else None

    @property
    def information(self) -> Optional[bytes]:
        """Return the information field, or None when the frame has none."""
        control = self.control_position
        if control < 0 or len(self._data) < control + 5:
            return None
        return self._data[control + 3 : -2]


class HdlcFrameReader:
    """Sans-IO reader turning bytes in any chunking into HDLC frames, in linear time and bounded memory."""

    CONTROL_ESCAPE: int = CONTROL_ESCAPE
    FLAG_SEQUENCE: int = FLAG_SEQUENCE

    def __init__(self, use_octet_stuffing: bool = False, use_abort_sequence: bool = False) -> None:
        """Create a reader; octet stuffing (RFC 1662) and the abort sequence 7D 7E are off on HAN ports."""
        self._use_octet_stuffing = use_octet_stuffing
        self._use_abort_sequence = use_abort_sequence
        self._buffer = b""
        # The buffer index from which to look past an incomplete candidate (0 and 1 alike: see its use).
        self._lookahead = 0  # pragma: no mutate (equivalent: 1 is no later than any candidate's flag + 1)
        self._gap = 0  # buffer index from which the bytes outside valid frames are not yet passed on
        # Meters repeat a few headers: the first octets of a frame whose header (format, addresses, control,
        # HCS) all lie within them and passed, mapped to the control field's offset.
        self._checked_headers: dict[bytes, int] = {}
        self.discarded_bytes = 0

    @property
    def unescape_next(self) -> bool:
        """Return True when the buffered data ends inside an escape sequence (octet stuffing)."""
        return self._use_octet_stuffing and self._buffer.endswith(_ESCAPE)

    @property
    def buffered_bytes(self) -> int:
        """Return how many bytes are held while a frame is incomplete (at most one frame plus a chunk)."""
        return len(self._buffer)

    @property
    def is_in_hunt_mode(self) -> bool:
        """Return True while no frame has started (no opening flag is buffered)."""
        return not self._buffer

    def read(self, data: bytes) -> list[HdlcFrame]:
        """Read more bytes and return the frames they complete: valid ones and, for diagnosis, failed ones."""
        # No bytes come out without other_bytes (None would be as false as False).
        return self._read(data, False)  # type: ignore[return-value]  # pragma: no mutate (equivalent: None)

    def read_interleaved(self, data: bytes) -> list[HdlcFrame | bytes]:
        """Read like read(), with the bytes outside valid frames in stream order between the frames.

        A reader of several transports passes those bytes on to its other framers, so nothing inside a
        valid HDLC frame is taken for another transport's frame (octet stuffing is not supported here).
        """
        return self._read(data, True)

    def _read(self, data: bytes, other_bytes: bool) -> list[HdlcFrame | bytes]:
        """Cut the buffered bytes into frames; with other_bytes, put the bytes between valid frames in too."""
        buffer = self._buffer + data  # bytes, whatever buffer type data is (data itself when nothing is held)
        if self._use_octet_stuffing:
            return list(self._read_stuffed(buffer))
        frames: list[HdlcFrame | bytes] = []
        size = len(buffer)
        find = buffer.find
        checked_headers = self._checked_headers
        new_frame = object.__new__
        gap = self._gap
        position = 0
        while True:
            if position >= size or buffer[position] != FLAG_SEQUENCE:  # hunt for an opening flag
                flag = find(_FLAG, position)
                if flag < 0:  # pragma: no mutate (equivalent: the octet at position is no flag: never 0)
                    self.discarded_bytes += size - position
                    position = size
                    break
                self.discarded_bytes += flag - position
                position = flag
            start = position + 1
            control_offset = checked_headers.get(buffer[start : start + _HEADER_KEY_LENGTH])
            if control_offset is not None:  # fast path: a header seen before; only the FCS and flag remain
                end = start + ((buffer[start] & 0x07) << 8 | buffer[start + 1])
                if end >= size:  # its frame is incomplete: wait, unless a later frame proves it truncated
                    if not self._has_complete_frame_after(buffer, position, size):
                        break
                    position = self._reject(buffer, position, frames)
                    self._lookahead = 0  # pragma: no mutate (equivalent: 1, as in __init__)
                    continue
                frame_data = buffer[start:end]
                if (
                    buffer[end] != FLAG_SEQUENCE
                    or register_routine(frame_data, INIT_REGISTER, register_table) != GOOD_REGISTER
                ):
                    position = self._reject(buffer, position, frames)
                    self._lookahead = 0  # pragma: no mutate (equivalent: 1, as in __init__)
                    continue
            else:
                verdict, end, control_offset = self._evaluate(buffer, position, size)
                if verdict is _Verdict.IDLE:  # a run of flags (it starts at position): its last opens a frame
                    position = _FLAG_RUN.match(buffer, position).end() - 1  # type: ignore[union-attr]
                    continue
                if verdict is _Verdict.NOT_A_FRAME:
                    self.discarded_bytes += 1
                    position += 1
                    continue
                if verdict is _Verdict.INCOMPLETE and not self._has_complete_frame_after(
                    buffer, position, size
                ):
                    break
                if verdict is not _Verdict.VALID:
                    position = self._reject(buffer, position, frames)
                    self._lookahead = 0  # pragma: no mutate (equivalent: 1, as in __init__)
                    continue
                frame_data = buffer[start:end]
            if other_bytes:
                if position > gap:
                    frames.append(buffer[gap:position])
                gap = end + 1
            # A frame every check passed, built without re-checking: its caches filled (None would recompute).
            frame = new_frame(HdlcFrame)
            frame._data = frame_data
            frame._control = control_offset  # pragma: no mutate (equivalent: a cache)
            frame._checks = _ALL_CHECKS_GOOD  # pragma: no mutate (equivalent: a cache)
            frame._valid = True  # pragma: no mutate (equivalent: a cache)
            frames.append(frame)
            self._lookahead = 0  # pragma: no mutate (equivalent: 1, as in __init__)
            # The closing flag may open the next frame; when a flag of its own follows, start there.
            position = end + 1 if end + 1 < size and buffer[end + 1] == FLAG_SEQUENCE else end
        if other_bytes and position > gap:
            frames.append(buffer[gap:position])
        self._gap = max(0, gap - position)
        self._buffer = buffer[position:]
        self._lookahead -= position
        return frames

    def _evaluate(self, buffer: bytes, position: int, size: int) -> tuple[_Verdict, int, int]:
        """Judge the candidate at the flag at ``position``: (verdict, closing flag index, control offset)."""
        if position + 2 >= size:
            return _INCOMPLETE
        first = buffer[position + 1]
        if first == FLAG_SEQUENCE:
            return _IDLE
        if first >> 4 != _FRAME_FORMAT_TYPE_3:
            return _NOT_A_FRAME
        start = position + 1
        length = (first & 0x07) << 8 | buffer[start + 1]
        end = start + length  # index of the closing flag
        if length < _MIN_FRAME_LENGTH:
            return _INVALID
        # The header is checked in full: the read loop has looked the memoised headers up already.
        control = _control_position(buffer, start, min(end, size))
        if control == -2:
            return _INVALID if end <= size else _INCOMPLETE
        header_end = control + 1
        # Equivalent mutants of the next line: of "control < 0" (a control field is at index 4 or later, and
        # with a negative one the HCS check below covers at most one octet, never checking good) and of the
        # HCS-plus-one-octet bound (no HCS's second octet starts the FCS of what precedes it).
        if control < 0 or end < header_end + 2 or header_end + 2 < end < header_end + 4:  # pragma: no mutate
            return _INVALID
        # Without an information field the HCS is the FCS: checking it twice changes nothing (>=, - 2).
        if end > header_end + 2:  # pragma: no mutate (equivalent: see above)
            if header_end + 2 > size:
                return _INCOMPLETE
            key = buffer[start : start + _HEADER_KEY_LENGTH]
            header = buffer[start : header_end + 2]
            if register_routine(header, INIT_REGISTER, register_table) != GOOD_REGISTER:
                return _INVALID
            if header_end + 2 - start <= len(key) == _HEADER_KEY_LENGTH:
                if len(self._checked_headers) >= _MAX_CHECKED_HEADERS:
                    self._checked_headers.clear()
                self._checked_headers[key] = control - start
        if end >= size:
            return _INCOMPLETE
        if (
            buffer[end] == FLAG_SEQUENCE
            and register_routine(buffer[start:end], INIT_REGISTER, register_table) == GOOD_REGISTER
        ):
            return _Verdict.VALID, end, control - start
        return _INVALID

    def _has_complete_frame_after(self, buffer: bytes, position: int, size: int) -> bool:
        """Return True when a complete valid frame starts after the incomplete candidate at ``position``.

        Such a frame proves the candidate truncated, so the frames behind a truncated frame are never held
        back. Flags already judged for this candidate are not judged again.
        """
        # The octet after the candidate's flag is its format octet or the buffer's last octet: no valid frame
        # can start there, so position + 2 would do too.
        flag = max(position + 1, self._lookahead)  # pragma: no mutate (equivalent: position + 2, see above)
        first_incomplete: Optional[int] = None
        while True:
            flag = buffer.find(_FLAG, flag)
            if flag < 0:  # pragma: no mutate (equivalent: the search starts after the candidate, never at 0)
                self._lookahead = size if first_incomplete is None else first_incomplete
                return False
            verdict = self._evaluate(buffer, flag, size)[0]
            if verdict is _Verdict.VALID:
                return True
            if verdict is _Verdict.INCOMPLETE and first_incomplete is None:
                first_incomplete = flag
            flag += 1

    def _reject(self, buffer: bytes, position: int, frames: list[HdlcFrame | bytes]) -> int:
        """Return a failed candidate as an invalid frame; resume at the next flag after its opening flag."""
        # The octet after a candidate's flag is its format octet, never a flag: position + 2 would do too.
        following = buffer.find(_FLAG, position + 1)  # pragma: no mutate (equivalent: + 2, see above)
        if following < 0:  # pragma: no mutate (equivalent: the search starts after the candidate, never at 0)
            following = len(buffer)
        elif self._use_abort_sequence and buffer[following - 1] == CONTROL_ESCAPE:
            self.discarded_bytes += following - position  # aborted: counted, not logged (garbage repeats)
            return following
        frames.append(HdlcFrame(buffer[position + 1 : following]))
        return following

    def _read_stuffed(self, buffer: bytes) -> list[HdlcFrame]:
        """Read with octet stuffing: frames are delimited by flags and 7D escapes the next octet."""
        frames: list[HdlcFrame] = []
        find = buffer.find
        opening = find(_FLAG)
        if opening < 0:
            self.discarded_bytes += len(buffer)
            self._buffer = b""
            return frames
        self.discarded_bytes += opening
        while True:
            closing = find(_FLAG, opening + 1)
            if closing < 0:  # pragma: no mutate (equivalent: the search starts after a flag, never at 0)
                break
            segment = buffer[opening + 1 : closing]
            opening = closing
            if not segment:
                continue
            if segment.endswith(_ESCAPE):
                if not self._use_abort_sequence:
                    frames.append(HdlcFrame(segment))
                else:
                    self.discarded_bytes += len(segment)
                continue
            frames.append(HdlcFrame(_ESCAPED_OCTET.sub(lambda match: bytes((match[1][0] ^ 0x20,)), segment)))
        rest = buffer[opening:]
        if len(rest) > 2 * (HdlcFrame.MAX_FRAME_LENGTH + 1):  # no closing flag within any legal frame
            self.discarded_bytes += len(rest)
            rest = b""
        self._buffer = rest
        return frames


class HdlcMessageAssembler:
    """Sans-IO reassembly of messages split over HDLC segments (segmentation bit set on all but the last).

    A message starts with the LLC header E6 E7 00, which only the first segment carries. Between segments,
    anything that is not a frame of the sequence's meter is noise and leaves the sequence intact: an invalid
    frame without a valid header (its HCS fails, or it is too short to have one) or with other addresses, and
    a whole frame of another meter (delivered on its own when it is a whole message). A real loss drops the
    sequence: a frame with the sequence's header that fails its FCS, or a segment that cannot follow (a new
    first segment). With ``is_whole`` (``amshan.dlms.is_whole_apdu``, as the library's protocols and readers
    pass it), a reassembled message is delivered only when its APDU accounts for exactly its bytes, so a
    lost middle segment never yields a spliced message. After a drop, segments are dropped until the next
    message starts, so the rest of a broken message is never passed on as, or joined to, another message.
    Every dropped message is counted in ``dropped_messages``.
    """

    MAX_MESSAGE_LENGTH = 0x10000

    def __init__(self, is_whole: Optional[Callable[[bytes], bool]] = None) -> None:
        """Start with no partial message; is_whole judges a reassembled message (None: not judged)."""
        self._parts: list[bytes] = []
        self._size: int  # the octets in _parts and the sequence's address octets, set when a message starts
        self._addresses: bytes
        # Meters (by address octets) whose broken message's remaining segments are dropped until their next
        # message starts, each with whether that loss is counted yet; bounded, as garbage can name meters.
        self._broken: dict[bytes, bool] = {}
        self._is_whole = is_whole
        self._warnings = LogLimiter()
        self.dropped_messages = 0
        self.noise_frames = 0  # frames that were no segment of the sequence's meter, ignored

    def add(self, frame: HdlcFrame) -> Optional[bytes]:
        """Feed one frame; return a whole message's information bytes when it completes."""
        # The common case, a whole message in one frame with nothing pending, ahead of the general path.
        if (
            not (self._parts or self._broken)
            and frame.is_valid
            and not frame.frame_data[0] & 0x08  # pragma: no mutate (equivalent: the general path agrees)
        ):
            return frame.information or None
        data = frame.frame_data
        if not frame.is_valid:
            if not self._has_header(frame):
                self.noise_frames += 1  # line noise: nothing is lost
                return None
            addresses = data[2 : frame.control_position]
            if self._parts and addresses != self._addresses:
                self.noise_frames += 1  # another meter's broken frame: this sequence goes on
            else:
                self._drop("a segment failed its frame check")
            # A frame of that meter was lost: drop the rest of its message.
            self._break(addresses, counted=False)  # pragma: no mutate (equivalent: counted=None is falsy too)
            return None
        information = frame.information or b""
        is_last = not data[0] & 0x08
        addresses = data[2 : frame.control_position]
        starts_message = information.startswith(LLC_HEADER)
        if self._parts:
            if addresses != self._addresses:  # another meter's frame: this sequence goes on
                self.noise_frames += 1
                if not starts_message:
                    self._continue_broken(addresses, is_last)
                    return None
                if is_last:
                    return information  # a whole message of another meter
                self.dropped_messages += 1  # another meter's segmented message cannot be joined now
                self._break(addresses, counted=True)
                return None
            if starts_message:
                self._drop("a new message started before the last segment of the previous one")
            else:
                self._parts.append(information)
                self._size += len(information)
                if is_last:
                    return self._finish()
                if self._size > self.MAX_MESSAGE_LENGTH:
                    self._drop(f"the message grew beyond {self.MAX_MESSAGE_LENGTH} octets")
                return None
        if not starts_message and (addresses in self._broken or not is_last):
            self._continue_broken(addresses, is_last)
            return None
        self._broken.pop(addresses, None)
        if is_last:
            return information or None
        self._parts = [information]
        self._size = len(information)
        self._addresses = addresses
        return None

    def _continue_broken(self, addresses: bytes, is_last: bool) -> None:
        """Drop a segment of a message whose start was lost, counting that message once."""
        if not self._broken.get(addresses):
            self.dropped_messages += 1
        if is_last:  # the end of the message whose start was lost
            self._broken.pop(addresses, None)
        else:
            self._break(addresses, counted=True)
        _LOGGER.debug("Dropped a segment of a message whose first segment was lost")

    def _break(self, addresses: bytes, counted: bool) -> None:
        """Drop the rest of a meter's message until its next message starts (loss counted or not yet)."""
        if addresses not in self._broken and len(self._broken) >= _MAX_BROKEN:
            self._broken.clear()
        self._broken[addresses] = counted or bool(self._broken.get(addresses))

    @staticmethod
    def _has_header(frame: HdlcFrame) -> bool:
        """Tell whether an invalid frame has a valid header (HCS), so a meter's frame was lost."""
        return frame.information is not None and frame.is_good_hcs

    def _finish(self) -> Optional[bytes]:
        """Join the segments of a complete sequence; the message, or None when its APDU does not fit it."""
        message = b"".join(self._parts)
        segments = len(self._parts)
        self._parts.clear()
        if self._is_whole is None or self._is_whole(message):
            return message
        self.dropped_messages += 1
        if self._warnings.ready():
            _LOGGER.warning(
                "Dropped a segmented message of %d segments: its APDU does not account for exactly its %d "
                "octets (a segment was lost)%s",
                segments,
                len(message),
                self._warnings.held_back_note("more drops not logged"),
            )
        return None

    def _drop(self, reason: str) -> None:
        """Forget a partial message, saying why (its remaining segments are dropped by _break)."""
        if self._parts:
            self.dropped_messages += 1
            self._break(self._addresses, counted=True)
            if self._warnings.ready():
                _LOGGER.warning(
                    "Dropped a segmented message after %d segments: %s%s",
                    len(self._parts),
                    reason,
                    self._warnings.held_back_note("more drops not logged"),
                )
        self._parts.clear()
