"""Decode any supported meter's data-notification into the common dictionary, never raising."""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, List, Optional

from amshan import aidon, generic, kaifa, kamstrup
from amshan._errors import DecodeError
from amshan.dlms import read_notification_header
from amshan.generic import DecodedMessage, ItemValue, MeterItem, message_to_dict

__all__ = ["DECODERS", "AutoDecoder", "MeterItem"]

_LOGGER = logging.getLogger(__name__)

DECODERS: Dict[str, Callable[[bytes], DecodedMessage]] = {
    aidon.NAME: aidon.decode_message,
    kaifa.NAME: kaifa.decode_message,
    kamstrup.NAME: kamstrup.decode_message,
    generic.NAME: generic.decode_message,
}
"""Every decoder by the name AutoDecoder reports for it."""

_WARNING_INTERVAL = 60.0


def _candidates(frame_content: bytes) -> tuple[str, ...]:
    """Pick the decoders that fit the body's shape (tag of the body and of its first element)."""
    pos = read_notification_header(frame_content).body_offset
    tag = frame_content[pos : pos + 1]
    if tag == b"\x01":
        return (aidon.NAME, generic.NAME)
    if tag == b"\x02":
        first = frame_content[pos + 2 : pos + 3]
        if first == b"\x0a":
            return (kamstrup.NAME, generic.NAME)
        if first in (b"\x09", b"\x06"):
            return (kaifa.NAME, generic.NAME)
        return (generic.NAME,)
    return ()


class AutoDecoder:
    """Decode frame content of any supported meter; the decoder that succeeded last is tried first."""

    def __init__(self) -> None:
        """Start without a previous decoder."""
        self._previous: Optional[str] = None
        self._last_warning = -_WARNING_INTERVAL
        self._suppressed_warnings = 0

    @property
    def previous_success_decoder(self) -> Optional[str]:
        """Return the name of the decoder that last succeeded ("Aidon", "Kaifa", "Kamstrup", "Generic")."""
        return self._previous

    def decode_message(self, frame_content: bytes) -> Optional[DecodedMessage]:
        """Decode an information field (LLC header optional) into manufacturer, date-time, items; or None."""
        try:
            content = frame_content if isinstance(frame_content, bytes) else bytes(frame_content)
            previous = self._previous
            if previous is not None:
                try:
                    return DECODERS[previous](content)
                except DecodeError:
                    pass
            errors: List[str] = []
            for name in _candidates(content):
                if name == previous:
                    continue
                try:
                    message = DECODERS[name](content)
                except DecodeError as error:
                    errors.append(f"{name}: {error}")
                    continue
                self._previous = name
                return message
            self._warn("no decoder fits the frame content (%s)", "; ".join(errors) or "unknown body")
        except DecodeError as error:
            self._warn("frame content does not decode: %s", str(error))
        except Exception:  # a decoder bug must not take the caller down; report it (rate-limited)
            if self._may_warn():
                _LOGGER.exception("decoder failure on frame content %s", bytes(frame_content).hex())
        return None

    def decode_items(self, frame_content: bytes) -> Optional[List[MeterItem]]:
        """Decode an information field into its items (OBIS code, name, scaled value, unit), or None."""
        message = self.decode_message(frame_content)
        return None if message is None else message.items

    def decode_frame_content(self, frame_content: bytes) -> Optional[Dict[str, ItemValue]]:
        """Decode an information field (LLC header optional) into the dictionary; None if nothing fits."""
        message = self.decode_message(frame_content)
        return None if message is None else message_to_dict(message)

    def _may_warn(self) -> bool:
        """Allow one warning per interval; count the ones held back."""
        now = time.monotonic()
        if now - self._last_warning < _WARNING_INTERVAL:
            self._suppressed_warnings += 1
            return False
        self._last_warning = now
        return True

    def _warn(self, message: str, detail: str) -> None:
        """Log a rate-limited warning about frame content that garbage input can trigger."""
        if self._may_warn():
            suppressed, self._suppressed_warnings = self._suppressed_warnings, 0
            _LOGGER.warning(message + " (%d similar warnings suppressed)", detail, suppressed)
