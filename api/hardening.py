"""HTTP hardening, installed on the app in one call (`install_security`):

- request bodies above ZIZHU_MAX_BODY_BYTES (multipart uploads: ZIZHU_MAX_UPLOAD_BYTES) → 413 problem+json,
  whether or not the client announced a Content-Length;
- strict JSON: a command body must be JSON (415 otherwise), with no duplicate keys and no NaN/Infinity (422);
  unknown fields are refused by the request schemas (`extra="forbid"`, api/schemas.py);
- writes (POST, PUT, PATCH, DELETE) are rate-limited per bearer token by an in-memory token bucket
  (ZIZHU_RATE_LIMIT_WRITES_PER_SECOND, ZIZHU_RATE_LIMIT_BURST) → 429 problem+json with Retry-After; per process;
- security headers on every answer: nosniff, frame denial, no referrer, `Cache-Control: no-store` on the API, a
  Content-Security-Policy (none at all for the JSON API; Swagger's CDN allowed on /docs only), HSTS in
  production;
- CORS is closed unless ZIZHU_CORS_ORIGINS lists origins;
- the role × endpoint gate (api/access.py) and the periodic seal of the log (adapters/integrity.py).
Stack traces never leave the service: unexpected errors answer a bare problem+json 500 (api/errors.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.logs import get_logger
from adapters.settings import Settings
from api.access import enforce_access
from api.errors import PROBLEM, TITLES

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES = ("application/json", "application/problem+json", "application/merge-patch+json")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PAGE_CSP = "default-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'"
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
            "frame-ancestors 'none'")


def problem_bytes(status: int, code: str, detail: str) -> bytes:
    return json.dumps({"type": f"https://zizhu.example/problems/{code}", "title": TITLES.get(status, "Error"),
                       "status": status, "detail": detail, "code": code}).encode()


async def send_problem(send: Send, status: int, code: str, detail: str,
                       headers: dict[str, str] | None = None) -> None:
    body = problem_bytes(status, code, detail)
    raw = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class TokenBuckets:
    """One bucket per key: `burst` writes at once, refilled at `rate` per second. Thread-safe; in memory."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.clock, self.max_keys = rate, burst, clock, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if a write may go ahead now, else the seconds to wait."""
        with self._lock:
            now = self.clock()
            tokens, seen = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - seen) * self.rate)
            if tokens >= 1:
                if len(self._buckets) >= self.max_keys and key not in self._buckets:
                    self._forget_full(now)
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: drop those to bound memory.
        full = [k for k, (t, seen) in self._buckets.items() if t + (now - seen) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]


class _TooLarge(Exception):
    pass


class Hardening:
    """Pure ASGI middleware: size limit, strict JSON, write rate limit and security headers."""

    def __init__(self, app: ASGIApp, settings: Settings, buckets: TokenBuckets | None = None) -> None:
        self.app = app
        self.settings = settings
        self.buckets = buckets if buckets is not None else (
            TokenBuckets(settings.rate_limit_writes_per_second, settings.rate_limit_burst)
            if settings.rate_limit_writes_per_second > 0 else None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._with_headers(scope, send)
        method = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if method in WRITE_METHODS and self.buckets is not None and scope["path"].startswith("/v1/"):
            wait = self.buckets.take(_client_key(scope, headers))
            if wait > 0:
                await send_problem(send, 429, "rate_limited", "too many writes with this token; slow down",
                                   {"Retry-After": str(max(1, math.ceil(wait)))})
                return
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        limit = self.settings.max_upload_bytes if content_type.startswith("multipart/") else \
            self.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_problem(send, 413, "payload_too_large", f"the request body is over {limit} bytes")
            return
        if method not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive, limit)
        except _TooLarge:
            await send_problem(send, 413, "payload_too_large", f"the request body is over {limit} bytes")
            return
        if body:
            if content_type and not content_type.startswith(JSON_TYPES + FORM_TYPES):
                await send_problem(send, 415, "unsupported_media_type",
                                   "send the body as application/json (or multipart/form-data for files)")
                return
            if not content_type or content_type.startswith(JSON_TYPES):
                error = strict_json_error(body)
                if error:
                    await send_problem(send, 422, "validation_failed", error)
                    return
        await self.app(scope, _replay(body, receive), send)

    def _with_headers(self, scope: Scope, send: Send) -> Send:
        path: str = scope["path"]
        production = self.settings.env == "production"

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                         (b"referrer-policy", b"no-referrer")]
                if b"content-security-policy" not in present:
                    csp = DOCS_CSP if path in {"/docs", "/redoc", "/docs/oauth2-redirect"} else \
                        API_CSP if path.startswith("/v1/") or path in {"/healthz", "/openapi.json"} else PAGE_CSP
                    extra.append((b"content-security-policy", csp.encode()))
                if b"cache-control" not in present and (path.startswith("/v1/") or path == "/healthz"):
                    extra.append((b"cache-control", b"no-store"))
                if production:
                    extra.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
                message = {**message, "headers": [*message.get("headers", []),
                                                  *[(k, v) for k, v in extra if k not in present]]}
            await send(message)

        return wrapped


