"""Test-only ENCODER of the transports a meter wraps its APDUs in: HDLC (with segmentation), DLMS
general-block-transfer in HDLC frames, wired M-Bus long frames (CI segmentation, Sagemcom L wrap).

Written from han-spec §2, §3.5 and §4, independent of amshan's readers.
"""

from __future__ import annotations

from typing import List

from _cipher_encoder import axdr_length
from _hdlc_builder import build_frame

LLC = b"\xe6\xe7\x00"


def pieces(data: bytes, size: int) -> List[bytes]:
    """Cut data into pieces of at most size bytes (at least one piece)."""
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def hdlc(apdu: bytes, segment: int = 2000) -> bytes:
    """The APDU behind the LLC header in HDLC frames of `segment` octets at most, S bit on all but last."""
    parts = pieces(LLC + apdu, segment)
    return b"".join(build_frame(part, segmented=i < len(parts) - 1) for i, part in enumerate(parts))


def block_transfer(apdu: bytes, block: int) -> bytes:
    """The APDU in general-block-transfer blocks of `block` octets, an HDLC frame each, LLC before block 1."""
    parts = pieces(apdu, block)
    frames = []
    for number, part in enumerate(parts, start=1):
        control = 0x40 | (0x80 if number == len(parts) else 0)
        gbt = bytes([0xE0, control]) + number.to_bytes(2, "big") + b"\x00\x00" + axdr_length(len(part)) + part
        information = (LLC if number == 1 else b"") + gbt
        frames.append(build_frame(information, destination=b"\xce\xff", source=b"\x03"))
    return b"".join(frames)


def mbus_frame(data: bytes, ci: int, control: int = 0x53, address: int = 0xFF) -> bytes:
    """One long frame 68 L L 68 C A CI 01 67 data CS 16; L written mod 256 (the Sagemcom wrap) when longer."""
    body = bytes([control, address, ci, 0x01, 0x67]) + data
    length = len(body) & 0xFF
    return bytes([0x68, length, length, 0x68]) + body + bytes([sum(body) & 0xFF, 0x16])


def mbus(apdu: bytes, segment: int = 250) -> bytes:
    """The APDU in M-Bus long frames of `segment` data octets: CI 0x00, 0x01, ..., 0x1n on the last."""
    parts = pieces(apdu, segment)
    return b"".join(
        mbus_frame(part, (i & 0x0F) | (0x10 if i == len(parts) - 1 else 0)) for i, part in enumerate(parts)
    )
