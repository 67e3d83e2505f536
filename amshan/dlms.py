"""LLC header and DLMS APDUs of push messages: the data-notification, and a dispatch for the others."""

from __future__ import annotations

import logging
import struct
from datetime import datetime
from enum import IntEnum
from typing import Callable, NamedTuple

from amshan._errors import DecodeError
from amshan._ratelimit import LogLimiter
from amshan.axdr import AxdrValue, CosemDateTime, decode_date_time, read_data, read_date_time, read_length
from amshan.hdlc import LLC_HEADER  # the LLC sublayer rides on HDLC; M-Bus and P1 transports carry none

__all__ = [
    "LLC_HEADER",
    "ApduTag",
    "BlockTransferAssembler",
    "DataNotification",
    "LongInvokeIdAndPriority",
    "NotificationHeader",
    "apdu_offset",
    "decode_data_notification",
    "read_notification_header",
]


_LOGGER = logging.getLogger(__name__)


class ApduTag(IntEnum):
    """The first byte of the DLMS APDUs a meter may push."""

    DATA_NOTIFICATION = 0x0F
    EVENT_NOTIFICATION = 0xC2
    GENERAL_GLO_CIPHERING = 0xDB
    GENERAL_DED_CIPHERING = 0xDC
    GENERAL_CIPHERING = 0xDD
    GENERAL_BLOCK_TRANSFER = 0xE0


class LongInvokeIdAndPriority(NamedTuple):
    """The Unsigned32 in front of a data-notification: id in bits 0-23, flags in bits 28-31."""

    invoke_id: int
    self_descriptive: bool
    break_on_error: bool
    confirmed: bool
    high_priority: bool

    @classmethod
    def from_int(cls, value: int) -> LongInvokeIdAndPriority:
        """Split the raw Unsigned32 into its fields."""
        return cls(
            value & 0xFFFFFF,
            bool(value & 0x10000000),
            bool(value & 0x20000000),
            bool(value & 0x40000000),
            bool(value & 0x80000000),
        )


class NotificationHeader(NamedTuple):
    """What precedes a data-notification's body: the raw invoke-id word, the date-time, the body offset."""

    long_invoke_id_and_priority: int
    date_time: datetime | None  # None when absent ("00") or not an instant
    date_time_offset: int  # offset of the 12 date-time bytes, -1 when absent
    body_offset: int


class DataNotification(NamedTuple):
    """A whole data-notification, its body as Python values (arrays and structures are lists)."""

    long_invoke_id_and_priority: LongInvokeIdAndPriority
    date_time: CosemDateTime | None
    body: AxdrValue


def apdu_offset(frame_content: bytes) -> int:
    """Return where the APDU starts: after an LLC header (E6 E7 00 / E6 E6 00) when there is one, else 0."""
    if frame_content[:1] != b"\xe6":
        return 0
    if frame_content[1:2] not in (b"\xe7", b"\xe6") or frame_content[2:3] != b"\x00":
        raise DecodeError(f"expected LLC header e6 e7 00, found {frame_content[:3].hex(' ')}", 0)
    return 3


_INVOKE_ID = struct.Struct(">I")  # long-invoke-id-and-priority, an Unsigned32


def _read_data_notification_header(data: bytes, pos: int) -> NotificationHeader:
    """Parse a data-notification (tag at pos) up to its body: invoke id, date-time in any form seen."""
    if pos + 6 > len(data):
        raise DecodeError(
            f"expected a data-notification header of at least 6 bytes, found {len(data) - pos}", pos
        )
    invoke: int = _INVOKE_ID.unpack_from(data, pos + 1)[0]
    pos += 5
    form = data[pos]
    if form == 0x00:  # zero-length octet-string: no date-time (Aidon, Kaifa SE)
        return NotificationHeader(invoke, None, -1, pos + 1)
    if form in (0x0C, 0x19):  # octet-string length 12 without the Data tag (Kamstrup), or date-time tag
        dt_pos = pos + 1
    elif form == 0x09 and data[pos + 1 : pos + 2] == b"\x0c":  # octet-string with the Data tag (Kaifa)
        dt_pos = pos + 2
    else:
        raise DecodeError(
            f"expected a date-time field (00, 0c + 12 bytes, 09 0c + 12 bytes or 19 + 12 bytes), "
            f"found {data[pos : pos + 2].hex(' ')}",
            pos,
        )
    return NotificationHeader(invoke, decode_date_time(data, dt_pos), dt_pos, dt_pos + 12)


def _unsupported(description: str) -> Callable[[bytes, int], NotificationHeader]:
    """Make the handler of an APDU this library recognises but does not decode (yet)."""

    def handler(data: bytes, pos: int) -> NotificationHeader:
        raise DecodeError(f"expected a data-notification APDU (0x0f), found {description}", pos)

    return handler


_APDU_HANDLERS: dict[int, Callable[[bytes, int], NotificationHeader]] = {
    ApduTag.DATA_NOTIFICATION: _read_data_notification_header,
    ApduTag.GENERAL_GLO_CIPHERING: _unsupported(
        "a general-glo-ciphering APDU (0xdb), which AutoDecoder decrypts with the meter's keys"
    ),
    ApduTag.GENERAL_DED_CIPHERING: _unsupported(
        "a general-ded-ciphering APDU (0xdc), which AutoDecoder decrypts with the meter's keys"
    ),
    ApduTag.GENERAL_CIPHERING: _unsupported(
        "an encrypted general-ciphering APDU (0xdd): decryption is not supported"
    ),
    ApduTag.GENERAL_BLOCK_TRANSFER: _unsupported(
        "a general-block-transfer APDU (0xe0): block reassembly is not supported"
    ),
    ApduTag.EVENT_NOTIFICATION: _unsupported("an event-notification APDU (0xc2), which is not supported"),
}
"""APDU tag -> parser returning the data-notification header (ciphering and GBT slot in here)."""


