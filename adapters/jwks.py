"""Bearer tokens from an external identity provider (RS256/ES256 with keys from a JWKS), beside the local HS256 ones.

A province plugs in its own login by setting ZIZHU_OIDC_ISSUER, ZIZHU_OIDC_AUDIENCE and one of
ZIZHU_OIDC_JWKS_FILE / ZIZHU_OIDC_JWKS_URL; claim names (role, school, class, region, student, sub) and a mapping
of the provider's role names onto ours are settings too.

The token's header decides the path: HS256 is checked with ZIZHU_SECRET as before; an asymmetric algorithm is
checked only against the JWKS key with the token's `kid` and only with the algorithms allowed in settings, so a
token can never choose to be checked with a public key as an HMAC secret (the classic algorithm confusion).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from adapters.auth import InvalidToken, Principal, check_scope, verify_token
from adapters.settings import Settings
from domain.values import Role

ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"})


def claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by dotted path (`realm_access.roles`), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class ExternalTokens:
    """Verifies tokens signed by the configured identity provider and maps their claims to a Principal."""

    def __init__(self, settings: Settings) -> None:
        if not settings.oidc_issuer or not settings.oidc_audience:
            raise ValueError("an external identity provider needs ZIZHU_OIDC_ISSUER and ZIZHU_OIDC_AUDIENCE")
        if not (settings.oidc_jwks_file or settings.oidc_jwks_url):
            raise ValueError("an external identity provider needs ZIZHU_OIDC_JWKS_FILE or ZIZHU_OIDC_JWKS_URL")
        unknown = set(settings.oidc_algorithms) - ASYMMETRIC
        if unknown:
            raise ValueError(f"ZIZHU_OIDC_ALGORITHMS allows only asymmetric algorithms, not {sorted(unknown)}")
        self.settings = settings
        self.algorithms = list(settings.oidc_algorithms)
        self._file: Path | None = settings.oidc_jwks_file
        self._file_stamp: float | None = None
        self._keys: PyJWKSet | None = None
        self._client = (PyJWKClient(settings.oidc_jwks_url, cache_jwk_set=True, lifespan=300, timeout=5)
                        if settings.oidc_jwks_url and not settings.oidc_jwks_file else None)

    def _from_file(self, kid: str | None) -> PyJWK:
        assert self._file is not None
        stamp = self._file.stat().st_mtime
        if self._keys is None or stamp != self._file_stamp:
            # Re-read when the file changes, so rotating the provider's keys needs no restart.
            self._keys = PyJWKSet.from_dict(json.loads(self._file.read_text(encoding="utf-8")))
            self._file_stamp = stamp
        keys = list(self._keys.keys)
        if kid is None:
            if len(keys) == 1:
                return keys[0]
            raise InvalidToken("the token names no key (kid) and the key set has several")
        for key in keys:
            if key.key_id == kid:
                return key
        raise InvalidToken(f"no key {kid!r} in the identity provider's key set")

    def signing_key(self, token: str, kid: str | None) -> Any:
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as exc:
                raise InvalidToken(f"identity provider key not found: {exc}") from None
        return self._from_file(kid).key

    def verify(self, token: str) -> Principal:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm not in self.algorithms:
                raise InvalidToken(f"algorithm {algorithm} is not accepted")
            claims = jwt.decode(token, self.signing_key(token, header.get("kid")), algorithms=[algorithm],
                                audience=s.oidc_audience, issuer=s.oidc_issuer, leeway=s.oidc_leeway,
                                options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        sub = claim(claims, s.oidc_sub_claim)
        if not sub:
            raise InvalidToken(f"the token has no {s.oidc_sub_claim} claim")
        principal = Principal(sub=str(sub), role=self._role(claim(claims, s.oidc_role_claim)),
                              school=_text(claim(claims, s.oidc_school_claim)),
                              class_id=_text(claim(claims, s.oidc_class_claim)),
                              region=_text(claim(claims, s.oidc_region_claim)),
                              student=_text(claim(claims, s.oidc_student_claim)))
        return check_scope(principal)

    def _role(self, value: Any) -> Role:
        candidates = value if isinstance(value, list) else [value]
        signable = {r.value for r in Role} - {Role.SYSTEM.value}
        for candidate in candidates:
            name = self.settings.oidc_role_map.get(str(candidate), str(candidate))
            if name in signable:
                return Role(name)
        raise InvalidToken("the token carries no role this service knows")


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


class TokenVerifier:
    """Local HS256 tokens always; external ones when an identity provider is configured."""

    def __init__(self, settings: Settings) -> None:
        self.secret = settings.secret
        self.external = ExternalTokens(settings) if settings.oidc_issuer else None

    def verify(self, token: str) -> Principal:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        if algorithm == "HS256":
            return verify_token(self.secret, token)
        if self.external is not None and algorithm in ASYMMETRIC:
            return self.external.verify(token)
        raise InvalidToken(f"tokens signed with {algorithm} are not accepted here")
