"""One sans-IO entry point for a meter's byte stream: bytes in any chunking in, decoded dictionaries out.

``MeterReader`` finds the frames of every transport it knows on its own, in stream order: HDLC frames
first (the common case, through the tuned ``HdlcFrameReader``), in the bytes outside them P1 telegrams (text,
through ``P1TelegramReader``: a telegram inside an HDLC frame's data stays that frame's), then, in the bytes
outside those, the frames of the other transports (wired M-Bus long frames, bare authenticated ciphered
APDUs) through one ``FrameScanner``.  It reassembles
messages (HDLC segments, DLMS general-block-transfer, M-Bus segments), decrypts them with the meter's keys
and decodes them.  It keeps all state of one stream (partial frames, segments, invocation counters); one
process holds one reader per meter.  It never raises: noise and damaged or undecryptable messages produce
nothing and are only counted in ``stats``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, NamedTuple, Optional, Union

from amshan._ratelimit import LogLimiter
from amshan.autodecoder import AutoDecoder
from amshan.cipher import CipheredApduFramer, CipherStats
from amshan.dlms import BlockTransferAssembler, is_whole_apdu
from amshan.framing import Framer, FrameScanner
from amshan.hdlc import HdlcFrame, HdlcFrameReader, HdlcMessageAssembler
from amshan.items import ItemValue
from amshan.mbus import MbusFramer, MbusMessageAssembler, parse_frame
from amshan.p1 import P1Parser, P1Telegram, P1TelegramReader

__all__ = ["MeterReader", "ReadFrame", "ReaderStats"]

_LOGGER = logging.getLogger(__name__)
_MAX_FRAME_LENGTH = 0x1000  # the longest any transport's candidate may claim (bounds the buffer)


@dataclass
class ReaderStats:
    """What a MeterReader has seen so far, for diagnosis (probe, health pages, summaries)."""

    bytes_read: int = 0
    valid_frames: int = 0  # frames (of any transport) whose checks passed
    invalid_frames: int = 0  # frame candidates that failed a check
    messages: int = 0  # whole messages reassembled
    decoded: int = 0  # messages that gave a dictionary
    undecodable: int = 0  # whole messages no decoder took (undecryptable ones included)
    transports: Dict[str, int] = field(default_factory=dict)  # valid frames per transport: "hdlc", "mbus"...
    last_decoder: str | None = None  # the decoder that took the last decoded message ("Aidon", "P1", ...)
    ciphering: CipherStats = field(default_factory=CipherStats)  # decrypted, no key, wrong key, bad tag...


class ReadFrame(NamedTuple):
    """A frame of any transport, as ``MeterReader.read_frames`` returns it, with the message it completes."""

    transport: str  # "hdlc", "mbus", "apdu" or "p1"
    frame: Union[HdlcFrame, bytes]  # the HDLC frame, or the octets of an M-Bus frame, a bare APDU, a telegram
    valid: bool  # its checks passed
    message: Optional[bytes]  # the whole message's content (ciphered as received) it completes, else None


class _Transport(NamedTuple):
    """How the reader handles another transport's frames: a valid frame to message content, a damaged one."""

    framer: Framer
    message: Callable[[bytes], Optional[bytes]]  # a valid frame's bytes -> a whole message's content, or None
    damaged: Callable[[bytes], None]  # a candidate that failed its checks (drops what it was part of)


