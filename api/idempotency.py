"""The `Idempotency-Key` header on case commands (POST /v1/cases and POST /v1/cases/{id}/<command>).

This ASGI middleware only derives the request's key (see adapters/idempotency.py for how exactly-once is kept) and
binds it for the duration of the request; the use cases do the rest. It sits outside the routes so that every case
command, including those added later, honours the header without touching its route. A request without the header,
or with a token that does not verify (the route then answers 401), passes through unchanged.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters import idempotency
from adapters.auth import InvalidToken, verify_token
from api.errors import problem

CASE_COMMAND = re.compile(r"^/v1/cases(/[^/]+/[^/]+)?/?$")
HEADER = b"idempotency-key"


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not CASE_COMMAND.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw = headers.get(HEADER)
        if raw is None:
            await self.app(scope, receive, send)
            return
        header = raw.decode("latin-1").strip()
        if not idempotency.valid_header(header):
            response = problem(422, "validation_failed",
                               f"Idempotency-Key must be 1 to {idempotency.MAX_KEY_LENGTH} printable ASCII "
                               "characters", field="Idempotency-Key")
            await response(scope, receive, send)
            return
        sub = self._caller(scope, headers.get(b"authorization", b"").decode("latin-1"))
        if sub is None:
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        request = idempotency.RequestKey.derive(sub=sub, header=header, method=scope["method"],
                                                path=scope["path"], query=scope.get("query_string", b""),
                                                body=body)
        with idempotency.bound(request):
            await self.app(scope, _replaying(body, more, receive), send)

    @staticmethod
    def _caller(scope: Scope, authorization: str) -> str | None:
        if not authorization.lower().startswith("bearer "):
            return None
        services: Any = getattr(scope["app"].state, "services", None)
        if services is None:
            return None
        try:
            return verify_token(services.settings.secret, authorization[7:].strip()).sub
        except InvalidToken:
            return None


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole request body; messages after it (a disconnect) are kept for the app to see."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), []


def _replaying(body: bytes, after: list[Message], receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *after]

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