def read_notification_header(frame_content: bytes) -> NotificationHeader:
    """Parse LLC header (optional) and APDU of an information field up to the notification body."""
    pos = apdu_offset(frame_content)
    if pos >= len(frame_content):
        raise DecodeError("expected an APDU tag, found end of data", pos)
    tag = frame_content[pos]
    handler = _APDU_HANDLERS.get(tag)
    if handler is None:
        raise DecodeError(f"expected a data-notification APDU (0x0f), found tag 0x{tag:02x}", pos)
    return handler(frame_content, pos)


def decode_data_notification(frame_content: bytes) -> DataNotification:
    """Decode a whole data-notification (LLC header optional) into invoke id, date-time and body values."""
    header = read_notification_header(frame_content)
    body, end = read_data(frame_content, header.body_offset)
    if end != len(frame_content):
        raise DecodeError(
            f"expected the APDU to end after its body, found {len(frame_content) - end} more bytes", end
        )
    return DataNotification(
        LongInvokeIdAndPriority.from_int(header.long_invoke_id_and_priority),
        None if header.date_time_offset == -1 else read_date_time(frame_content, header.date_time_offset),
        body,
    )


_LAST_BLOCK = 0x80
_BLOCK_NUMBER = struct.Struct(">H")


class BlockTransferAssembler:
    """Join general-block-transfer (0xE0) blocks of consecutive messages into the APDU they carry.

    ``E0 | block-control | block-number (2) | acknowledged (2) | block-data (A-XDR length + octets)``
    (han-spec §3.5): block-control bit 0x80 marks the last block; the LLC header, if any, comes only before
    block 1.  Blocks are joined in block-number order from 1; a missing, damaged or out-of-order block drops
    the sequence, and a new block 1 starts a new one.
    """

    MAX_MESSAGE_LENGTH = 0x10000

    def __init__(self) -> None:
        """Start with no partial sequence."""
        self._data = bytearray()  # the block data joined so far
        self._blocks = 0  # the blocks joined so far (0: no sequence); the next one must be number _blocks + 1
        self._warnings = LogLimiter()
        self.dropped_messages = 0

    @property
    def pending(self) -> bool:
        """Tell whether a sequence has started and awaits its last block."""
        return self._blocks > 0

    def add(self, content: bytes) -> bytes | None:
        """Feed one message's content: itself when it is no block, the APDU after a last block, else None."""
        pos = 3 if content[:3] == LLC_HEADER else 0
        if content[pos : pos + 1] != b"\xe0":
            self.drop("a message that is no block arrived")
            return content
        try:
            if pos + 6 > len(content):
                raise DecodeError("expected a block-transfer header of 6 octets, found end of data", pos)
            length, data = read_length(content, pos + 6)
            if data + length != len(content):
                found = len(content) - data
                raise DecodeError(f"expected {length} octets of block data, found {found}", data)
        except DecodeError as error:
            self.drop(f"a damaged block: {error}")
            return None
        number: int = _BLOCK_NUMBER.unpack_from(content, pos + 2)[0]
        if number == 1:
            self.drop("a new block 1 arrived before the last block")
        elif number != self._blocks + 1:
            self.drop(f"block {number} arrived out of order")
            return None
        self._data += content[data:]
        self._blocks = number
        if content[pos + 1] & _LAST_BLOCK:
            apdu = bytes(self._data)
            self._data = bytearray()
            self._blocks = 0
            return apdu
        if len(self._data) > self.MAX_MESSAGE_LENGTH:
            self.drop(f"the blocks grew beyond {self.MAX_MESSAGE_LENGTH} octets")
        return None

    def drop(self, reason: str) -> None:
        """Forget a partial sequence (a damaged or missing block), saying why (rate-limited)."""
        if not self._blocks:
            return
        self.dropped_messages += 1
        if self._warnings.ready():
            _LOGGER.warning(
                "Dropped a block-transfer sequence after %d blocks: %s%s",
                self._blocks,
                reason,
                self._warnings.held_back_note("more drops not logged"),
            )
        self._data = bytearray()
        self._blocks = 0


def is_whole_apdu(information: bytes) -> bool:
    """Tell whether an information field's APDU accounts for exactly its bytes (LLC header optional).

    A data-notification must parse to its last byte (and a body array hold elements of one type, as A-XDR
    arrays do); a ciphered APDU (general-glo/ded-ciphering) and a general-block-transfer block must be as
    long as their length field says.  A message reassembled from segments that lost one (or got one too
    many) fails this, barring a coincidence of the bytes either side of the gap; so does any APDU this
    library cannot measure.
    """
    try:
        pos = apdu_offset(information)
        tag = information[pos]
        if tag == ApduTag.DATA_NOTIFICATION:
            header = _read_data_notification_header(information, pos)
            body, end = read_data(information, header.body_offset)
            if information[header.body_offset] == 0x01 and isinstance(body, list):  # an array: one type
                return end == len(information) and len({type(element) for element in body}) <= 1
            return end == len(information)
        if tag in (ApduTag.GENERAL_GLO_CIPHERING, ApduTag.GENERAL_DED_CIPHERING):
            title, pos = read_length(information, pos + 1)
            length, pos = read_length(information, pos + title)
        elif tag == ApduTag.GENERAL_BLOCK_TRANSFER:  # block-control, block-number, block-number-ack
            length, pos = read_length(information, pos + 6)
        else:
            return False
    except (DecodeError, IndexError):
        return False
    return pos + length == len(information)
