"""The checksums, computed by crcmod's C extension: CRC-16/X-25 (HDLC frames, headers), CRC-16/ARC (P1)."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Callable, Union

import crcmod

_LOGGER = logging.getLogger(__name__)

BytesLike = Union[bytes, bytearray, memoryview]

#: CRC-16/X-25 of ``data`` as sent on the wire (least significant byte first); the one CRC of HDLC.
crc16_x25: Callable[..., int] = crcmod.mkCrcFun(0x11021, rev=True, initCrc=0x0000, xorOut=0xFFFF)

#: CRC-16/ARC (poly 0x8005 reflected, init 0, no final XOR): the P1 telegram checksum over '/' .. '!'.
crc16_arc: Callable[..., int] = crcmod.mkCrcFun(0x18005, rev=True, initCrc=0x0000, xorOut=0x0000)

#: What ``crc16_x25`` gives over a whole frame including a correct FCS (the residue 0xF0B8, complemented).
GOOD_RESIDUE = 0x0F47

#: The raw CRC register: preset 0xFFFF, and 0xF0B8 after a frame that ends with its own correct FCS.
INIT_REGISTER = 0xFFFF
GOOD_REGISTER = 0xF0B8


def _register_routine() -> tuple[Callable[[BytesLike, int, Any], int], Any]:
    """Return (routine, table) computing the raw register without crcmod's per-call Python wrapper.

    ``routine(data, INIT_REGISTER, table)`` is crcmod's own C routine when it checks out against the
    CRC-16/X-25 check value, else a function of the same shape over ``crc16_x25``.
    """
    defaults: tuple[Any, ...] = getattr(crc16_x25, "__defaults__", None) or ()
    if len(defaults) == 3:
        _, table, routine = defaults
        with contextlib.suppress(Exception):
            if routine(b"123456789", INIT_REGISTER, table) ^ 0xFFFF == 0x906E:
                return routine, table

    def wrapped(data: BytesLike, register: int, table: Any) -> int:
        """Compute the register through crcmod's public function."""
        return crc16_x25(data, register ^ 0xFFFF) ^ 0xFFFF

    return wrapped, None


#: The hot-path form of the one CRC: ``register_routine(data, INIT_REGISTER, register_table)``.
register_routine, register_table = _register_routine()

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
