"""DLMS ciphering of push messages (sans-IO): general-glo/ded-ciphering APDUs, AES-GCM and AES-CTR.

Layout (Green Book; han-spec §3.4): ``DB|DC, 08, system title (8), length (A-XDR), SC, IC (4), ciphertext
[, tag (12)]``.  The IV is system title || invocation counter.  SC bit 0x10 (A) = authenticated: the last
12 bytes are the GCM tag over AAD = SC || AK; bit 0x20 (E) = encrypted.  Encryption without the tag
(SC 0x20/0x21, or an authenticated message read without AK) is AES-CTR from the counter block IV || 00000002.

Keys are never logged and never put in an exception's text: only system titles and counters are.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from hmac import compare_digest
from typing import Dict, List, NamedTuple, Optional, Tuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from amshan._errors import DecodeError
from amshan._ratelimit import LogLimiter
from amshan.axdr import read_length
from amshan.framing import HISTORY, Verdict
from amshan.hdlc import LLC_HEADER

__all__ = [
    "CIPHERING_TAGS",
    "KEY_LENGTH",
    "SC_AUTHENTICATION",
    "SC_COMPRESSION",
    "SC_ENCRYPTION",
    "TAG_LENGTH",
    "CipherStats",
    "CipheredApdu",
    "CipheredApduFramer",
    "Decipherer",
    "ciphered_apdu_length",
    "describe_system_title",
    "parse_ciphered_apdu",
    "parse_key",
]

_LOGGER = logging.getLogger(__name__)

CIPHERING_TAGS = (0xDB, 0xDC)
"""general-glo-ciphering and general-ded-ciphering: the same layout, the key the meter's."""
SC_AUTHENTICATION = 0x10
SC_ENCRYPTION = 0x20
SC_COMPRESSION = 0x80
TAG_LENGTH = 12
KEY_LENGTH = 16
_SYSTEM_TITLE_LENGTH = 8
_HEADER_LENGTH = 5  # SC + invocation counter
_GCM_TAG_LENGTH = 16  # what AESGCM appends; DLMS sends its first 12 bytes
_MAX_SYSTEM_TITLES = 64  # replay tracking per system title; garbage must not grow it without bound


class CipheredApdu(NamedTuple):
    """A general-glo/ded-ciphering APDU split into its security header, payload and tag."""

    tag: int  # 0xDB or 0xDC
    system_title: bytes
    security_control: int
    invocation_counter: int
    payload: bytes  # the ciphertext (the plaintext when SC has no encryption bit), without the tag
    auth_tag: bytes  # the 12-byte tag when SC has the authentication bit, else b""
    end: int  # offset just after the APDU
    iv: bytes  # the 12-byte GCM initialisation vector: system title || invocation counter

    @property
    def authenticated(self) -> bool:
        """Return True when the security control says a tag follows the payload."""
        return bool(self.security_control & SC_AUTHENTICATION)

    @property
    def encrypted(self) -> bool:
        """Return True when the security control says the payload is encrypted."""
        return bool(self.security_control & SC_ENCRYPTION)


def _read_header(data: bytes, pos: int) -> Tuple[bytes, int, int]:
    """Read tag, system title and length of a ciphered APDU at pos; return (system title, length, next)."""
    if data[pos : pos + 1] not in (b"\xdb", b"\xdc"):
        found = data[pos : pos + 1].hex() or "end of data"
        raise DecodeError(f"expected a ciphering APDU tag (0xdb, 0xdc), found {found}", pos)
    if pos + 1 >= len(data):
        raise DecodeError("expected the system title length, found end of data", pos + 1)
    if data[pos + 1] != _SYSTEM_TITLE_LENGTH:
        raise DecodeError(f"expected a system title of 8 bytes, found length {data[pos + 1]}", pos + 1)
    title_end = pos + 2 + _SYSTEM_TITLE_LENGTH
    if title_end > len(data):
        raise DecodeError("expected an 8-byte system title, found end of data", len(data))
    length, body = read_length(data, title_end)
    return data[pos + 2 : title_end], length, body


