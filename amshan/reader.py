"""One sans-IO entry point for a meter's byte stream: bytes in any chunking in, decoded dictionaries out.

``MeterReader`` keeps all state of one stream (partial frames, segments); one process holds one reader per
meter.  It never raises: noise and damaged messages produce nothing and are only counted in ``stats``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List

from amshan._ratelimit import LogLimiter
from amshan.autodecoder import AutoDecoder
from amshan.dlms import is_whole_apdu
from amshan.hdlc import HdlcFrameReader, HdlcMessageAssembler
from amshan.items import ItemValue

__all__ = ["MeterReader", "ReaderStats"]

_LOGGER = logging.getLogger(__name__)


@dataclass
class ReaderStats:
    """What a MeterReader has seen so far, for diagnosis (probe, health pages, summaries)."""

    bytes_read: int = 0
    valid_frames: int = 0  # frames (of any transport) whose checks passed
    invalid_frames: int = 0  # frame candidates that failed a check
    messages: int = 0  # whole messages reassembled
    decoded: int = 0  # messages that gave a dictionary
    undecodable: int = 0  # whole messages no decoder took
    transports: Dict[str, int] = field(default_factory=dict)  # valid frames per transport ("hdlc", ...)
    last_decoder: str | None = None  # the decoder that took the last decoded message ("Aidon", ...)


class MeterReader:
    """Read one meter's byte stream of any supported transport into decoded dictionaries; never raises."""

    def __init__(self) -> None:
        """Start a reader with empty buffers for one stream."""
        self._hdlc = HdlcFrameReader()
        self._assembler = HdlcMessageAssembler(is_whole_apdu)
        self._decoder = AutoDecoder()
        self._errors = LogLimiter()
        self.stats = ReaderStats()

    @property
    def decoder(self) -> AutoDecoder:
        """Return the AutoDecoder this reader decodes messages with."""
        return self._decoder

    def read(self, chunk: bytes) -> List[Dict[str, ItemValue]]:
        """Feed the next bytes of the stream; return the dictionaries of the messages they complete."""
        try:
            return self._read(bytes(chunk))
        except Exception:  # a bug must not take the caller's stream down: report it (rate-limited), go on
            if self._errors.ready():
                _LOGGER.exception("MeterReader failed on a chunk of the stream")
            return []

    def _read(self, chunk: bytes) -> List[Dict[str, ItemValue]]:
        """Cut the chunk into HDLC frames, reassemble and decode the messages they complete."""
        stats = self.stats
        stats.bytes_read += len(chunk)
        results: List[Dict[str, ItemValue]] = []
        for frame in self._hdlc.read(chunk):
            if not frame.is_valid:
                stats.invalid_frames += 1
                self._assembler.add(frame)
                continue
            stats.valid_frames += 1
            stats.transports["hdlc"] = stats.transports.get("hdlc", 0) + 1
            content = self._assembler.add(frame)
            if content:
                self._decode(content, results)
        return results

    def _decode(self, content: bytes, results: List[Dict[str, ItemValue]]) -> None:
        """Decode one whole message's content into results, counting what happened."""
        stats = self.stats
        stats.messages += 1
        decoded = self._decoder.decode_frame_content(content)
        if decoded is None:
            stats.undecodable += 1
            return
        stats.decoded += 1
        stats.last_decoder = self._decoder.previous_success_decoder
        results.append(decoded)
