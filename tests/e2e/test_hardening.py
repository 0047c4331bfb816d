"""HTTP hardening: body size limit, strict JSON, write rate limit per token, security headers, CORS closed by
default, no stack traces in answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import routing
from fastapi.testclient import TestClient
from pydantic import BaseModel

from adapters.settings import Settings
from api.app import create_app
from api.hardening import TokenBuckets
from tests.conftest import TokenFactory
from tests.support import GX_SCHOOL, form, id_number

PROBLEM = "application/problem+json"


@contextmanager
def app_with(settings: Settings, **changes: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update=changes)), raise_server_exceptions=False) as client:
        yield client


def is_problem(response: Any, status: int, code: str) -> bool:
    body = response.json()
    return (response.status_code == status and response.headers["content-type"].startswith(PROBLEM)
            and body["status"] == status and body["code"] == code)


def test_a_body_over_the_limit_is_refused_with_413(settings: Settings, auth: TokenFactory) -> None:
    with app_with(settings, max_body_bytes=2048) as client:
        big = form(1, other={"notes": "x" * 4000})
        announced = client.post("/v1/cases", json=big, headers=auth("applicant", student=id_number(1)))
        assert is_problem(announced, 413, "payload_too_large")

        def chunks() -> Iterator[bytes]:
            yield json.dumps(big).encode()[:1500]
            yield json.dumps(big).encode()[1500:]

        streamed = client.post("/v1/cases", content=chunks(), headers={
            **auth("applicant", student=id_number(1)), "Content-Type": "application/json"})
        assert "content-length" not in {k.lower() for k in streamed.request.headers}
        assert is_problem(streamed, 413, "payload_too_large")
        assert client.get("/v1/cases", headers=auth("school", school=GX_SCHOOL)).json()["items"] == []


def test_json_bodies_are_strict(client: TestClient, auth: TokenFactory) -> None:
    headers = {**auth("applicant", student=id_number(1)), "Content-Type": "application/json"}
    duplicated = client.post("/v1/cases", headers=headers,
                             content=json.dumps(form(1))[:-1].encode() + b', "attestation": false}')
    assert is_problem(duplicated, 422, "validation_failed") and "duplicate key" in duplicated.json()["detail"]
    body = form(1)
    body["household"]["annual_income"] = float("nan")
    not_a_number = client.post("/v1/cases", headers=headers, content=json.dumps(body).encode())
    assert is_problem(not_a_number, 422, "validation_failed") and "NaN" in not_a_number.json()["detail"]
    unknown = form(1)
    unknown["student"]["favourite_colour"] = "blue"
    refused = client.post("/v1/cases", json=unknown, headers=headers)
    assert is_problem(refused, 422, "validation_failed")
    assert refused.json()["field"] == "student.favourite_colour"
    xml = client.post("/v1/cases", content=b"<case/>", headers={**headers, "Content-Type": "application/xml"})
    assert is_problem(xml, 415, "unsupported_media_type")
    # Named profile factors under `other` are data, accepted as plain values; anything else under it is not.
    factors = form(1, other={"siblings_in_school": 1, "parents_labour_capacity": "partial"})
    assert client.post("/v1/cases", json=factors, headers=headers).status_code == 201
    nested = form(2, other={"parents": {"labour": "partial"}})
    assert client.post("/v1/cases", json=nested, headers=auth("applicant", student=id_number(2))).status_code == 422


def _request_models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        for field in annotation.model_fields.values():
            yield from _request_models(field.annotation)
    for argument in getattr(annotation, "__args__", ()) or ():
        yield from _request_models(argument)


def test_every_request_body_refuses_unknown_fields(settings: Settings) -> None:
    app = create_app(settings)
    lenient = set()
    for context in routing.iter_route_contexts(app.routes):
        body = getattr(context, "body_field", None)
        if body is None:
            continue
        for model in _request_models(body.field_info.annotation):
            # FastAPI's own models wrap multipart form fields, which name their parts explicitly.
            generated = model.__module__.startswith("fastapi.")
            if model.model_config.get("extra") != "forbid" and model.__name__ != "OtherIn" and not generated:
                lenient.add(f"{model.__module__}.{model.__name__} ({context.path})")
    assert not lenient, f"request models must set extra='forbid': {sorted(lenient)}"


def test_writes_are_rate_limited_per_token(settings: Settings, auth: TokenFactory) -> None:
    with app_with(settings, rate_limit_burst=3, rate_limit_writes_per_second=0.001) as client:
        school = auth("school", school=GX_SCHOOL)
        answers = [client.post("/v1/cases", json=form(i), headers=school) for i in range(1, 5)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429]
        assert is_problem(answers[3], 429, "rate_limited") and int(answers[3].headers["Retry-After"]) >= 1
        # Reads are not limited, and another token has its own bucket.
        assert client.get("/v1/cases", headers=school).status_code == 200
        other = client.post("/v1/cases", json=form(9), headers=auth("applicant", student=id_number(9)))
        assert other.status_code == 201


def test_a_bucket_refills_at_its_rate() -> None:
    now = [100.0]
    buckets = TokenBuckets(rate=2.0, burst=2, clock=lambda: now[0])
    assert [buckets.take("t"), buckets.take("t")] == [0.0, 0.0]
    assert buckets.take("t") == 0.5
    now[0] += 0.5
    assert buckets.take("t") == 0.0 and buckets.take("t") > 0


def test_security_headers_on_every_answer(client: TestClient, auth: TokenFactory) -> None:
    for response in (client.get("/healthz"), client.get("/v1/cases", headers=auth("school", school=GX_SCHOOL)),
                     client.get("/v1/cases/not-a-case", headers=auth("auditor")), client.get("/v1/cases")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    docs = client.get("/docs")
    assert "cdn.jsdelivr.net" in docs.headers["Content-Security-Policy"]
    assert "Strict-Transport-Security" not in docs.headers  # only in production, behind TLS


def test_cors_is_closed_unless_origins_are_listed(settings: Settings, auth: TokenFactory) -> None:
    preflight = {"Origin": "https://console.example.edu.cn", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    with app_with(settings) as closed:
        answer = closed.options("/v1/cases", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
        simple = closed.get("/v1/cases", headers={**auth("auditor"), "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers
    with app_with(settings, cors_origins=["https://console.example.edu.cn"]) as open_:
        answer = open_.options("/v1/cases", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://console.example.edu.cn"
        other = open_.options("/v1/cases", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_an_unexpected_error_answers_without_a_stack_trace(settings: Settings, auth: TokenFactory) -> None:
    app = create_app(settings)

    def explode() -> None:
        raise RuntimeError("internal detail /srv/zizhu/secret.py line 42")

    add: Callable[..., None] = app.add_api_route
    add("/boom", explode, methods=["GET"])
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers=auth("auditor"))
    assert is_problem(response, 500, "internal_error")
    assert "Traceback" not in response.text and "secret.py" not in response.text
    assert "internal detail" not in response.text
