"""The one exception type that amshan's decoders raise."""

from __future__ import annotations


class DecodeError(ValueError):
    """Bytes that do not decode: the message says what was expected, what was found and where."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        """Keep the byte offset (when known) next to the message that also states it."""
        super().__init__(message if offset is None else f"{message} at offset {offset}")
        self.offset = offset
