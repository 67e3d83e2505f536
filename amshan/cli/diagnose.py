"""Say in words what bytes that did not decode are: encrypted, a format not read, damaged, or not meter data.

The command line uses these to explain an undecodable message and, when a whole run decoded nothing, what the
input looked like and what to try instead.
"""

from __future__ import annotations

import re

from amshan.cipher import CIPHERING_TAGS
from amshan.hdlc import LLC_HEADER

SAMPLE_SIZE = 1 << 16  # how much of the input the summary of a run that decoded nothing looks at

# DLMS APDU tags (spec 3.2): ciphered APDUs need the meter's key; data-notification is what the decoders read.
_DATA_NOTIFICATION = 0x0F
_CIPHERED = dict(zip(CIPHERING_TAGS, ("general-glo-ciphering", "general-ded-ciphering")))
_GENERAL_CIPHERING = 0xDD
_BLOCK_TRANSFER = 0xE0
_HEX_TEXT = re.compile(rb"^[0-9A-Fa-f\s#:x-]*$")
# a P1 telegram: identification line, then lines of printable text up to "!" (random bytes never match)
_P1_TELEGRAM = re.compile(rb"/[A-Za-z]{3}\d[\x02 -~]*\r?\n(?:[ -~]*\r?\n)*?![0-9A-Fa-f]{0,4}")
_MBUS_LONG_FRAME = re.compile(rb"\x68(.)\1\x68", re.DOTALL)


def undecodable_reason(content: bytes) -> tuple[str, str]:
    """Return (kind, words) for a whole message no decoder took: kind is encrypted, unsupported or damaged."""
    apdu = content[len(LLC_HEADER) :] if content.startswith(LLC_HEADER) else content
    tag = apdu[0] if apdu else -1
    if tag in _CIPHERED:
        return "encrypted", f"encrypted ({_CIPHERED[tag]}): pass the meter's key to read it"
    if tag == _GENERAL_CIPHERING:
        return "encrypted", "encrypted (general-ciphering), which amshan does not decrypt"
    if tag == _BLOCK_TRANSFER:
        return "damaged", "damaged: a general-block-transfer block without the rest of its sequence"
    if tag == _DATA_NOTIFICATION:
        return "damaged", "damaged: a data-notification whose content does not parse as any known list"
    if not apdu:
        return "damaged", "damaged: the message is empty"
    return "unsupported", f"a format amshan does not read (APDU tag 0x{tag:02x})"


def describe_sample(sample: bytes, *, as_hex: bool) -> str:
    """Return a hint about input that gave no decoded message, from its first bytes: what it looks like."""
    if not sample:
        return "the input was empty"
    if not as_hex and _HEX_TEXT.match(sample) and len(sample.strip()) >= 8:
        return "it looks like hex text: add --hex"
    if _P1_TELEGRAM.search(sample):
        return (
            "it looks like P1 (DSMR) text telegrams, but none checked out: a CRC that does not match, or"
            " wrong serial settings (115200 8N1; DSMR 2.2/3.0: 9600 7E1)"
        )
    if _MBUS_LONG_FRAME.search(sample):
        return (
            "it looks like M-Bus frames (68 L L 68), but none checked out: damaged, or wrong serial settings"
        )
    if b"\x7e" in sample:
        return "no valid HDLC frame in it: not a meter capture, or recorded with wrong serial settings"
    return "it does not look like a meter capture (HDLC frames start and end with 7e)"
