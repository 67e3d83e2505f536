"""Every amshan decoder by name, and the one check that bytes either decode or raise DecodeError inside them.

Imported by the tests and by the fuzz harness (tests/fuzz), so it needs nothing but amshan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Optional

from amshan import DecodeError, aidon, generic, iskra, kaifa, kamstrup, landisgyr
from amshan.autodecoder import AutoDecoder
from amshan.dlms import BlockTransferAssembler, decode_data_notification
from amshan.fastframecheck import crc16_x25
from amshan.hdlc import HdlcFrameReader, HdlcMessageAssembler
from amshan.reader import MeterReader

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "aidon": aidon.decode_frame_content,
    "kaifa": kaifa.decode_frame_content,
    "kamstrup": kamstrup.decode_frame_content,
    "iskra": iskra.decode_frame_content,
    "landisgyr": landisgyr.decode_frame_content,
    "generic": generic.decode_frame_content,
    "dlms": decode_data_notification,
}
VALUE_TYPES = (str, int, float, datetime)


def assert_contained(content: bytes, decoder: Optional[AutoDecoder] = None) -> dict[str, DecodeError]:
    """Check that content decodes or raises DecodeError (offset inside it) everywhere; return the errors.

    A meter module's dictionary holds plain values and a datetime clock; AutoDecoder (the one given, which may
    have cached shapes, else a new one) gives a dictionary or None.
    """
    errors: dict[str, DecodeError] = {}
    for name, decode in DECODERS.items():
        try:
            decoded = decode(content)
        except DecodeError as error:
            assert error.offset is not None and 0 <= error.offset <= len(content), f"{name}: {error}"
            errors[name] = error
            continue
        if isinstance(decoded, dict):
            assert all(isinstance(v, VALUE_TYPES) for v in decoded.values()), f"{name}: {decoded}"
            assert isinstance(decoded.get("meter_datetime", datetime.min), datetime), f"{name}: {decoded}"
    result = (decoder if decoder is not None else AutoDecoder()).decode_frame_content(content)
    assert result is None or isinstance(result, dict)
    assert_read_alike(content)
    return errors


def hdlc_frame(information: bytes) -> bytes:
    """Wrap an information field in one type-3 HDLC frame (addresses 41 / 08 83, UI), flags included."""
    header = (0xA000 | (len(information) + 10)).to_bytes(2, "big") + b"\x41\x08\x83\x13"
    body = header + crc16_x25(header).to_bytes(2, "little") + information
    return b"\x7e" + body + crc16_x25(body).to_bytes(2, "little") + b"\x7e"


def assert_read_alike(content: bytes) -> None:
    """Check that MeterReader gives for content in an HDLC frame what a fresh AutoDecoder gives for it.

    It reads the frame whole and in 7-byte chunks, never raising; a block-transfer block may give more.
    """
    if not 0 < len(content) <= 2000:
        return
    stream = hdlc_frame(content)
    whole = MeterReader().read(stream)
    reader = MeterReader()
    assert whole == [d for i in range(0, len(stream), 7) for d in reader.read(stream[i : i + 7])]
    if b"\xe0" not in content[:4]:  # no block-transfer block: exactly AutoDecoder's result
        expected = AutoDecoder().decode_frame_content(content)
        assert whole == ([] if expected is None else [expected])


def hdlc_pipeline(stream: bytes) -> list[dict[str, Any]]:
    """Decode a stream through the HDLC layers one by one: the reference MeterReader must agree with."""
    reader, assembler, decoder = HdlcFrameReader(), HdlcMessageAssembler(), AutoDecoder()
    blocks = BlockTransferAssembler()
    results = []
    for frame in reader.read(stream):
        content = assembler.add(frame)
        if not frame.is_valid:
            blocks.drop("a damaged frame")
        if content:
            content = blocks.add(content)
        if content:
            decoded = decoder.decode_frame_content(content)
            if decoded is not None:
                results.append(decoded)
    return results
