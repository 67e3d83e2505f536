"""Test-only DLMS ciphering ENCODER: wraps a plaintext APDU in general-glo/ded-ciphering, as a meter does.

Written from the Green Book layout in han-spec §3.4 (AES-GCM, IV = system title || IC, AAD = SC || AK,
12-byte tag; encryption only = GCM without tag = AES-CTR from IV || 00000002), independent of amshan.cipher.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def axdr_length(n: int, form: int = 0) -> bytes:
    """Encode an A-XDR length, at least in the given form (0: 1 byte, 1: 81 xx, 2: 82 xx xx, 4: 84 + 4)."""
    shortest = 0 if n < 0x80 else 1 if n < 0x100 else 2 if n < 0x10000 else 4
    form = max(form, shortest)
    if form == 0:
        return bytes([n])
    return bytes([0x80 | form]) + n.to_bytes(form, "big")


def cipher(
    plaintext: bytes,
    *,
    ek: bytes,
    ak: bytes,
    system_title: bytes = b"KAME\x01\xac\x4d\x6e",
    sc: int = 0x30,
    ic: int = 1,
    tag: int = 0xDB,
    length_form: int = 0,
) -> bytes:
    """Return the ciphered APDU of a plaintext APDU for a security control (auth 0x10, enc 0x20 bits)."""
    iv = system_title + ic.to_bytes(4, "big")
    if sc & 0x10:
        aad = bytes([sc]) + ak
        if sc & 0x20:
            sealed = AESGCM(ek).encrypt(iv, plaintext, aad)
            payload = sealed[:-16] + sealed[-16:-4]
        else:  # authentication only: the plaintext travels in clear, the tag covers it
            payload = plaintext + AESGCM(ek).encrypt(iv, b"", aad + plaintext)[:12]
    elif sc & 0x20:
        payload = (
            Cipher(algorithms.AES(ek), modes.CTR(iv + b"\x00\x00\x00\x02")).encryptor().update(plaintext)
        )
    else:
        payload = plaintext
    body = bytes([sc]) + ic.to_bytes(4, "big") + payload
    return bytes([tag, 8]) + system_title + axdr_length(len(body), length_form) + body