def _client_key(scope: Scope, headers: dict[str, str]) -> str:
    token = headers.get("authorization")
    if token:
        # Keyed by a digest: the bucket table never holds a usable token.
        return "t:" + hashlib.sha256(token.encode("utf-8")).hexdigest()
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body only a disconnect can come, as on the real connection

    return replayed


def strict_json_error(body: bytes) -> str | None:
    """Why the body is not strict JSON (duplicate keys, NaN/Infinity), or None; malformed JSON is left to the
    request parser, which names the position."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        if duplicated:
            raise _Strict(f"duplicate key {duplicated[0]!r} in the JSON body")
        return dict(pairs)

    def no_constants(name: str) -> Any:
        raise _Strict(f"{name} is not JSON")

    try:
        json.loads(body, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except _Strict as exc:
        return str(exc)
    except ValueError:
        return None
    return None


class _Strict(Exception):
    pass


def install_security(app: FastAPI, settings: Settings) -> None:
    """Hardening middleware, CORS (closed unless configured), the access gate on every route and the sealer.
    Call it right after creating the app, before routes are included (the gate joins every route added later)."""
    app.add_middleware(Hardening, settings=settings)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "If-Match", "Idempotency-Key",
                                          "X-Min-Position", "X-Request-ID"],
                           expose_headers=["ETag", "Location", "X-Min-Position", "X-View-Position", "X-Request-ID",
                                           "Retry-After"], max_age=600)
    app.router.dependencies.append(Depends(enforce_access))
    _install_sealer(app, settings)


def _install_sealer(app: FastAPI, settings: Settings) -> None:
    """Seals the chain heads every `seal_interval` seconds while the service runs (adapters/integrity.py)."""
    if settings.seal_interval <= 0:
        return
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state:
            sealer = Sealer(application.state.services, settings.seal_interval)
            sealer.start()
            try:
                yield state
            finally:
                sealer.stop()

    app.router.lifespan_context = lifespan


class Sealer(threading.Thread):
    def __init__(self, services: Any, interval: float) -> None:
        super().__init__(name="zizhu-sealer", daemon=True)
        self.services = services
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        from adapters.integrity import LogIntegrity

        log = get_logger("zizhu.audit")
        while not self._stop_event.wait(self.interval):
            try:
                seal = LogIntegrity(self.services.store.recorder).seal(self.services.clock.now().isoformat())
            except Exception as exc:  # a failed seal is retried next interval; the service goes on
                log.warning("seal_failed", error_type=type(exc).__name__)
                continue
            if seal is not None:
                log.info("log_sealed", seal_id=seal.seal_id, position=seal.position, digest=seal.digest)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
