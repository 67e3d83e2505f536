"""CRC-16/X-25, the HDLC frame and header check sequence, computed by crcmod's C extension."""

from __future__ import annotations

import logging
import sys
from typing import Callable, Union

import crcmod

_LOGGER = logging.getLogger(__name__)

BytesLike = Union[bytes, bytearray, memoryview]

#: CRC-16/X-25 of ``data`` as sent on the wire (least significant byte first); the one CRC of amshan.
crc16_x25: Callable[..., int] = crcmod.mkCrcFun(0x11021, rev=True, initCrc=0x0000, xorOut=0xFFFF)

#: What ``crc16_x25`` gives over a whole frame including a correct FCS (the residue 0xF0B8, complemented).
GOOD_RESIDUE = 0x0F47

USING_C_EXTENSION: bool = bool(getattr(sys.modules.get("crcmod.crcmod"), "_usingExtension", False))
if not USING_C_EXTENSION:
    _LOGGER.warning(
        "crcmod is running without its C extension: frame checks are about 30x slower. "
        "Install crcmod-plus (binary wheels) instead of crcmod."
    )


class FastFrameCheckSequence16:
    """Incremental FCS-16 (RFC 1662) kept for the amshan 2021.12.1 API; computed with crcmod."""

    INIT_FCS_16 = 0xFFFF
    GOOD_FCS_16 = 0xF0B8

    def __init__(self) -> None:
        """Start a new checksum."""
        self._crc_value = self.INIT_FCS_16

    def update(self, byte: int) -> int:
        """Add one byte and return the running (uncomplemented) FCS register."""
        self._crc_value = crc16_x25(bytes((byte,)), self._crc_value ^ 0xFFFF) ^ 0xFFFF
        return self._crc_value

    @property
    def is_good(self) -> bool:
        """Return True when the bytes added so far end with their own correct FCS."""
        return self._crc_value == self.GOOD_FCS_16

    @property
    def checksum(self) -> int:
        """Return the FCS of the bytes added so far."""
        return self._crc_value ^ 0xFFFF

    @staticmethod
    def compute_checksum(data: BytesLike, start: int, length: int) -> int:
        """Return the FCS of ``length`` bytes of ``data`` from ``start``."""
        return crc16_x25(memoryview(data)[start : start + length])
