"""The one exception type that amshan's decoders raise, and how its messages show what was found."""

from __future__ import annotations

_SHOWN_LENGTH = 60


class DecodeError(ValueError):
    """Bytes that do not decode: the message says what was expected, what was found and where."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        """Keep the byte offset (when known) next to the message that also states it."""
        super().__init__(message if offset is None else f"{message} at offset {offset}")
        self.offset = offset


def shown(value: object) -> str:
    """Return the repr of a value found in the data, cut to a readable length for an error message."""
    text = repr(value)
    return text if len(text) <= _SHOWN_LENGTH else f"{text[: _SHOWN_LENGTH - 3]}..."
