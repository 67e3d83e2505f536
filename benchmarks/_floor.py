"""The floor: the least work Python can do per frame, the bar amshan's speed is measured against.

Reader: find the opening flag, take the length from the frame format field, slice the frame, one crcmod call
over it (the FCS residue), and nothing else: no HCS, no format-type check, no octet stuffing, no abort
sequence, no hunt-mode bookkeeping, no frame objects.  It assumes every frame carries its own opening and
closing flag, as the meters measured here send them.

Decoder: skip LLC, data-notification tag, invoke id and date-time, then walk the A-XDR items left to right
into a dict keyed by item position: no names, no OBIS lookups, no scaling, no date-time parsing, no checks.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Optional

import crcmod

_x25 = crcmod.mkCrcFun(0x11021, rev=True, initCrc=0x0000, xorOut=0xFFFF)
# crcmod's function is a Python wrapper around its C routine: the floor calls the routine itself, register
# preset to 0xFFFF; over a frame that ends with its own correct FCS the register ends at 0xF0B8.
_, _TABLE, _C_CRC = _x25.__defaults__ or (None, None, None)
if not isinstance(_C_CRC, type(len)):  # pure-Python crcmod: its function, as the same register value

    def _C_CRC(data: bytes, register: int, table: Any) -> int:
        return _x25(data) ^ 0xFFFF  # type: ignore[no-any-return]


_FLAG = 0x7E

_U32 = struct.Struct(">I").unpack_from
_I32 = struct.Struct(">i").unpack_from
_U16 = struct.Struct(">H").unpack_from
_I16 = struct.Struct(">h").unpack_from
_I8 = struct.Struct(">b").unpack_from
_U64 = struct.Struct(">Q").unpack_from
_I64 = struct.Struct(">q").unpack_from


class FloorReader:
    """Find, slice and FCS-check whole frames; return the good frames' bytes between the flags."""

    def __init__(self) -> None:
        self._rest = b""

    def read(self, data: bytes) -> List[bytes]:
        buf = self._rest + data if self._rest else data
        out: List[bytes] = []
        find = buf.find
        n = len(buf)
        pos = 0
        while True:
            start = find(_FLAG, pos)
            if start < 0:
                pos = n
                break
            end = start + 1 + (((buf[start + 1] & 0x07) << 8) | buf[start + 2]) if start + 2 < n else n
            if end >= n:
                pos = start
                break
            frame = buf[start + 1 : end]
            if buf[end] == _FLAG and _C_CRC(frame, 0xFFFF, _TABLE) == 0xF0B8:
                out.append(frame)
                pos = end + 1
            else:
                pos = start + 1
        self._rest = buf[pos:]
        return out


class FloorContentReader(FloorReader):
    """The floor reader returning each good frame's information field (what the content protocol passes)."""

    def read(self, data: bytes) -> List[bytes]:  # type: ignore[override]
        out = []
        for frame in FloorReader.read(self, data):
            pos = 2  # after the 2-byte frame format: destination address, its last byte has bit 0 set
            while not frame[pos] & 1:
                pos += 1
            pos += 1  # source address, the same way
            while not frame[pos] & 1:
                pos += 1
            out.append(frame[pos + 4 : -2])  # skip control (1) and HCS (2); drop the FCS
        return out


def decode(content: bytes) -> Optional[Dict[int, Any]]:
    """Walk the A-XDR items of an unencrypted data-notification into {position: raw value}."""
    tag = content[8]  # LLC (3) + 0F + invoke id (4), then the date-time: 09 0C .., 00, or bare 0C ..
    pos = 9 if tag == 0 else (10 + content[9] if tag == 0x09 else 9 + tag)
    out: Dict[int, Any] = {}
    n = len(content)
    i = 0
    while pos < n:  # an if-chain in order of frequency measured faster than a dispatch dict
        tag = content[pos]
        if tag == 0x06:  # double-long-unsigned
            out[i] = _U32(content, pos + 1)[0]
            pos += 5
        elif tag == 0x02 or tag == 0x01:  # structure / array: count, then the items in line
            pos += 2
            continue
        elif tag == 0x09 or tag == 0x0A:  # octet-string / visible-string
            length = content[pos + 1]
            out[i] = content[pos + 2 : pos + 2 + length]
            pos += 2 + length
        elif tag == 0x16 or tag == 0x11:  # enum / unsigned
            out[i] = content[pos + 1]
            pos += 2
        elif tag == 0x0F:  # integer (scaler)
            out[i] = _I8(content, pos + 1)[0]
            pos += 2
        elif tag == 0x12:  # long-unsigned
            out[i] = _U16(content, pos + 1)[0]
            pos += 3
        elif tag == 0x10:  # long
            out[i] = _I16(content, pos + 1)[0]
            pos += 3
        elif tag == 0x05:  # double-long
            out[i] = _I32(content, pos + 1)[0]
            pos += 5
        elif tag == 0x15:  # long64-unsigned
            out[i] = _U64(content, pos + 1)[0]
            pos += 9
        elif tag == 0x14:  # long64
            out[i] = _I64(content, pos + 1)[0]
            pos += 9
        else:  # null-data and anything unexpected: one byte
            pos += 1
        i += 1
    return out


def pipeline(chunks: List[bytes]) -> int:
    """Bytes -> dicts with the floor reader and decoder; return how many dicts were made."""
    reader = FloorContentReader()
    read = reader.read
    made = 0
    for chunk in chunks:
        for content in read(chunk):
            if decode(content):
                made += 1
    return made


def sink() -> Callable[[bytes], Any]:
    """Return the floor content reader's ``read`` (for the memory test)."""
    return FloorContentReader().read
