"""Test-only HDLC frame builder: wraps an information field in a type-3 frame with HCS, FCS and flags."""

from __future__ import annotations

from amshan.fastframecheck import crc16_x25


def build_frame(
    information: bytes,
    *,
    segmented: bool = False,
    destination: bytes = b"\x41",
    source: bytes = b"\x08\x83",
    control: int = 0x13,
) -> bytes:
    """Return 7E + frame + 7E; the HCS is present only when there is an information field."""
    header_length = 2 + len(destination) + len(source) + 1
    length = header_length + (2 + len(information) if information else 0) + 2
    frame_format = 0xA000 | (0x0800 if segmented else 0) | length
    header = frame_format.to_bytes(2, "big") + destination + source + bytes((control,))
    body = header + crc16_x25(header).to_bytes(2, "little") + information if information else header
    return b"\x7e" + body + crc16_x25(body).to_bytes(2, "little") + b"\x7e"