def ciphered_apdu_length(data: bytes, pos: int = 0) -> int:
    """Return the whole length of the ciphered APDU at pos from its header (DecodeError if it has none)."""
    _, length, body = _read_header(data, pos)
    return body - pos + length


def parse_ciphered_apdu(data: bytes, pos: int = 0) -> CipheredApdu:
    """Split the ciphered APDU at pos into security header, payload and tag; DecodeError if malformed."""
    system_title, length, body = _read_header(data, pos)
    end = body + length
    if end > len(data):
        raise DecodeError(f"expected {length} ciphered bytes, found {len(data) - body}", body)
    if length < _HEADER_LENGTH:
        raise DecodeError(f"expected at least SC and invocation counter, found length {length}", body)
    security_control = data[body]
    if security_control & SC_COMPRESSION:
        raise DecodeError(f"expected no compression, found security control 0x{security_control:02x}", body)
    payload_end = end - TAG_LENGTH if security_control & SC_AUTHENTICATION else end
    if payload_end < body + _HEADER_LENGTH:
        raise DecodeError(f"expected a {TAG_LENGTH}-byte authentication tag, found length {length}", body)
    counter = data[body + 1 : body + _HEADER_LENGTH]
    return CipheredApdu(
        data[pos],
        system_title,
        security_control,
        int.from_bytes(counter, "big"),
        data[body + _HEADER_LENGTH : payload_end],
        data[payload_end:end],
        end,
        system_title + counter,
    )


def describe_system_title(system_title: bytes) -> str:
    """Return a system title as hex with its manufacturer flag (first 3 bytes as ASCII), for messages."""
    flag = system_title[:3]
    if flag.isalpha() and flag.isascii():
        return f"{system_title.hex()} ({flag.decode('ascii')})"
    return system_title.hex()


def parse_key(text: str, name: str) -> bytes:
    """Return a 16-byte key from hex text (spaces and colons allowed); ValueError that never shows the key."""
    cleaned = text.strip().replace(" ", "").replace(":", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"the {name} is not hexadecimal") from None
    if len(key) != KEY_LENGTH:
        raise ValueError(f"the {name} must be {KEY_LENGTH} bytes (32 hex digits), got {len(key)} bytes")
    return key


def _checked_key(key: Optional[bytes], name: str) -> Optional[bytes]:
    """Return a key given as bytes after checking its length (the message never shows the key)."""
    if key is None:
        return None
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_LENGTH:
        raise ValueError(f"the {name} must be {KEY_LENGTH} bytes or None")
    return bytes(key)


def _keystream_xor(aead: AESGCM, apdu: CipheredApdu) -> bytes:
    """Return the payload XOR the GCM keystream (AES-CTR from IV || 00000002): decryption without the tag.

    GCM encryption is exactly that XOR, so one AESGCM call (its tag ignored) does it.
    """
    return aead.encrypt(apdu.iv, apdu.payload, None)[:-_GCM_TAG_LENGTH]


def _tag_matches(aead: AESGCM, apdu: CipheredApdu, plaintext: bytes, aad: bytes) -> bool:
    """Return True when the GCM tag of plaintext and aad begins with the APDU's 12-byte tag."""
    tag = aead.encrypt(apdu.iv, plaintext, aad)[-_GCM_TAG_LENGTH:][:TAG_LENGTH]
    return compare_digest(tag, apdu.auth_tag)


# A block-transfer header of block 1 (E0, control, 00 01, 00 00, the A-XDR length of its data) at the end.
_BLOCK_1 = re.compile(rb"\xe0.\x00\x01\x00\x00(?:[\x00-\x7f]|\x81.|\x82..)\Z", re.DOTALL)
_HDLC_HEADER_LENGTHS = (7, 15)  # from format (2), addresses (1-4 each), control (1), HCS (2), its flag


