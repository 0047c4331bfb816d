"""Keyed hashes that stand for people in read models: the integrity register's person key and the home-visit
family key.

An ID number has too little entropy for a plain hash to hide it (region × birth date × sequence can be
enumerated), so every key is an HMAC under a key derived from ZIZHU_SECRET for this purpose alone. Views that hold
these keys are built with one (`all_views(secret)`); changing ZIZHU_SECRET means rebuilding them
(`zizhu rebuild --projection integrity_register`, `--projection home_visits`).
"""

from __future__ import annotations

import hashlib
import hmac


class PersonKeys:
    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"zizhu/person-key/v1", hashlib.sha256).digest()

    def _mac(self, purpose: bytes, value: str) -> str:
        return hmac.digest(self._key, purpose + b"|" + value.strip().upper().encode(), "sha256").hex()

    def person(self, id_number: str) -> str:
        """The integrity register's key of a person (student or guardian) by resident ID number."""
        return self._mac(b"person", id_number)

    def family(self, basis: str) -> str:
        """A household's key for home-visit coverage (see projections.home_visits.family_basis)."""
        return self._mac(b"family", basis)[:32]
