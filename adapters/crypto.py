"""Encryption at rest and keyed hashes.

- `KeyRingCipher`: AES-256-GCM for stored events and snapshots (the eventsourcing mapper calls it for both),
  with key rotation: new data is encrypted with ZIZHU_CIPHER_KEY; data written under an earlier key stays
  readable while that key is listed in ZIZHU_CIPHER_PREVIOUS_KEYS. Stored events are never re-encrypted in
  place: their bytes are what the hash chain commits to (adapters/integrity.py), and rewriting history is what
  the chain exists to expose. Its output is byte-compatible with eventsourcing's AESCipher (nonce, tag,
  ciphertext), so data written with that cipher stays readable.
Read models that must find a person by ID number keep a keyed hash of it instead (adapters/person_keys.py).
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from typing import Any

from eventsourcing.cipher import AESCipher
from eventsourcing.persistence import Cipher

KEY_BYTES = 32
PREVIOUS_KEYS = "CIPHER_PREVIOUS_KEYS"


def check_key(value: str, name: str) -> bytes:
    """The key's bytes; refuses anything but base64 of 32 bytes (AES-256)."""
    try:
        key = b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError(f"{name} must be base64 (e.g. `openssl rand -base64 32`)") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{name} must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


class KeyRingCipher(Cipher):
    """AES-GCM with one current key (encrypts and decrypts) and earlier keys (decrypt only)."""

    def __init__(self, environment: Any) -> None:
        self.current = AESCipher(environment)
        previous = environment.get(PREVIOUS_KEYS) or ""
        self.previous = [_Single(check_key(k, PREVIOUS_KEYS)) for k in previous.split(",") if k.strip()]

    def encrypt(self, plaintext: bytes) -> bytes:
        return self.current.encrypt(plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        try:
            return self.current.decrypt(ciphertext)
        except ValueError:
            # GCM authenticates: a wrong key fails cleanly, so trying the older keys in turn is safe.
            for older in self.previous:
                try:
                    return older.decrypt(ciphertext)
                except ValueError:
                    continue
            raise


class _Single(AESCipher):
    def __init__(self, key: bytes) -> None:
        self.key = key