def _inside_a_frame(before: bytes) -> bool:
    """Return True when the bytes before a ciphering tag are the head of an M-Bus or HDLC frame.

    Such an APDU is part of a frame that failed its checks (damaged: in its data, checksum or header), not
    a bare APDU, and must give nothing.  The head is 68 L L 68 C A CI, STSAP 01 and DTSAP 67 (one of the two
    halves is enough, the other may be the damage), or an HDLC header (a flag 7E where one begins) with the
    LLC header, and maybe the header of block 1 of a block transfer, after it.
    """
    mbus = before[-9:]
    if len(mbus) == 9 and (
        (mbus[0] == mbus[3] == 0x68 and mbus[1] == mbus[2]) or (mbus[7:] == b"\x01\x67" and 0x68 in mbus[:4])
    ):
        return True
    block = _BLOCK_1.search(before)
    end = block.start() if block else len(before)
    if before[end - 3 : end] not in (LLC_HEADER, b"\xe6\xe6\x00"):
        return False
    shortest, longest = _HDLC_HEADER_LENGTHS
    return before.find(b"\x7e", max(0, end - 3 - longest), end - 3 - shortest) >= 0


class CipheredApduFramer:
    """Bare ciphered APDUs on the line, for ``amshan.framing.FrameScanner``: valid only when authenticated.

    An unauthenticated APDU cannot be told from a fragment of noise or of another frame, so only an APDU with
    the authentication bit whose tag verifies with the keys is a frame.
    """

    name = "apdu"
    start_bytes = bytes(CIPHERING_TAGS)
    MAX_LENGTH = 0x1000


    def __init__(self, decipherer: Decipherer) -> None:
        """Verify candidates with the stream's decipherer (which holds the keys)."""
        self._decipherer = decipherer

    def judge(self, buffer: bytes, position: int, size: int) -> Tuple[Verdict, int, int, int]:
        """Return (verdict, start, end, resume) for the ciphering tag at position."""
        not_a_frame = (Verdict.NOT_A_FRAME, position, position, position + 1)
        if buffer[position + 1 : position + 2] not in (b"", bytes((_SYSTEM_TITLE_LENGTH,))):
            return not_a_frame
        if _inside_a_frame(buffer[max(0, position - HISTORY) : position]):
            return not_a_frame
        try:
            _, length, body = _read_header(buffer, position)
        except DecodeError:
            header_may_complete = size - position < 2 + _SYSTEM_TITLE_LENGTH + 5
            return (Verdict.INCOMPLETE, position, size, position + 1) if header_may_complete else not_a_frame
        end = body + length
        if not _HEADER_LENGTH + TAG_LENGTH < length <= self.MAX_LENGTH:
            return not_a_frame
        if body < size and buffer[body] & (SC_AUTHENTICATION | SC_COMPRESSION) != SC_AUTHENTICATION:
            return not_a_frame
        if end > size:
            return Verdict.INCOMPLETE, position, end, position + 1
        try:
            authentic = self._decipherer.is_authentic(parse_ciphered_apdu(buffer[position:end]))
        except DecodeError:
            return not_a_frame
        if authentic:
            return Verdict.VALID, position, end, end
        return Verdict.INVALID, position, end, position + 1


@dataclass
class CipherStats:
    """Counts of ciphered messages: decrypted, and why the others gave no data."""

    decrypted: int = 0  # ciphered messages whose plaintext was accepted
    no_key: int = 0  # no encryption key given
    wrong_key: int = 0  # without AK: the plaintext did not parse (wrong key or damaged message)
    bad_tag: int = 0  # with AK: the authentication tag did not verify (wrong key or damaged message)
    replays: int = 0  # accepted messages whose invocation counter did not go forward

    @property
    def undecryptable(self) -> int:
        """Return how many ciphered messages gave no data for want of the right key or a good tag."""
        return self.no_key + self.wrong_key + self.bad_tag


