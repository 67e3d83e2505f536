"""Every amshan decoder by name, and the one check that bytes either decode or raise DecodeError inside them.

Imported by the tests and by the fuzz harness (tests/fuzz), so it needs nothing but amshan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Optional

from amshan import DecodeError, aidon, generic, iskra, kaifa, kamstrup, landisgyr
from amshan.autodecoder import AutoDecoder
from amshan.dlms import decode_data_notification

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
    return errors
