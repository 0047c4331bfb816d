"""Tokens from a province's identity provider: RS256 and ES256 checked against a JWKS (file or URL), claims mapped
to roles and scopes; wrong issuer, audience, key, algorithm or expiry refused with 401; local HS256 tokens still
work beside them. Keys are generated here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from adapters.settings import Settings
from api.app import create_app
from tests.conftest import TokenFactory
from tests.support import GX_SCHOOL, form, id_number

ISSUER = "https://idp.edu.gx.example/realms/zizhu"
AUDIENCE = "zizhu-api"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks() -> dict[str, Any]:
    keys = []
    for kid, algorithm, public in (("rsa-1", RSAAlgorithm, RSA_KEY.public_key()),
                                   ("ec-1", ECAlgorithm, EC_KEY.public_key())):
        jwk = json.loads(algorithm.to_jwk(public))
        jwk.update(kid=kid, use="sig")
        keys.append(jwk)
    return {"keys": keys}


def token(key: Any = RSA_KEY, algorithm: str = "RS256", kid: str | None = "rsa-1", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "zhang.wei", "iat": now, "exp": now + 600, **claims}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks()), encoding="utf-8")
    return path


@contextmanager
def app_with(settings: Settings, **changes: Any) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE, **changes})
    with TestClient(create_app(configured), raise_server_exceptions=False) as client:
        yield client


def test_rs256_and_es256_tokens_from_the_provider_are_accepted(settings: Settings, jwks_file: Path,
                                                               auth: TokenFactory) -> None:
    with app_with(settings, oidc_jwks_file=jwks_file) as client:
        school = bearer(token(role="school", school=GX_SCHOOL))
        created = client.post("/v1/cases", json=form(1), headers=school)
        assert created.status_code == 201, created.text
        events = client.get(f"/v1/cases/{created.json()['id']}/events", headers=school).json()
        assert events[0]["actor"] == {"sub": "zhang.wei", "role": "school"}
        auditor = bearer(token(EC_KEY, "ES256", "ec-1", role="auditor", sub="li.jian"))
        assert client.get("/v1/audit/verify-log", headers=auditor).json()["clean"] is True
        # The local tokens keep working beside the provider's.
        assert client.get("/v1/cases", headers=auth("school", school=GX_SCHOOL)).status_code == 200


def test_claims_are_mapped_by_the_settings(settings: Settings, jwks_file: Path) -> None:
    with app_with(settings, oidc_jwks_file=jwks_file, oidc_role_claim="realm_access.roles",
                  oidc_region_claim="division", oidc_role_map={"jijian-ganbu": "auditor", "jyj": "bureau"}) as c:
        bureau = bearer(token(realm_access={"roles": ["offline_access", "jyj"]}, division="450000"))
        statistics = c.get("/v1/regions/450103/statistics", headers=bureau)
        assert statistics.status_code == 200, statistics.text
        no_role = bearer(token(realm_access={"roles": ["offline_access"]}))
        assert c.get("/v1/cases", headers=no_role).status_code == 401
        no_scope = bearer(token(realm_access={"roles": ["jyj"]}))  # a bureau token must name its region
        assert c.get("/v1/cases", headers=no_scope).json()["code"] == "unauthorized"


@pytest.mark.parametrize("case", ["issuer", "audience", "expired", "unknown_kid", "wrong_key", "hs256_with_public_key",
                                  "none", "algorithm_not_allowed"])
def test_a_bad_token_is_refused(settings: Settings, jwks_file: Path, case: str) -> None:
    public_pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    bad = {
        "issuer": lambda: token(role="auditor", iss="https://evil.example"),
        "audience": lambda: token(role="auditor", aud="another-app"),
        "expired": lambda: token(role="auditor", exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        "unknown_kid": lambda: token(role="auditor", kid="rsa-9"),
        "wrong_key": lambda: token(OTHER_RSA, role="auditor"),
        # The classic confusion: the public key used as an HMAC secret.
        "hs256_with_public_key": lambda: _hmac_token(public_pem),
        "none": lambda: jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "role": "auditor",
                                    "exp": int(time.time()) + 60}, None, algorithm="none"),
        "algorithm_not_allowed": lambda: token(role="auditor", algorithm="RS512"),
    }[case]()
    with app_with(settings, oidc_jwks_file=jwks_file) as client:
        answer = client.get("/v1/audit/seals", headers=bearer(bad))
    assert answer.status_code == 401 and answer.json()["code"] == "unauthorized"


def _hmac_token(secret: bytes) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "role": "auditor",
                              "exp": int(time.time()) + 60}).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def test_the_key_set_can_come_from_a_url(settings: Settings) -> None:
    served = json.dumps(jwks()).encode()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(served)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Keys)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/certs"
        with app_with(settings, oidc_jwks_url=url) as client:
            applicant = bearer(token(EC_KEY, "ES256", "ec-1", role="applicant", student=id_number(4)))
            assert client.post("/v1/cases", json=form(4), headers=applicant).status_code == 201
            assert client.get("/v1/cases", headers=bearer(token(role="auditor", kid="nope"))).status_code == 401
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_a_provider_without_keys_or_with_a_symmetric_algorithm_is_refused_at_start(settings: Settings) -> None:
    from adapters.jwks import ExternalTokens

    with pytest.raises(ValueError, match="JWKS"):
        ExternalTokens(settings.model_copy(update={"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE}))
    with pytest.raises(ValueError, match="asymmetric"):
        ExternalTokens(settings.model_copy(update={"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE,
                                                   "oidc_jwks_url": "http://127.0.0.1:1/x",
                                                   "oidc_algorithms": ["HS256"]}))