class Decipherer:
    """Decrypt and authenticate ciphered APDUs of one stream with the meter's keys; count and log failures."""

    def __init__(
        self,
        encryption_key: Optional[bytes] = None,
        authentication_key: Optional[bytes] = None,
        stats: Optional[CipherStats] = None,
    ) -> None:
        """Keep the keys (16 bytes each, or None) and start with no invocation counters seen."""
        encryption_key = _checked_key(encryption_key, "encryption key")
        self._aad_key = _checked_key(authentication_key, "authentication key")
        self._aead = None if encryption_key is None else AESGCM(encryption_key)
        self._counters: Dict[bytes, int] = {}
        self._aads: Dict[int, bytes] = {}  # SC || AK by security control
        self._limiters = {kind: LogLimiter() for kind in ("no_key", "wrong_key", "bad_tag", "replay")}
        self.stats = stats if stats is not None else CipherStats()

    @property
    def has_keys(self) -> bool:
        """Return True when an encryption key was given."""
        return self._aead is not None

    @property
    def checks_tags(self) -> bool:
        """Return True when an authentication key was given, so tags are verified."""
        return self._aad_key is not None

    def candidates(self, apdu: CipheredApdu) -> List[Tuple[bytes, bool]]:
        """Return the plaintexts the APDU may hold, each with whether its tag verified; [] when none can.

        A verified tag gives one authenticated plaintext.  Without AK (or without a tag) the plaintext is
        only a candidate that the caller accepts when it parses as a whole APDU.  A security control with
        the authentication bit but not the encryption bit is read as authentication only (Green Book) and,
        failing that, as authenticated encryption.
        """
        aead = self._aead
        if aead is None:
            if apdu.encrypted or apdu.authenticated:
                self._fail("no_key", apdu, "no encryption key was given")
                return []
            return [(apdu.payload, False)]
        if apdu.authenticated and self._aad_key is not None:
            plaintext = self._verified(apdu)
            if plaintext is None:
                self._fail("bad_tag", apdu, "the authentication tag does not verify")
                return []
            return [(plaintext, True)]
        deciphered = _keystream_xor(aead, apdu)
        if apdu.encrypted:
            return [(deciphered, False)]
        return [(apdu.payload, False), (deciphered, False)]

    def _verified(self, apdu: CipheredApdu) -> Optional[bytes]:
        """Return the plaintext of an authenticated APDU whose tag verifies with the keys, else None."""
        aead = self._aead
        if aead is None or self._aad_key is None or not apdu.authenticated:
            return None
        aad = self._aads.get(apdu.security_control)
        if aad is None:
            aad = self._aads[apdu.security_control] = bytes((apdu.security_control,)) + self._aad_key
        if not apdu.encrypted and _tag_matches(aead, apdu, b"", aad + apdu.payload):
            return apdu.payload  # authentication only: the tag covers SC || AK || the plaintext
        plaintext = _keystream_xor(aead, apdu)
        return plaintext if _tag_matches(aead, apdu, plaintext, aad) else None

    def is_authentic(self, apdu: CipheredApdu) -> bool:
        """Return True when the APDU is authenticated and its tag verifies with the keys (nothing counted)."""
        return self._verified(apdu) is not None

    def accepted(self, apdu: CipheredApdu) -> None:
        """Count a message whose plaintext was accepted; warn when its invocation counter did not advance."""
        self.stats.decrypted += 1
        counters = self._counters
        previous = counters.get(apdu.system_title)
        if previous is not None and apdu.invocation_counter <= previous:
            self.stats.replays += 1
            limiter = self._limiters["replay"]
            if limiter.ready():
                _LOGGER.warning(
                    "Invocation counter of system title %s went back from %d to %d: a replayed or repeated "
                    "message%s",
                    describe_system_title(apdu.system_title),
                    previous,
                    apdu.invocation_counter,
                    limiter.held_back_note("more not logged"),
                )
        elif previous is None and len(counters) >= _MAX_SYSTEM_TITLES:
            counters.clear()
        counters[apdu.system_title] = apdu.invocation_counter

    def rejected(self, apdu: CipheredApdu) -> None:
        """Count a message whose unauthenticated plaintext did not parse: the key is wrong or data damaged."""
        self._fail("wrong_key", apdu, "its plaintext does not parse (wrong encryption key or damaged data)")

    def _fail(self, kind: str, apdu: CipheredApdu, reason: str) -> None:
        """Count a message that gave no data and say why (rate-limited, naming the system title only)."""
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        limiter = self._limiters[kind]
        if limiter.ready():
            _LOGGER.error(
                "No data from a ciphered message of system title %s (security control 0x%02x, invocation "
                "counter %d): %s%s",
                describe_system_title(apdu.system_title),
                apdu.security_control,
                apdu.invocation_counter,
                reason,
                limiter.held_back_note("more not logged"),
            )
