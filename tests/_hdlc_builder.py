"""Test-only HDLC frame builder: wraps an information field in a type-3 frame with HCS, FCS and flags."""

from __future__ import annotations

from typing import Iterator, Tuple

import crcmod.predefined

# CRC-16/X-25 (HDLC's FCS and HCS, ISO/IEC 13239) from crcmod's catalogue rather than amshan's own code;
# the two octets go on the wire least significant first.
_X25 = crcmod.predefined.mkCrcFun("x-25")


def check_octets(data: bytes) -> bytes:
    """Return the two check octets (HCS or FCS) covering data, in wire order."""
    return bytes(_X25(data).to_bytes(2, "little"))


def header_length(frame: bytes) -> int:
    """Return how many octets of a frame (between its flags) precede the HCS: format, addresses, control."""
    ends = [at for at in range(2, len(frame)) if frame[at] & 1][:2]  # bit 0 ends each address
    return ends[1] + 2


def bad_header_variants(frame: bytes) -> Iterator[Tuple[str, bytes]]:
    """Yield the frame with one header bit flipped (control, then each HCS octet), the FCS recomputed."""
    control = header_length(frame) - 1
    for place, at in (("control", control), ("HCS low", control + 1), ("HCS high", control + 2)):
        for bit in (0, 7):
            damaged = bytearray(frame[:-2])
            damaged[at] ^= 1 << bit
            yield f"{place} bit {bit}", bytes(damaged) + check_octets(bytes(damaged))


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
    body = header + check_octets(header) + information if information else header
    return b"\x7e" + body + check_octets(body) + b"\x7e"