class MeterReader:
    """Read one meter's byte stream of any supported transport into decoded dictionaries; never raises."""

    def __init__(
        self, encryption_key: Optional[bytes] = None, authentication_key: Optional[bytes] = None
    ) -> None:
        """Start a reader with empty buffers for one stream, with the meter's keys (16 bytes each) if any."""
        self._decoder = AutoDecoder(encryption_key=encryption_key, authentication_key=authentication_key)
        self._hdlc_reader = HdlcFrameReader()
        self._hdlc = HdlcMessageAssembler(is_whole_apdu)
        self._blocks = BlockTransferAssembler()
        self._block_addresses = b""  # the HDLC addresses of the meter whose blocks are being joined
        self._mbus = MbusMessageAssembler()
        self._p1 = P1TelegramReader()  # after HDLC: the bytes outside telegrams go on to the scanner
        self._p1_parser = P1Parser()
        # The transports found in the bytes outside HDLC frames and P1 telegrams.
        transports = [_Transport(MbusFramer(), self._mbus_message, self._mbus_damaged)]
        decipherer = self._decoder.decipherer
        if decipherer.checks_tags:  # a bare APDU is told from noise only by its verified tag
            transports.append(_Transport(CipheredApduFramer(decipherer), bytes, self._apdu_damaged))
        self._transports = {transport.framer.name: transport for transport in transports}
        self._scanner = FrameScanner([transport.framer for transport in transports], _MAX_FRAME_LENGTH)
        self._errors = LogLimiter()
        self.stats = ReaderStats(ciphering=self._decoder.cipher_stats)

    @property
    def decoder(self) -> AutoDecoder:
        """Return the AutoDecoder this reader decodes messages with."""
        return self._decoder

    @property
    def discarded_bytes(self) -> int:
        """Return how many bytes were outside every frame of every transport (noise, idle flags)."""
        return self._scanner.discarded_bytes

    @property
    def buffered_bytes(self) -> int:
        """Return how many bytes are held while a frame is incomplete (bounded by the longest frames)."""
        return self._hdlc_reader.buffered_bytes + self._scanner.buffered_bytes + self._p1.buffered_bytes

    def read(self, chunk: bytes) -> List[Dict[str, ItemValue]]:
        """Feed the next bytes of the stream; return the dictionaries of the messages they complete."""
        try:
            return self._read(bytes(chunk), None)
        except Exception:  # a bug must not take the caller's stream down: report it (rate-limited), go on
            if self._errors.ready():
                _LOGGER.exception("MeterReader failed on a chunk of the stream")
            return []

    def read_frames(self, chunk: bytes) -> List[ReadFrame]:
        """Feed the next bytes; return every frame they complete, of any transport, with its message.

        For diagnosis and for callers that decode themselves (``--format frames``, ``obis``): messages are
        reassembled but not decrypted or decoded here.  Never raises.
        """
        frames: List[ReadFrame] = []
        try:
            self._read(bytes(chunk), frames)
        except Exception:
            if self._errors.ready():
                _LOGGER.exception("MeterReader failed on a chunk of the stream")
        return frames

    def _read(self, chunk: bytes, frames: Optional[List[ReadFrame]]) -> List[Dict[str, ItemValue]]:
        """Cut the chunk into telegrams and frames, reassemble and decode; with frames, list those instead."""
        self.stats.bytes_read += len(chunk)
        results: List[Dict[str, ItemValue]] = []
        self._read_hdlc(chunk, results, frames)
        return results

    def _telegram(
        self, telegram: P1Telegram, results: List[Dict[str, ItemValue]], frames: Optional[List[ReadFrame]]
    ) -> None:
        """Parse one P1 telegram whose CRC matched (or was absent) into results (or list it in frames).

        Listed, its frame is the telegram as received and its message the telegram cut at '!' (CRC checked).
        """
        stats = self.stats
        data = telegram.data
        valid = telegram.is_valid
        if not valid:
            stats.invalid_frames += 1
        else:
            stats.valid_frames += 1
            stats.transports["p1"] = stats.transports.get("p1", 0) + 1
        if frames is not None:
            frames.append(ReadFrame("p1", telegram.raw, valid, data if valid else None))
            if valid:
                self._count(1, 0, False)
        elif valid:
            results.append(self._p1_parser.parse(data))
            stats.messages += 1
            stats.decoded += 1
            stats.last_decoder = "P1"

    def _read_hdlc(
        self, chunk: bytes, results: List[Dict[str, ItemValue]], frames: Optional[List[ReadFrame]]
    ) -> None:
        """Cut the chunk into HDLC frames (the rest goes on to _read_other), reassemble and decode."""
        stats = self.stats
        assembler = self._hdlc
        blocks = self._blocks
        decode = self._decoder.decode_frame_content
        valid = messages = decoded_messages = 0
        for item in self._hdlc_reader.read_interleaved(chunk):
            if isinstance(item, bytes):
                self._read_other(item, results, frames)
                continue
            content = assembler.add(item)  # content only from valid frames
            if content and (blocks.pending or b"\xe0" in content[:4]):  # a general-block-transfer block?
                valid += 1
                addresses = item.frame_data[2 : item.control_position]
                if not blocks.pending or addresses == self._block_addresses:  # else another meter's message
                    self._block_addresses = addresses
                    content = blocks.add(content)
                    if not content and frames is not None:
                        frames.append(ReadFrame("hdlc", item, True, None))
                    if not content:
                        continue
            elif content:
                valid += 1
            else:
                if item.is_valid:
                    valid += 1
                else:  # noise or a lost block: block numbers tell a lost block when the next one comes
                    stats.invalid_frames += 1
                if frames is not None:
                    frames.append(ReadFrame("hdlc", item, item.is_valid, None))
                continue
            messages += 1
            if frames is not None:
                frames.append(ReadFrame("hdlc", item, True, content))
                continue
            decoded = decode(content)
            if decoded is not None:
                results.append(decoded)
                decoded_messages += 1
        if valid:
            stats.valid_frames += valid
            stats.transports["hdlc"] = stats.transports.get("hdlc", 0) + valid
        if messages:
            self._count(messages, decoded_messages, frames is None)

    def _read_other(
        self, data: bytes, results: List[Dict[str, ItemValue]], frames: Optional[List[ReadFrame]]
    ) -> None:
        """Find P1 telegrams in bytes outside HDLC frames, then the other transports' frames outside those."""
        for item in self._p1.read_interleaved(data):
            if isinstance(item, bytes):
                self._scan(item, results, frames)
            else:
                self._telegram(item, results, frames)

    def _scan(
        self, data: bytes, results: List[Dict[str, ItemValue]], frames: Optional[List[ReadFrame]]
    ) -> None:
        """Find the frames of the other transports in bytes outside HDLC frames and P1 telegrams; decode."""
        stats = self.stats
        transports = self._transports
        counts = stats.transports
        for framer, frame, valid in self._scanner.read(data):
            transport = transports[framer.name]
            content = None
            if not valid:
                stats.invalid_frames += 1
                transport.damaged(frame)
            else:
                stats.valid_frames += 1
                counts[framer.name] = counts.get(framer.name, 0) + 1
                content = transport.message(frame)
            if frames is not None:
                frames.append(ReadFrame(framer.name, frame, valid, content or None))
                if content:
                    self._count(1, 0, False)
            elif content:
                self._decode(content, results)

    def _mbus_message(self, data: bytes) -> Optional[bytes]:
        """Reassemble M-Bus segments into the APDU they carry."""
        return self._mbus.add(parse_frame(data))

    def _mbus_damaged(self, data: bytes) -> None:
        """Ignore a damaged M-Bus frame: line noise, or a lost segment its successor's number will tell."""

    def _apdu_damaged(self, data: bytes) -> None:
        """Let the decoder count (and name the system title of) a bare APDU whose tag failed."""
        self._decoder.decode_frame_content(data)

    def _decode(self, content: bytes, results: List[Dict[str, ItemValue]]) -> None:
        """Decode one whole message's content into results, counting what happened."""
        decoded = self._decoder.decode_frame_content(content)
        if decoded is not None:
            results.append(decoded)
        self._count(1, 0 if decoded is None else 1, True)

    def _count(self, messages: int, decoded: int, were_decoded: bool) -> None:
        """Count whole messages and, when they were decoded here, how many of them gave a dictionary."""
        stats = self.stats
        stats.messages += messages
        if not were_decoded:
            return
        stats.decoded += decoded
        stats.undecodable += messages - decoded
        if decoded:
            stats.last_decoder = self._decoder.previous_success_decoder
